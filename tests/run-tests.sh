#!/usr/bin/env bash
# The test command (what CI runs): installs missing Debian packages, builds everything (Release, plus the
# CUDA backend with nvcc when a CUDA toolkit is installed), runs the whole suite, then runs it again under
# AddressSanitizer + UndefinedBehaviorSanitizer and the threaded tests under ThreadSanitizer
# (tests/run-sanitizers.sh), then every fuzz target for a short bounded time (tests/run-fuzzers.sh).
#
#   bash tests/run-tests.sh                      # from the repository root: everything
#   DOTS1_TEST_STAGES=suite bash tests/run-tests.sh    # only the Release suite (quick local runs)
#
# Environment: DOTS1_BUILD_DIR (default build/tests), DOTS1_JOBS (default: number of cores),
# DOTS1_TEST_STAGES (space-separated subset of "suite sanitizers fuzz", default all three),
# DOTS1_FUZZ_SECONDS (per fuzz target, default 20).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Absolute: the sanitizer and fuzz stages derive their folders from it and change directory.
build=$(realpath -m "${DOTS1_BUILD_DIR:-$root/build/tests}")
jobs=${DOTS1_JOBS:-$(nproc)}
stages=" ${DOTS1_TEST_STAGES:-suite sanitizers fuzz} "
started=$(date +%s)
say() { echo "run-tests: [$(( $(date +%s) - started )) s] $*"; }

if [[ $stages == *" suite "* ]]; then
  bash "$root/cmake/install-deps.sh"
  # The CUDA backend is always compiled when nvcc is available (it needs a GPU only to run).
  cuda=OFF
  if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then cuda=ON; fi
  say "Release build (CUDA $cuda) in $build"
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDOTS1_BUILD_TESTS=ON -DDOTS1_BUILD_EXAMPLES=ON -DDOTS1_ENABLE_CUDA=$cuda
  cmake --build "$build" -j "$jobs"
  say "test suite"
  ctest --test-dir "$build" --output-on-failure --timeout 900 -j "$jobs"
fi
if [[ $stages == *" sanitizers "* ]]; then
  say "sanitizers: bash tests/run-sanitizers.sh"
  DOTS1_SANITIZE_BUILD=${DOTS1_SANITIZE_BUILD:-$build-sanitize} bash "$root/tests/run-sanitizers.sh"
fi
if [[ $stages == *" fuzz "* ]]; then
  say "fuzzing: bash tests/run-fuzzers.sh ${DOTS1_FUZZ_SECONDS:-20}"
  DOTS1_FUZZ_BUILD_DIR=${DOTS1_FUZZ_BUILD_DIR:-$build-fuzz} bash "$root/tests/run-fuzzers.sh" "${DOTS1_FUZZ_SECONDS:-20}"
fi
say "all stages passed:$stages"
