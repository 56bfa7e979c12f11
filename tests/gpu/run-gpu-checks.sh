#!/usr/bin/env bash
# The checks of the CUDA backend that need a GPU (issue 5), as one script for a machine with an NVIDIA GPU
# (written for one H200; about 8 minutes there, most of it compiling):
#   1. configure with DOTS1_ENABLE_CUDA=ON DOTS1_RUN_GPU_TESTS=ON and build only the CUDA targets
#      (test_reference_forward_cuda, test_bf16_cuda, test_generation_options_cuda, the dots1 tool with its
#      nvcc-compiled GPU unit);
#   2. the CUDA tests: the HF reference fixtures in float32 on the GPU (logits within 1e-4); bf16 weights on
#      the GPU against the CPU's bf16 path (tolerances in tests/thrust/test_bf16_thrust.cpp), greedy and
#      sampled generation equal to the CPU's; token selection on the GPU against HF's processors and the
#      host pipeline;
#   3. dots1 generate --device cuda on the embedded model, greedy and sampled: the same tokens as on the CPU;
#   4. dots1 bench --device cuda on examples/configs/dots.llm1-4layers.json (the real model's layer
#      dimensions, 4 layers, random bf16 weights): prefill and decode tokens/s and the fraction of HBM
#      bandwidth (--hbm-gbs, default 4800 for an H200).
# Usage: bash tests/gpu/run-gpu-checks.sh [DIR]
#   DIR = a bundle made by tests/gpu/prepare-gpu-bundle.sh (bin/, lib/, SOURCE_DIR: built elsewhere, for a GPU
#         machine without this project's build dependencies; nothing is compiled then, ~2 minutes), or a
#         build folder (default build/gpu): configured and built here unless it already holds the binaries.
# Results are printed and, when $OUT is set, written to $OUT/gpu-checks/.
# Environment: DOTS1_GPU_BENCH_ARGS overrides the bench's workload options (default: --prompt 512 --gen 64
#        --repeat 2 --context 0); HBM_GBS the bandwidth the fraction is taken of.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
BUILD=$(realpath -m "${1:-build/gpu}")
LOG_DIR=${OUT:+$OUT/gpu-checks}
LOG_DIR=${LOG_DIR:-$BUILD/gpu-checks}
mkdir -p "$LOG_DIR"
JOBS=$(nproc)
START=$(date +%s)
status=0
stage() { echo; echo "=== [$(( $(date +%s) - START )) s] $*"; }
fail() { echo "FAILED: $*"; status=1; }

stage "GPU"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv 2>&1 | tee "$LOG_DIR/nvidia-smi.txt" || fail "nvidia-smi"

export PATH=/usr/local/cuda/bin:$PATH
if [[ -f $BUILD/SOURCE_DIR ]]; then
  stage "prebuilt bundle $BUILD"
  BIN=$BUILD/bin
  TESTS=$BUILD/bin
  # cuBLAS from this machine: the toolkit's, or the one PyTorch's wheels bring
  cublas=$(ls /usr/local/cuda/lib64/libcublas.so.13 /usr/local/cuda*/lib*/libcublas.so.13 /usr/lib/x86_64-linux-gnu/libcublas.so.13 2>/dev/null | head -1)
  [[ -n $cublas ]] || cublas=$(python3 -c 'import glob, nvidia; print((glob.glob(nvidia.__path__[0] + "/*/lib/libcublas.so.13") + [""])[0])' 2>/dev/null)
  [[ -n $cublas ]] || cublas=$(timeout 60 find / -xdev -name libcublas.so.13 2>/dev/null | head -1)
  echo "cuBLAS: ${cublas:-not found}"
  export LD_LIBRARY_PATH=$BUILD/lib${cublas:+:$(dirname "$cublas")}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  src=$(cat "$BUILD/SOURCE_DIR")
  if [[ $src != "$ROOT" && ! -e $src ]]; then mkdir -p "$(dirname "$src")" && ln -s "$ROOT" "$src"; fi  # the compiled-in fixture paths
elif [[ -x $BUILD/bin/dots1 && -x $BUILD/tests/thrust/test_reference_forward_cuda && -x $BUILD/tests/thrust/test_bf16_cuda &&
        -x $BUILD/tests/thrust/test_generation_options_cuda ]]; then
  stage "reusing the binaries in $BUILD"
  BIN=$BUILD/bin
  TESTS=$BUILD/tests/thrust
