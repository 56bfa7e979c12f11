#!/usr/bin/env bash
# Builds the CUDA targets HERE (no GPU needed: nvcc only compiles) and packs them for a GPU machine whose
# image has the CUDA toolkit but not this project's build dependencies (Eigen, Boost, CLI11, PCRE2, ...):
#   build/gpu-bundle/bin   dots1, test_reference_forward_cuda, test_bf16_cuda, test_generation_options_cuda
#   build/gpu-bundle/lib/dots1/libdots1-cuda.so   the tool's CUDA plugin (loaded for --device cuda)
#   build/gpu-bundle/lib   the shared libraries they need besides glibc and CUDA's (Boost.Test, PCRE2,
#                          utf8proc, OpenMP, Open MPI, ...; libcudart too; cuBLAS is taken from the GPU machine)
#   build/gpu-bundle/SOURCE_DIR   this checkout's path: the binaries find the fixtures and the embedded model
#                          through it (run-gpu-checks.sh links it to the checkout there when the paths differ)
# Then, on the GPU machine: bash tests/gpu/run-gpu-checks.sh build/gpu-bundle  (carry build/gpu-bundle along).
# Usage: bash tests/gpu/prepare-gpu-bundle.sh [BUILD_DIR]   (default build/cuda-gpu; -j from $JOBS, default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build/cuda-gpu}
BUNDLE=build/gpu-bundle
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DDOTS1_ENABLE_CUDA=ON -DDOTS1_RUN_GPU_TESTS=ON > /dev/null
cmake --build "$BUILD" -j"${JOBS:-2}" --target test_reference_forward_cuda test_bf16_cuda test_generation_options_cuda dots1_tool
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE/bin" "$BUNDLE/lib/dots1"
cp "$BUILD/lib/dots1/libdots1-cuda.so" "$BUNDLE/lib/dots1/"  # the tool's CUDA plugin, found at bin/../lib/dots1
cp "$BUILD/bin/dots1" "$BUILD/tests/thrust/test_reference_forward_cuda" "$BUILD/tests/thrust/test_bf16_cuda" \
  "$BUILD/tests/thrust/test_generation_options_cuda" "$BUNDLE/bin/"
ldd "$BUNDLE"/bin/* "$BUNDLE"/lib/dots1/*.so | awk '/=> \//{print $3}' | sort -u | while read -r lib; do
  case $(basename "$lib") in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libcuda.so*|libcublas*) ;;  # the GPU machine's own
    *) cp -L "$lib" "$BUNDLE/lib/" ;;
  esac
done
pwd > "$BUNDLE/SOURCE_DIR"
du -sh "$BUNDLE"
echo "carry $BUNDLE and run: bash tests/gpu/run-gpu-checks.sh $BUNDLE"
