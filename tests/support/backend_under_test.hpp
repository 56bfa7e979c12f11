// The backend the shared test sources run against. CMake compiles the same sources once per backend:
// the Eigen CPU backend by default, the Thrust backend (OMP device system) when DOTS1_TEST_THRUST is set.
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
