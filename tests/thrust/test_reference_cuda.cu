// The HF reference forward test (tests/model/test_reference.cpp) compiled by nvcc against
// dots1::ThrustBackend<float> on the CUDA device system (cuBLAS GEMMs); DOTS1_TEST_THRUST is set by CMake.
#include "../model/test_reference.cpp"
