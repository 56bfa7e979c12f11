// dots1/tokenizer/tokenizer.hpp — dots1::Tokenizer: HF tokenizers' Tokenizer for byte-level BPE
// tokenizer.json files of the Qwen2 family (the kind dots.llm1 ships), id-for-id identical to the
// Rust `tokenizers` library.
//
// Pipeline of encode(), as in HF: (1) added tokens with normalized == false are cut out of the raw
// text; (2) each remaining stretch is normalized (NFC) and (3) added tokens with normalized == true are
// cut out of it; (4) the rest is pre-tokenized (Split regex, ByteLevel) into words; (5) each word goes
// through BPE. Unsupported tokenizer.json features throw TokenizerError naming the feature.
//
// Special tokens and `add_special_tokens`: HF's encode(text, add_special_tokens=True) only differs from
// add_special_tokens=False through the post-processor; Qwen2-family files use the ByteLevel
// post-processor, which adds nothing (there is no BOS), so encode() here equals both. Post-processors
// that add tokens (TemplateProcessing, Bert, Roberta) are refused at load. `parse_special` is something
// else: whether special added tokens written in the text ("<|endoftext|>") become their ids (true, HF's
// default) or are tokenized as plain text (false, HF's encode_special_tokens = True).
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "dots1/error.hpp"
#include "dots1/base/json_input.hpp"
#include "dots1/base/limits.hpp"
#include "dots1/tokenizer/added_tokens.hpp"
#include "dots1/tokenizer/bpe.hpp"
#include "dots1/tokenizer/byte_level.hpp"
#include "dots1/tokenizer/normalizer.hpp"
#include "dots1/tokenizer/pre_tokenizer.hpp"
#include "dots1/tokenizer/tokenizer_json.hpp"
#include "dots1/tokenizer/unicode.hpp"

namespace dots1 {

using tok::AddedToken;

/// A special token named in tokenizer_config.json (bos_token, eos_token, ...), resolved to its id.
struct SpecialToken {
  std::string content;
  int32_t id = -1;
};

/// The special tokens tokenizer_config.json names; each is absent when the file has null or no entry
/// (dots.llm1 has no BOS: bos is absent).
struct SpecialTokens {
  std::optional<SpecialToken> bos, eos, pad, unk;
};

/// Immutable once loaded; all methods may be called from several threads at once (the word cache is
/// locked per shard). Copies are cheap and share the loaded data and the cache.
class Tokenizer {
 public:
  /// Loads a tokenizer.json file.
  static Tokenizer from_file(const std::filesystem::path& tokenizer_json) {
    const std::string path = tokenizer_json.string();
    return from_json_text(tok::read_text_file(path), path);
  }

  /// Loads a checkpoint folder: tokenizer.json, plus tokenizer_config.json when present (special tokens,
  /// chat_template, extra added tokens), plus chat_template.jinja / chat_template.json when present.
  static Tokenizer from_folder(const std::filesystem::path& dir) {
    const auto tj = dir / "tokenizer.json";
    if (!std::filesystem::exists(tj))
      throw IoError("no tokenizer.json in " + dir.string() + " (dots1 reads the fast-tokenizer file only)");
    std::optional<nlohmann::json> config;
    const auto cfg_path = dir / "tokenizer_config.json";
    if (std::filesystem::exists(cfg_path)) {
      config = io::read_json_file(cfg_path, "tokenizer config file", limits::kMaxSmallJsonBytes,
                                  [&](const std::string& problem) { throw TokenizerError(cfg_path.string() + ": invalid JSON: " + problem); });
      if (!config->is_object()) throw TokenizerError(cfg_path.string() + ": not a JSON object");
    }
    Tokenizer t = from_json_text(tok::read_text_file(tj.string()), tj.string(), config ? &*config : nullptr,
                                 cfg_path.string());
    // Newer transformers save the template beside the config.
    if (const auto jinja = dir / "chat_template.jinja"; std::filesystem::exists(jinja)) {
      t.impl_->chat_template = tok::read_text_file(jinja.string(), "chat template file", limits::kMaxTextFileBytes);
    } else if (const auto cj = dir / "chat_template.json"; std::filesystem::exists(cj)) {
      const auto j = io::read_json_file(cj, "chat template file", limits::kMaxSmallJsonBytes,
                                        [&](const std::string& problem) { throw TokenizerError(cj.string() + ": invalid JSON: " + problem); });
      if (j.is_object() && j.contains("chat_template")) t.impl_->chat_template = pick_template(j["chat_template"], cj.string());
    }
    return t;
  }

