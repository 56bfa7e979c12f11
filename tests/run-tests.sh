#!/usr/bin/env bash
# The test command: installs missing Debian packages, builds everything (Release), runs the whole suite.
#   bash tests/run-tests.sh            # from the repository root
# Environment: DOTS1_BUILD_DIR (default build/tests), DOTS1_JOBS (default: number of cores).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DOTS1_BUILD_DIR:-$root/build/tests}
jobs=${DOTS1_JOBS:-$(nproc)}
bash "$root/cmake/install-deps.sh"
# The CUDA backend is always compiled when nvcc is available (it needs a GPU only to run).
cuda=OFF
if command -v nvcc >/dev/null 2>&1 || [[ -x /usr/local/cuda/bin/nvcc ]]; then cuda=ON; fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDOTS1_BUILD_TESTS=ON -DDOTS1_BUILD_EXAMPLES=ON -DDOTS1_ENABLE_CUDA=$cuda
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs"
