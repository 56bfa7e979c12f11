// dots1/cuda.hpp — dots1 with the Thrust backend: NVIDIA GPUs when compiled by nvcc (cuBLAS GEMMs,
// link CUDA::cublas), or any other Thrust device system selected with THRUST_DEVICE_SYSTEM (e.g. OpenMP:
// g++ -fopenmp -DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP -I<cuda>/include/cccl).
//
//   auto model = dots1::GpuModel::from_pretrained("path/to/checkpoint");
#pragma once

#include "dots1/backend/thrust/thrust_backend.hpp"
#include "dots1/dots1.hpp"

namespace dots1 {

/// float32 compute on the Thrust backend, stack chosen by the config.
using GpuModel = Dots1ForCausalLM<ThrustBackend<float>>;

}  // namespace dots1
