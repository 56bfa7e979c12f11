// libFuzzer target: a structure-aware JSON generator feeding every JSON reader of dots1. The input bytes are
// not JSON themselves: they drive a generator that writes JSON text with the shapes that break readers —
// nesting far past the depth limit (up to ~4000 levels), long strings and arrays (size), keys of the real
// formats (config.json, generation_config.json, forward inputs, tokenizer.json, safetensors entries, trace
// router metadata), integers at every edge (2^31, 2^53, 2^63, 2^64 - 1, 2^64, -100), duplicate keys, escaped
// NULs and raw bytes that are not UTF-8 — so that the mutations explore structure rather than syntax errors.
// The first byte picks the reader:
//   0 Dots1Config (parse_json + from_json)   1 GenerationConfig::from_json   2 forward_input_from_json
//   3 Tokenizer::from_json_text               4 tokenizer_config.json beside a valid tokenizer.json
//   5 a safetensors header (parse_buffer)     6 trace metadata (tokens, config or router of a valid trace)
// Each must accept the text or throw the dots1 error type it documents; any other exception (nlohmann's
// included), a crash or a stack overflow is a bug. And for every text: io::parse_json refuses exactly the
// texts nested deeper than limits::kMaxJsonDepth, before nlohmann's recursion could see them.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include <dots1/config.hpp>
#include <dots1/generation/generation_config.hpp>
#include <dots1/instrument/trace_io.hpp>
#include <dots1/io/forward_json.hpp>
#include <dots1/base/json_input.hpp>
#include <dots1/tokenizer/tokenizer.hpp>

#include "fuzz_support.hpp"

namespace {

/// Reads the fuzzer's bytes as generator choices (0 once they run out).
struct Choices {
  const uint8_t* p;
  size_t n;
  uint8_t byte() {
    if (!n) return 0;
    --n;
    return *p++;
  }
  size_t below(size_t k) { return k ? byte() % k : 0; }
};

constexpr std::array<const char*, 64> kKeys = {
    "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "n_shared_experts", "n_routed_experts", "num_experts_per_tok", "first_k_dense_replace", "n_group",
    "topk_group", "rope_theta", "rope_scaling", "rope_type", "factor", "short_factor", "long_factor", "rms_norm_eps", "model_type",
    "max_position_embeddings", "layer_types", "eos_token_id", "head_dim", "sliding_window", "max_new_tokens", "max_length", "top_k",
    "top_p", "temperature", "do_sample", "pad_token_id", "input_ids", "attention_mask", "position_ids", "labels", "logits_to_keep",
    "model", "type", "vocab", "merges", "pre_tokenizer", "pattern", "Regex", "behavior", "added_tokens", "content", "id", "special",
    "normalizer", "decoder", "version", "added_tokens_decoder", "bos_token", "eos_token", "dtype", "shape", "data_offsets",
    "__metadata__", "experts", "top_k", "n_group", "routed_scaling_factor"};
constexpr std::array<const char*, 24> kStrings = {
    "BPE", "Split", "ByteLevel", "Sequence", "Isolated", "silu", "dots1", "llama", "longrope", "yarn", "default", "F32", "I64", "BF16",
    "full_attention", "sliding_attention", "1.0", "<|endoftext|>", "(\\\\p{L}+)\\\\1", "\\\\s+(?!\\\\S)|\\\\s+", "a b", "\\\\u0000",
    "\\\\ud800", "12abc"};
constexpr std::array<const char*, 16> kNumbers = {"0", "1", "-1", "-100", "2147483647", "2147483648", "9007199254740993",
                                                  "9223372036854775807", "9223372036854775808", "18446744073709551615",
                                                  "18446744073709551616", "1e30", "0.5", "-0.0", "1e-300", "4096"};

struct Generator {
  Choices& in;
  std::string out;
  size_t deepest = 0;