  /// Loads from the text of a tokenizer.json (and optionally a parsed tokenizer_config.json).
  static Tokenizer from_json_text(std::string_view tokenizer_json, const std::string& origin = "tokenizer.json",
                                  const nlohmann::json* tokenizer_config = nullptr,
                                  const std::string& config_origin = "tokenizer_config.json") {
    Tokenizer t;
    t.impl_ = std::make_shared<Impl>();
    try {
      t.impl_->load(tok::parse_tokenizer_json(tokenizer_json, origin), origin, tokenizer_config, config_origin);
    } catch (const nlohmann::json::exception& e) {  // a field of the wrong JSON type
      throw TokenizerError(origin + ": unexpected value in tokenizer files: " + io::json_error_text(e));
    }
    return t;
  }

  /// Token ids of `text` (UTF-8; invalid UTF-8 throws TokenizerError with the byte offset).
  /// `parse_special`: special added tokens in the text become their ids (HF default) or plain text.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const {
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    encode_into(text, parse_special, ids);
    return ids;
  }

  /// encode(text) with special tokens parsed only outside the sorted, disjoint byte ranges `plain`: a
  /// special token that overlaps one of them is tokenized as text (the chat format passes the ranges that
  /// came from message contents, so that a user cannot write the template's markers). The rest of the
  /// pipeline is the same, so without special-token text in `plain` the ids are encode(text)'s. (A
  /// special token with normalized = true, rare, is parsed only in stretches that touch no plain range.)
  std::vector<int32_t> encode(std::string_view text, std::span<const tok::TextRange> plain) const {
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    encode_into(text, true, ids, plain);
    return ids;
  }

  /// Appends the ids of `text` to `ids` (`plain`: as in encode(text, plain)).
  void encode_into(std::string_view text, bool parse_special, std::vector<int32_t>& ids,
                   std::span<const tok::TextRange> plain = {}) const {
    tok::validate_utf8(text);
    const Impl& m = *impl_;
    m.added.split(
        text, false, parse_special,
        [&](std::string_view piece, int32_t id) {
          if (id >= 0) {
            ids.push_back(id);
            return;
          }
          if (piece.empty()) return;  // HF drops empty splits here (matters for ByteLevel add_prefix_space)
          const size_t at = static_cast<size_t>(piece.data() - text.data());
          const bool piece_special = parse_special && (plain.empty() || !tok::overlaps(plain, at, at + piece.size()));
          std::string normalized;
          const std::string_view norm = m.normalizer.apply(piece, normalized) ? std::string_view(normalized) : piece;
          m.added.split(norm, true, piece_special, [&](std::string_view sub, int32_t id2) {
            if (id2 >= 0) {
              ids.push_back(id2);
              return;
            }
            m.pre.run(sub, [&](std::string_view word) { m.model.tokenize(word, ids); });
          });
        },
        plain);
  }

