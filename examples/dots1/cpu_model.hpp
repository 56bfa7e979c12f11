// The dots1 tool's CPU model type (dots1::CpuModel), compiled once for every subcommand: its forward,
// loading and generate() live in cpu_model.cpp (dots1/instantiate.hpp); a change to a block rebuilds that
// one file, not every subcommand.
#pragma once

#include <dots1/eigen.hpp>
#include <dots1/instantiate.hpp>

DOTS1_EXTERN_MODEL(dots1::CausalLM<dots1::EigenBackend<float>, dots1::Dots1>)
