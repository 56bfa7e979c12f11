// dots1/dots1.hpp — the core of dots1: config, checkpoint I/O, the blocks and the backend-generic model,
// generation. It includes no backend: add one with dots1/eigen.hpp (CPU) or dots1/cuda.hpp (NVIDIA GPUs).
#pragma once

#include "dots1/config.hpp"
#include "dots1/error.hpp"
#include "dots1/generation.hpp"
#include "dots1/io/checkpoint.hpp"
#include "dots1/io/forward_json.hpp"
#include "dots1/io/safetensors.hpp"
#include "dots1/model/causal_lm.hpp"
#include "dots1/model/describe.hpp"
#include "dots1/model/dots1.hpp"