else
  BIN=$BUILD/bin
  TESTS=$BUILD/tests/thrust
  stage "configure ($BUILD)"
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDOTS1_ENABLE_CUDA=ON -DDOTS1_RUN_GPU_TESTS=ON \
    -DCMAKE_CUDA_ARCHITECTURES="90-real;90-virtual" > "$LOG_DIR/configure.txt" 2>&1 || { tail -30 "$LOG_DIR/configure.txt"; fail configure; exit 1; }
  stage "build the CUDA targets (-j$JOBS)"
  timeout 420 cmake --build "$BUILD" -j"$JOBS" --target test_reference_forward_cuda test_bf16_cuda test_generation_options_cuda dots1_tool > "$LOG_DIR/build.txt" 2>&1 \
    || { grep -E "error|Error" "$LOG_DIR/build.txt" | head -40; fail build; exit 1; }
fi
DOTS1=$BIN/dots1
TESTS_ABS=$TESTS

stage "CUDA tests (float32 fixtures; bf16 vs the CPU's bf16 path)"
(cd "$ROOT/tests" && timeout 300 "$TESTS_ABS/test_reference_forward_cuda" --log_level=message 2>&1 | tee "$LOG_DIR/test_reference_forward_cuda.txt" | grep -E "max \|diff\||error|failure|No errors" | tail -40) \
  || true
grep -q "No errors detected" "$LOG_DIR/test_reference_forward_cuda.txt" || fail test_reference_forward_cuda
(cd "$ROOT/tests" && timeout 300 "$TESTS_ABS/test_bf16_cuda" --log_level=message 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | tee "$LOG_DIR/test_bf16_cuda.txt" | grep -vE "^\[context|^    |^\]$" | tail -40) \
  || true
grep -q "No errors detected" "$LOG_DIR/test_bf16_cuda.txt" || fail test_bf16_cuda
(cd "$ROOT/tests" && timeout 120 "$TESTS_ABS/test_generation_options_cuda" --log_level=test_suite 2>&1 | sed 's/\x1b\[[0-9;]*m//g' | tee "$LOG_DIR/test_generation_options_cuda.txt" | grep -E "error|failure|No errors" | tail -20) \
  || true
grep -q "No errors detected" "$LOG_DIR/test_generation_options_cuda.txt" || fail test_generation_options_cuda

stage "dots1 generate --device cuda vs the CPU (embedded model, greedy, 60 tokens)"
cpu=$(timeout 120 "$DOTS1" generate --ids 1,2,3,4,5 --greedy --max-new-tokens 60 --json 2>/dev/null)
gpu=$(timeout 120 "$DOTS1" generate --ids 1,2,3,4,5 --greedy --max-new-tokens 60 --json --device cuda 2>"$LOG_DIR/generate-cuda.err")
echo "cpu: $cpu"; echo "gpu: $gpu"
[[ -n $gpu && $cpu == "$gpu" ]] || { cat "$LOG_DIR/generate-cuda.err"; fail "generate --device cuda differs from the CPU"; }
# sampled (tokens chosen on the device): the same tokens as the CPU's host sampler for the seed
sampled=(generate --prompt "And God said unto Moses," --temperature 0.8 --top-k 40 --top-p 0.95 --seed 7 --max-new-tokens 80 --json)
cpu=$(timeout 120 "$DOTS1" "${sampled[@]}" 2>/dev/null)
gpu=$(timeout 120 "$DOTS1" "${sampled[@]}" --device cuda 2>>"$LOG_DIR/generate-cuda.err")
echo "cpu: $cpu"; echo "gpu: $gpu"
[[ -n $gpu && $cpu == "$gpu" ]] || fail "sampled generate --device cuda differs from the CPU"
timeout 120 "$DOTS1" generate --prompt "And God said unto Moses," --temperature 0.8 --top-k 40 --seed 7 --max-new-tokens 80 --device cuda 2>&1 | tail -3

stage "dots1 bench --device cuda (hidden 4096, 32 heads x 128, 128 experts x 1408 top-6, 2 shared, vocab 152064, 4 layers; bf16)"
timeout 300 "$DOTS1" bench --device cuda --config examples/configs/dots.llm1-4layers.json --dtype bf16 \
  ${DOTS1_GPU_BENCH_ARGS:---prompt 512 --gen 64 --repeat 2 --context 0} --hbm-gbs "${HBM_GBS:-4800}" 2>&1 | tee "$LOG_DIR/bench.txt"
[[ ${PIPESTATUS[0]} == 0 ]] || fail "bench --device cuda"

stage "done: $([[ $status == 0 ]] && echo all checks passed || echo some checks FAILED) (logs in $LOG_DIR)"
exit $status
