// dots1/eigen.hpp — dots1 with the CPU backend (Eigen + OpenMP).
//
//   auto model = dots1::Dots1ForCausalLM<dots1::EigenBackend<float>>::from_pretrained("path/to/checkpoint");
#pragma once

#include "dots1/backend/eigen/eigen_backend.hpp"
#include "dots1/dots1.hpp"

namespace dots1 {

/// The usual CPU model: float32 compute on the Eigen backend, stack chosen by the config.
using CpuModel = Dots1ForCausalLM<EigenBackend<float>>;

}  // namespace dots1