  /// encode() of each text, on `num_threads` OpenMP threads (0: OpenMP's default). Results are the
  /// same as encoding one by one; the first error is rethrown.
  std::vector<std::vector<int32_t>> encode_batch(std::span<const std::string> texts, bool parse_special = true,
                                                 int num_threads = 0) const {
    std::vector<std::vector<int32_t>> out(texts.size());
    std::vector<std::string> errors(texts.size());
    const int n = static_cast<int>(texts.size());
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 8) num_threads(num_threads > 0 ? num_threads : omp_get_max_threads())
#else
    (void)num_threads;  // built without OpenMP: one thread
#endif
    for (int i = 0; i < n; ++i) {
      try {
        out[i] = encode(texts[i], parse_special);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
    for (size_t i = 0; i < errors.size(); ++i)
      if (!errors[i].empty()) throw TokenizerError("encode_batch: text " + std::to_string(i) + ": " + errors[i]);
    return out;
  }

  /// Text of `ids`, as HF's decode: tokens joined by the ByteLevel decoder, byte sequences that are not
  /// UTF-8 replaced by U+FFFD (Rust's from_utf8_lossy). `skip_special` drops special tokens. Ids that
  /// are no token at all are dropped, as HF does (use id_to_token() to check ids first).
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const {
    const Impl& m = *impl_;
    std::string bytes;
    bool first = true;
    for (int32_t id : ids) {
      if (id < 0 || static_cast<size_t>(id) >= m.decoded.size() || !m.present[id]) continue;
      if (skip_special && m.special_string[id]) continue;
      if (!m.byte_level_decoder && !first) bytes += ' ';
      bytes += m.decoded[id];
      first = false;
    }
    return m.byte_level_decoder ? tok::utf8_lossy(bytes) : bytes;
  }
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const {
    return decode(std::span<const int32_t>(ids), skip_special);
  }

  /// Id of a token string (added tokens first, then the model vocab, as HF). Model tokens are in the
  /// byte-level alphabet: " the" is "Ġthe".
  std::optional<int32_t> token_to_id(std::string_view token) const {
    if (auto id = impl_->added.token_to_id(token)) return id;
    return impl_->model.token_to_id(token);
  }

  /// Token string of an id (an added token's content, or the model's byte-level string), or nullopt.
  std::optional<std::string> id_to_token(int32_t id) const {
    if (const auto* t = impl_->added.find(id)) return t->content;
    if (const auto s = impl_->model.id_to_token(id)) return std::string(*s);
    return std::nullopt;
  }

  /// The bytes the decoder makes of token `id` alone, before decode() repairs invalid UTF-8 (empty for an
  /// id that is no token). What HF's stop-string matching compares for a byte-level vocabulary.
  std::string_view token_bytes(int32_t id) const {
    if (id < 0 || static_cast<size_t>(id) >= impl_->decoded.size()) return {};
    return impl_->decoded[static_cast<size_t>(id)];
  }
  /// Whether tokenizer.json's decoder is ByteLevel (the Qwen2 family's), i.e. tokens are byte strings.
  bool byte_level_decoder() const noexcept { return impl_->byte_level_decoder; }

  /// One past the largest id (model vocab and added tokens): the size an embedding needs at least.
  /// For the Qwen2 vocabulary: 151669 (151643 BPE tokens + 26 added tokens).
  size_t vocab_size() const noexcept { return impl_->decoded.size(); }

  /// Whether `id` is a special added token (what decode(skip_special = true) removes).
  bool is_special(int32_t id) const {
    const auto* t = impl_->added.find(id);
    return t && t->special;
  }

  /// The added tokens, by id.
  std::vector<AddedToken> added_tokens() const { return impl_->added.tokens(); }

  /// bos / eos / pad / unk from tokenizer_config.json (all absent when loaded without one).
  const SpecialTokens& special_tokens() const noexcept { return impl_->special; }
  std::optional<int32_t> bos_id() const { return impl_->special.bos ? std::optional(impl_->special.bos->id) : std::nullopt; }
  std::optional<int32_t> eos_id() const { return impl_->special.eos ? std::optional(impl_->special.eos->id) : std::nullopt; }
  std::optional<int32_t> pad_id() const { return impl_->special.pad ? std::optional(impl_->special.pad->id) : std::nullopt; }

  /// The special tokens apply_chat_template passes to a chat template as variables, as HF's
  /// special_tokens_map: bos_token, eos_token, unk_token, sep_token, pad_token, cls_token, mask_token (those
  /// tokenizer_config.json sets, as strings) and the named extra_special_tokens (a dict there).
  const std::vector<std::pair<std::string, std::string>>& template_special_tokens() const noexcept { return impl_->template_tokens; }

  /// The Jinja chat template of the checkpoint, if it has one (see ChatFormat::for_tokenizer).
  const std::optional<std::string>& chat_template() const noexcept { return impl_->chat_template; }

  /// Text after the normalizer (NFC), for tests and tools.
  std::string normalize(std::string_view text) const {
    tok::validate_utf8(text);
    return impl_->normalizer.normalize(text);
  }

  /// Where this tokenizer was loaded from.
  const std::string& origin() const noexcept { return impl_->origin; }

 private:
  Tokenizer() = default;  // only the factories make one: a Tokenizer is never empty

  struct Impl {
    std::string origin;
    tok::Normalizer normalizer;
    tok::PreTokenizer pre;
    tok::BpeModel model;
    tok::AddedVocabulary added;
    bool byte_level_decoder = false;
    std::vector<std::string> decoded;     // per id: bytes the decoder produces for it
    std::vector<uint8_t> present;         // per id: is it a token
    std::vector<uint8_t> special_string;  // per id: its decode string is a special token's content
    SpecialTokens special;
    std::vector<std::pair<std::string, std::string>> template_tokens;
    std::optional<std::string> chat_template;

    void load(tok::TokenizerJson tj, const std::string& path, const nlohmann::json* config, const std::string& config_path) {
      origin = path;
      const nlohmann::json& root = tj.root;
      if (root.contains("version") && root["version"] != "1.0")
        throw TokenizerError(path + ": unknown tokenizer.json version " + io::shown_json(root["version"]));
      // "truncation" and "padding" are ignored: transformers overrides them on every call (no truncation,
      // no padding by default), and padding is a batching concern outside this class.

      normalizer = tok::Normalizer::from_json(root.value("normalizer", nlohmann::json()), path);
      pre = tok::PreTokenizer::from_json(root.value("pre_tokenizer", nlohmann::json()), path);
      check_post_processor(root.value("post_processor", nlohmann::json()), path);
      byte_level_decoder = parse_decoder(root.value("decoder", nlohmann::json()), path);

      const nlohmann::json model_json = root.value("model", nlohmann::json());
      if (!model_json.is_object()) throw TokenizerError(path + ": no 'model' object");
      const std::string type = model_json.value("type", std::string("BPE"));
      if (type != "BPE")
        throw TokenizerError(path + ": unsupported model type '" + shown(type) + "' (dots1 implements BPE)");
      if (!tj.has_vocab || !tj.has_merges) throw TokenizerError(path + ": model has no 'vocab' object or no 'merges' array");
      if (model_json.contains("dropout") && !model_json["dropout"].is_null() && model_json["dropout"].get<double>() != 0.0)
        throw TokenizerError(path + ": BPE dropout is not supported (it makes encoding random)");
      tok::BpeOptions opts;
      auto str_or_empty = [&](const char* k) {
        return model_json.contains(k) && model_json[k].is_string() ? model_json[k].get<std::string>() : std::string();
      };
      if (model_json.contains("unk_token") && model_json["unk_token"].is_string()) opts.unk_token = model_json["unk_token"].get<std::string>();
      opts.continuing_subword_prefix = str_or_empty("continuing_subword_prefix");
      opts.end_of_word_suffix = str_or_empty("end_of_word_suffix");
      opts.fuse_unk = model_json.value("fuse_unk", false);
      opts.byte_fallback = model_json.value("byte_fallback", false);
      opts.ignore_merges = model_json.value("ignore_merges", false);
      model = tok::BpeModel(std::move(tj.vocab), tj.merges, std::move(opts), pre.byte_level(), path);
      tj.merges.clear();
      tj.merges.shrink_to_fit();

      std::vector<AddedToken> tokens = parse_added_tokens(root.value("added_tokens", nlohmann::json::array()), path, "added_tokens");
      if (config && config->contains("added_tokens_decoder")) {
        // transformers also adds the tokens listed here; those missing from tokenizer.json are appended.
        for (auto& t : parse_added_decoder((*config)["added_tokens_decoder"], config_path)) {
          const bool known = std::any_of(tokens.begin(), tokens.end(), [&](const AddedToken& x) { return x.content == t.content; });
          if (!known) tokens.push_back(std::move(t));
        }
      }
      added.build(tokens, model, normalizer, path);

      // Per-id tables for decode().
      size_t bound = model.id_bound();
      for (const auto& t : added.tokens()) bound = std::max(bound, static_cast<size_t>(t.id) + 1);
      decoded.assign(bound, std::string());
      present.assign(bound, 0);
      special_string.assign(bound, 0);
      for (size_t id = 0; id < bound; ++id) {
        const auto i = static_cast<int32_t>(id);
        std::optional<std::string_view> s;
        if (const std::string* a = added.decode_form(i)) s = *a;
        else s = model.id_to_token(i);
        if (!s) continue;
        present[id] = 1;
        decoded[id] = byte_level_decoder ? tok::byte_level_decode_token(*s) : std::string(*s);
        special_string[id] = !added.empty() && added.is_special_content(*s);
      }

      if (config) load_config(*config, config_path);
    }

    static void check_post_processor(const nlohmann::json& j, const std::string& path) {
      if (j.is_null()) return;
      const std::string type = j.value("type", std::string());
      if (type == "ByteLevel") return;  // only trims offsets: no effect on ids
      if (type == "Sequence" && j.contains("processors") && j["processors"].is_array()) {
        for (const auto& p : j["processors"]) check_post_processor(p, path);
        return;
      }
      throw TokenizerError(path + ": unsupported post_processor type '" + shown(type) +
                           "' (it adds special tokens such as BOS; dots1 supports ByteLevel, as in Qwen2-family files)");
    }

    static bool parse_decoder(const nlohmann::json& j, const std::string& path) {
      if (j.is_null()) return false;
      const std::string type = j.value("type", std::string());
      if (type == "ByteLevel") return true;
      if (type == "Sequence" && j.contains("decoders") && j["decoders"].is_array() && j["decoders"].size() == 1)
        return parse_decoder(j["decoders"][0], path);
      throw TokenizerError(path + ": unsupported decoder type '" + shown(type) + "' (dots1 supports ByteLevel or none)");
    }

    static AddedToken parse_token_fields(const nlohmann::json& e, const std::string& where) {
      if (!e.is_object() || !e.contains("content") || !e["content"].is_string())
        throw TokenizerError(where + ": an added token must be an object with a string 'content'");
      AddedToken t;
      t.content = e["content"].get<std::string>();
      tok::validate_utf8(t.content, where + " content");
      t.single_word = e.value("single_word", false);
      t.lstrip = e.value("lstrip", false);
      t.rstrip = e.value("rstrip", false);
      t.special = e.value("special", false);
      t.normalized = e.value("normalized", !t.special);  // HF's default: special tokens are not normalized
      return t;
    }

    static std::vector<AddedToken> parse_added_tokens(const nlohmann::json& arr, const std::string& path, const char* field) {
      if (!arr.is_array()) throw TokenizerError(path + ": '" + field + "' must be an array");
      std::vector<AddedToken> out;
      for (const auto& e : arr) {
        AddedToken t = parse_token_fields(e, path + " " + field);
        if (!e.contains("id") || !e["id"].is_number_integer() || e["id"].get<int64_t>() < 0 || e["id"].get<int64_t>() > INT32_MAX)
          throw TokenizerError(path + " " + field + ": token '" + shown(t.content) + "' has no valid 'id'");
        t.id = static_cast<int32_t>(e["id"].get<int64_t>());
        out.push_back(std::move(t));
      }
      return out;
    }

    static std::vector<AddedToken> parse_added_decoder(const nlohmann::json& obj, const std::string& path) {
      if (!obj.is_object()) throw TokenizerError(path + ": 'added_tokens_decoder' must be an object");
      std::vector<AddedToken> out;
      for (const auto& [k, e] : obj.items()) {
        AddedToken t = parse_token_fields(e, path + " added_tokens_decoder");
        // The key is the id in decimal: digits only, within int32 (std::stoi would take "12abc" or " -5").
        int64_t id = 0;
        bool ok = !k.empty() && k.size() <= 10 && k.find_first_not_of("0123456789") == std::string::npos;
        if (ok) id = std::stoll(k);
        if (!ok || id > INT32_MAX) throw TokenizerError(path + ": added_tokens_decoder key '" + shown(k) + "' is not an id");
        t.id = static_cast<int32_t>(id);
        out.push_back(std::move(t));
      }
      std::sort(out.begin(), out.end(), [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
      return out;
    }

    std::optional<int32_t> lookup(std::string_view s) const {
      if (auto id = added.token_to_id(s)) return id;
      return model.token_to_id(s);
    }

    void load_config(const nlohmann::json& c, const std::string& path) {
      auto resolve = [&](const char* field) -> std::optional<SpecialToken> {
        if (!c.contains(field) || c[field].is_null()) return std::nullopt;
        const auto& v = c[field];
        std::string content;
        if (v.is_string())
          content = v.get<std::string>();
        else if (v.is_object() && v.contains("content") && v["content"].is_string())
          content = v["content"].get<std::string>();
        else
          throw TokenizerError(path + ": '" + field + "' must be null, a string or an object with 'content'");
        const auto id = lookup(content);
        if (!id) throw TokenizerError(path + ": " + field + " '" + shown(content) + "' is not a token of the vocabulary");
        return SpecialToken{content, *id};
      };
      special.bos = resolve("bos_token");
      special.eos = resolve("eos_token");
      special.pad = resolve("pad_token");
      special.unk = resolve("unk_token");
      auto content_of = [&](const nlohmann::json& v) -> std::optional<std::string> {
        if (v.is_string()) return v.get<std::string>();
        if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
        return std::nullopt;
      };
      for (const char* field : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"})
        if (c.contains(field))
          if (auto s = content_of(c[field])) template_tokens.emplace_back(field, *s);
      if (c.contains("extra_special_tokens") && c["extra_special_tokens"].is_object())
        for (const auto& [k, v] : c["extra_special_tokens"].items())
          if (auto s = content_of(v)) template_tokens.emplace_back(k, *s);
      if (c.contains("chat_template") && !c["chat_template"].is_null()) chat_template = pick_template(c["chat_template"], path);
    }
  };

  /// chat_template is a string, or a list of {"name", "template"} of which "default" is used.
  static std::string pick_template(const nlohmann::json& v, const std::string& path) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_array()) {
      for (const auto& e : v)
        if (e.is_object() && e.value("name", std::string()) == "default" && e.contains("template") && e["template"].is_string())
          return e["template"].get<std::string>();
      throw TokenizerError(path + ": chat_template is a list without a 'default' entry");
    }
    throw TokenizerError(path + ": chat_template must be a string or a list of {name, template}");
  }

  std::shared_ptr<Impl> impl_;  // shared: copies of a Tokenizer share the (thread-safe) word cache
};

}  // namespace dots1
