#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan) and runs each for a bounded time on
# its committed seed corpus; fails if any target crashes (a sanitizer report, an exception that is not the
# documented dots1 error, a FUZZ_CHECK invariant, a run slower than the timeout or over the memory limit).
#
#   bash tests/run-fuzzers.sh                    # 20 s per target (the CI bound)
#   bash tests/run-fuzzers.sh 3600               # a long run: an hour per target
#   bash tests/run-fuzzers.sh 60 config forward  # some targets only (safetensors config tokenizer_json
#                                                #   tokenizer_encode forward trace json cli_args chat_template)
#
# Environment: DOTS1_FUZZ_BUILD_DIR (default build/fuzz), DOTS1_FUZZ_WORK (default <build>/runs: the corpora
# the runs grow, crash files, logs; the seeds in tests/fuzz/corpus are read, never written), DOTS1_JOBS,
# DOTS1_FUZZ_TIMEOUT (seconds one input may take, default 25), DOTS1_CMAKE_ARGS (extra configure arguments).
# A crash leaves <work>/<target>/crash-* (or timeout-*, oom-*); reproduce it with
#   <build>/tests/fuzz/fuzz_<target> <work>/<target>/crash-...
# and, once fixed, copy the file into tests/fuzz/corpus/<target>/ so every later run replays it.
#
# OpenMP: clang's -fopenmp uses LLVM's libomp (libomp-14-dev). The forward target runs the CPU backend on one
# thread (see fuzz_forward.cpp); data races are tests/run-sanitizers.sh's ThreadSanitizer job.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=${1:-20}
shift $(($# > 0 ? 1 : 0))
targets=("$@")
((${#targets[@]})) || targets=(safetensors config tokenizer_json tokenizer_encode forward trace json cli_args chat_template)
build=$(realpath -m "${DOTS1_FUZZ_BUILD_DIR:-$root/build/fuzz}")  # absolute: the runs change directory
work=$(realpath -m "${DOTS1_FUZZ_WORK:-$build/runs}")
jobs=${DOTS1_JOBS:-$(nproc)}
timeout=${DOTS1_FUZZ_TIMEOUT:-25}
read -r -a extra_cmake <<<"${DOTS1_CMAKE_ARGS:-}"

DOTS1_DEPS_SANITIZERS=1 bash "$root/cmake/install-deps.sh"
# -O2 -g without NDEBUG: assertions (Eigen's included) stay on as extra oracles. -march as the Release build.
cmake -S "$root" -B "$build" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g" -DCMAKE_CXX_FLAGS="-march=x86-64-v3" \
  -DDOTS1_BUILD_TESTS=ON -DDOTS1_BUILD_EXAMPLES=OFF -DDOTS1_BUILD_FUZZERS=ON -DDOTS1_ENABLE_CUDA=OFF "${extra_cmake[@]}" >/dev/null
if [[ $(cmake --build "$build" --target help) != *fuzz_config* ]]; then
  echo "run-fuzzers: tests/fuzz is not part of the build: add 'fuzz' to the foreach(area ...) list of tests/CMakeLists.txt" >&2
  exit 2
fi
fuzzers=("${targets[@]/#/fuzz_}")
cmake "$build" -DDOTS1_TARGET_GROUP="$(IFS=';'; echo "${fuzzers[*]}")" >/dev/null
cmake --build "$build" -j "$jobs" --target dots1_target_group  # one make call: the fuzzers build in parallel

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
summary=()
for t in "${targets[@]}"; do
  dir=$work/$t
  mkdir -p "$dir/corpus"
  echo "run-fuzzers: fuzz_$t for ${seconds} s"
  status=0
  dict=()
  [[ -f $root/tests/fuzz/$t.dict ]] && dict=(-dict="$root/tests/fuzz/$t.dict")
  # The first corpus folder receives new inputs; the committed seeds are only read.
  (cd "$dir" && "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb=4096 \
     -print_final_stats=1 -artifact_prefix="$dir/" "${dict[@]}" "$dir/corpus" "$root/tests/fuzz/corpus/$t") >"$dir/log" 2>&1 || status=$?
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$dir/log" | tail -1 | awk '{print $2}' || true)
  cov=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -1 | awk '{print $2}' || true)
  if ((status != 0)); then
    failed+=("$t")
    summary+=("fuzz_$t: CRASH (exit $status) after ${execs:-?} runs; see $dir/log")
    grep -E 'ERROR|FUZZ_CHECK|runtime error|SUMMARY|Test unit written|uncaught|terminate' "$dir/log" | head -20 >&2 || true
  else
    summary+=("fuzz_$t: ok, ${execs:-?} runs in ${seconds} s, coverage ${cov:-?} edges, corpus $(ls "$dir/corpus" | wc -l) files")
  fi
done
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "run-fuzzers: crashes in: ${failed[*]}" >&2
  exit 1
fi
