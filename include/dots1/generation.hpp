// dots1/generation.hpp — text generation (umbrella header): HF-compatible generate() with greedy search
// and sampling, its options (GenerationConfig, generation_config.json), logits processors and streaming.
// Backend-generic: include a backend (dots1/eigen.hpp, dots1/cuda.hpp) for the model itself.
#pragma once

#include "dots1/generation/generate.hpp"
#include "dots1/generation/generation_config.hpp"
#include "dots1/generation/logits_process.hpp"
#include "dots1/generation/sampling.hpp"
#include "dots1/generation/stop_strings.hpp"
