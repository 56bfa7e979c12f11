// The one translation unit that compiles the tool's CPU model (see cpu_model.hpp).
#include "cpu_model.hpp"

DOTS1_INSTANTIATE_MODEL(dots1::CausalLM<dots1::EigenBackend<float>, dots1::Dots1>)
