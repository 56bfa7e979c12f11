// dots1/base/limits.hpp — every bound dots1 puts on what it reads, in one place (README "Reliability" lists
// them). Each is far above what a real checkpoint, tokenizer or input needs; its purpose is that a broken or
// hostile file fails with a clear error instead of exhausting memory, the stack or the user's patience.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dots1::limits {

/// Nesting depth of any JSON document dots1 parses (config.json, tokenizer.json, tokenizer_config.json,
/// generation_config.json, model.safetensors.index.json, safetensors headers, trace metadata, forward inputs,
/// `dots1 tokenize` lines). 128 is serde_json's recursion limit, so every file HF's Rust readers
/// (tokenizers, safetensors) accept passes; real files nest 6 deep at most.
inline constexpr std::size_t kMaxJsonDepth = 128;

/// Sizes of the files dots1 reads whole into memory.
inline constexpr std::uint64_t kMaxSmallJsonBytes = std::uint64_t(64) << 20;    // config, generation/tokenizer config, index
inline constexpr std::uint64_t kMaxTokenizerJsonBytes = std::uint64_t(1) << 30;  // tokenizer.json (Qwen2's: 11 MB)
inline constexpr std::uint64_t kMaxForwardInputBytes = std::uint64_t(256) << 20; // `dots1 forward --input`
inline constexpr std::uint64_t kMaxTextFileBytes = std::uint64_t(64) << 20;      // chat_template.jinja, prompt files

/// A safetensors header (the JSON after the 8-byte length): HF safetensors' MAX_HEADER_SIZE.
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

/// One line of `dots1 tokenize`'s standard input.
inline constexpr std::size_t kMaxInputLineBytes = std::size_t(256) << 20;

/// Split pre-tokenizer regexes (tokenizer/regex.hpp). A match attempt at one start position may take up to
/// kRegexFastMatchLimit PCRE2 steps on the fast (JIT) path; one that needs more is retried alone, and all such
/// retries of one text together may use kRegexStepsPerByte steps per byte of the text plus kRegexBaseSteps.
/// So the time a pattern spends on a text is linear in its length; a pattern whose cost grows faster
/// (catastrophic backtracking) fails with TokenizerError instead of running for hours. (Backreferences, whose
/// single steps are not bounded, are refused when the pattern is read.)
inline constexpr std::uint32_t kRegexFastMatchLimit = 4096;
inline constexpr std::uint64_t kRegexStepsPerByte = 64;
inline constexpr std::uint64_t kRegexBaseSteps = std::uint64_t(1) << 24;
inline constexpr std::uint32_t kRegexHeapLimitKiB = 256 * 1024;  // the interpreter's backtracking memory

/// The memory preflight (base/memory_check.hpp) asks the system about allocations of at least this size.
inline constexpr std::uint64_t kPreflightMinBytes = std::uint64_t(16) << 20;

}  // namespace dots1::limits
