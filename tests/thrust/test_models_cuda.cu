// The tests' model type on the CUDA device system (ThrustBackend<float>, cuBLAS), compiled once by nvcc for
// every CUDA test that shares it (tests/support/test_models.cpp with DOTS1_TEST_THRUST).
#include "../support/test_models.cpp"