  void string_value() {
    out += '"';
    switch (in.below(4)) {
      case 0: out += kStrings[in.below(kStrings.size())]; break;
      case 1:  // long: size
        out.append(static_cast<size_t>(in.byte()) * 257, static_cast<char>('a' + in.below(26)));
        break;
      case 2:  // raw bytes, some not UTF-8 or control characters
        for (size_t k = in.below(8); k > 0; --k) {
          const char c = static_cast<char>(in.byte());
          if (c == '"' || c == '\\') out += '\\';
          out += c;
        }
        break;
      default: out += "x";
    }
    out += '"';
  }
  void value(size_t depth) {
    deepest = std::max(deepest, depth);
    if (out.size() > (size_t(1) << 20)) return void(out += "0");
    switch (in.below(10)) {
      case 0: {  // object with known keys, sometimes twice
        out += '{';
        const size_t n = in.below(6);
        for (size_t i = 0; i < n; ++i) {
          if (i) out += ',';
          out += '"';
          out += kKeys[in.below(kKeys.size())];
          out += "\":";
          value(depth + 1);
        }
        out += '}';
        deepest = std::max(deepest, depth + 1);
        return;
      }
      case 1: {  // array
        out += '[';
        const size_t n = in.below(8);
        for (size_t i = 0; i < n; ++i) {
          if (i) out += ',';
          value(depth + 1);
        }
        out += ']';
        deepest = std::max(deepest, depth + 1);
        return;
      }
      case 2: {  // a deep nest (beyond the limit half of the time)
        const size_t levels = static_cast<size_t>(in.byte()) * 16 + in.below(16);
        const bool objects = in.below(2);
        for (size_t i = 0; i < levels; ++i) out += objects ? "{\"a\":" : "[";
        deepest = std::max(deepest, depth + levels);
        value(depth + levels);
        for (size_t i = 0; i < levels; ++i) out += objects ? '}' : ']';
        return;
      }
      case 3: return string_value();
      case 4: out += kNumbers[in.below(kNumbers.size())]; return;
      case 5: out += std::to_string(static_cast<int64_t>(in.byte()) * 1000003 - 50000); return;
      case 6: out += in.below(3) == 0 ? "null" : in.below(2) ? "true" : "false"; return;
      case 7: {  // a long array of small integers: size
        out += '[';
        const size_t n = static_cast<size_t>(in.byte()) * 64;
        for (size_t i = 0; i < n; ++i) out += i ? ",7" : "7";
        out += ']';
        deepest = std::max(deepest, depth + 1);
        return;
      }
      default: out += std::to_string(in.below(200)); return;
    }
  }
};

// A valid trace (one MoE layer, E = 4, K = 2, B = 1, S = 3) whose metadata `slot` holds `text`.
std::vector<std::byte> trace_with_metadata(const std::string& slot, const std::string& text) {
  using T = dots1::TensorToWrite;
  const std::vector<int64_t> ids{5, 6, 7}, idx{0, 1, 1, 2, 3, 2};
  const std::vector<float> e12(12, 0.5f), e4(4, 0.f), w6(6, 0.5f);
  std::vector<T> t{T::from<int64_t>("input_ids", {1, 3}, ids),        T::from<float>("layers.0.router_logits", {1, 3, 4}, e12),
                   T::from<float>("layers.0.router_scores", {1, 3, 4}, e12), T::from<float>("layers.0.router_bias", {4}, e4),
                   T::from<int64_t>("layers.0.topk_indices", {1, 3, 2}, idx), T::from<float>("layers.0.topk_weights", {1, 3, 2}, w6)};
  std::map<std::string, std::string> meta{{"format", "dots1-trace"}, {"version", "1"}, {"tokens", "[\"a\",\"b\",\"c\"]"}, {"model", "m"},
                                          {"config", "{}"}, {"router", "{\"experts\":4,\"top_k\":2}"}, {"layers", "1"}, {"past", "0"}};
  meta[slot] = text;
  return dots1::serialize_safetensors(t, meta);
}

const char* kTokenizer =
    R"({"model": {"type": "BPE", "vocab": {"<unk>": 0, "a": 1, "b": 2, "ab": 3}, "merges": [["a", "b"]], "unk_token": "<unk>"},
        "added_tokens": [{"id": 4, "content": "<s>", "special": true}]})";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Choices in{data + 1, size - 1};
  Generator g{in, {}};
  g.value(0);
  const std::string& text = g.out;

  // The depth limit holds for every text, before nlohmann parses anything.
  bool refused = false;
  nlohmann::json j;
  try {
    j = dots1::io::parse_json(text, [](const std::string& p) -> void { throw dots1::InputError(p); });
  } catch (const dots1::InputError&) {
    refused = true;
  }
  FUZZ_CHECK(!(g.deepest > dots1::limits::kMaxJsonDepth && !refused), "a text nested " + std::to_string(g.deepest) + " deep was parsed");

  try {
    switch (data[0] % 7) {
      case 0:
        if (!refused) (void)dots1::Dots1Config::from_json(j);
        break;
      case 1:
        if (!refused) (void)dots1::GenerationConfig::from_json(j);
        break;
      case 2:
        if (!refused) (void)dots1::forward_input_from_json(j);
        break;
      case 3:
        (void)dots1::Tokenizer::from_json_text(text, "fuzz/tokenizer.json");
        break;
      case 4:
        if (!refused) (void)dots1::Tokenizer::from_json_text(kTokenizer, "fuzz/tokenizer.json", &j, "fuzz/tokenizer_config.json");
        break;
      case 5: {  // the text as a safetensors header, with data for it when it describes some
        std::vector<std::byte> file(8 + text.size() + static_cast<size_t>(in.byte()) * 4);
        const uint64_t n = text.size();
        for (int i = 0; i < 8; ++i) file[static_cast<size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xff);
        std::memcpy(file.data() + 8, text.data(), text.size());
        (void)dots1::SafetensorsFile::parse_buffer(file, "fuzz.safetensors");
        break;
      }
      default: {
        static const char* slots[] = {"tokens", "config", "router"};
        const auto bytes = trace_with_metadata(slots[in.below(3)], text);
        (void)dots1::read_trace(dots1::SafetensorsFile::parse_buffer(bytes, "fuzz.safetensors"));
      }
    }
  } catch (const dots1::ConfigError&) {
  } catch (const dots1::GenerationError&) {
  } catch (const dots1::InputError&) {
  } catch (const dots1::TokenizerError&) {
  } catch (const dots1::SafetensorsError&) {
  } catch (const dots1::ResourceError&) {
  }
  return 0;
}
