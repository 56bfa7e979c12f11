// tests/thrust/test_bf16_thrust.cpp compiled by nvcc: bf16 weights on the CUDA device system (GEMV kernel,
// grouped expert kernel, cublasGemmEx on tensor cores) against the CPU backend's bf16 path.
#include "test_bf16_thrust.cpp"
