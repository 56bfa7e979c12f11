// The backend the shared test sources run against, and the model type they share. CMake compiles the same
// sources once per backend: the Eigen CPU backend by default, the Thrust backend (OMP device system) when
// DOTS1_TEST_THRUST is set. The model's heavy functions are compiled once per backend, in
// tests/support/test_models.cpp (dots1/instantiate.hpp), not in every test program.
#pragma once

#if defined(DOTS1_TEST_THRUST)
#include <dots1/cuda.hpp>
namespace dots1_test {
using TestBackend = dots1::ThrustBackend<float>;
}
#else
#include <dots1/eigen.hpp>
namespace dots1_test {
using TestBackend = dots1::EigenBackend<float>;
}
#endif

#include <dots1/instantiate.hpp>

DOTS1_EXTERN_MODEL(dots1::CausalLM<dots1_test::TestBackend, dots1::Dots1>)
