#!/usr/bin/env bash
# The main job: installs missing Debian packages, builds the dots1 tool, and generates text with the small
# Dots1 model shipped in examples/models/kjv-tiny (trained on the King James Bible), streaming the
# continuation as it is produced and ending with a timing line.
#   bash examples/run-main-job.sh ["prompt"] [max new tokens]
# Environment: DOTS1_BUILD_DIR (default build/main), DOTS1_JOBS (default: number of cores).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${DOTS1_BUILD_DIR:-$root/build/main}
prompt=${1:-"And God said unto Moses,"}
max_new=${2:-80}
bash "$root/cmake/install-deps.sh"
# A new build folder gets the tool only; an existing one (e.g. the test build) is reused as configured.
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDOTS1_BUILD_TESTS=OFF -DDOTS1_BUILD_EXAMPLES=ON >/dev/null
fi
cmake --build "$build" -j "${DOTS1_JOBS:-$(nproc)}" --target dots1_tool
"$build/bin/dots1" generate --model "$root/examples/models/kjv-tiny" --prompt "$prompt" --max-new-tokens "$max_new" \
  --temperature 0.8 --top-k 40 --seed 7
