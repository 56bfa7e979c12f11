// The generation options test (tests/generation/test_generation_options.cpp) compiled by nvcc with
// DOTS1_TEST_THRUST: the logits processors and token choice on the GPU (ThrustTokenSelector on the CUDA
// device system) against HF's fixtures and the host pipeline.
#include "../generation/test_generation_options.cpp"
