// The one translation unit that compiles the tests' model type (dots1/instantiate.hpp): built once per
// backend into a library every test program of that backend links.
#include "backend_under_test.hpp"

DOTS1_INSTANTIATE_MODEL(dots1::CausalLM<dots1_test::TestBackend, dots1::Dots1>)
