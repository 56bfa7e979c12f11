#!/usr/bin/env bash
# The test command: installs missing Debian packages, builds everything (Release), runs the whole suite.
#   bash tests/run-tests.sh            # from the repository root
# Environment: DOTS1_BUILD_DIR (default build/tests), DOTS1_JOBS (default: number of cores).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DOTS1_BUILD_DIR:-$root/build/tests}
jobs=${DOTS1_JOBS:-$(nproc)}
bash "$root/cmake/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDOTS1_BUILD_TESTS=ON -DDOTS1_BUILD_EXAMPLES=ON
cmake --build "$build" -j "$jobs"
ctest --test-dir "$build" --output-on-failure -j "$jobs"
