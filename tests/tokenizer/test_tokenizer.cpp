// dots1::Tokenizer against HF tokenizers: the committed reference ids (Qwen2 vocabulary, 3000+ texts,
// tiny tokenizers for the other supported features), decoding, lookups, errors.
#define BOOST_TEST_MODULE tokenizer
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <dots1/tokenizer.hpp>

#include "tokenizer_fixtures.hpp"

using dots1::Tokenizer;
using dots1::TokenizerError;
using dots1_test::fixtures;
using dots1_test::ids_of;
using dots1_test::qwen2_dir;
using dots1_test::read_jsonl;

namespace {

const Tokenizer& qwen2() {
  static const Tokenizer t = Tokenizer::from_folder(qwen2_dir());
  return t;
}

std::string show(const std::vector<int32_t>& v) {
  std::ostringstream s;
  s << '[';
  for (size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  s << ']';
  return s.str();
}

// Checks every record of a fixture file produced by encode_record() in make_tokenizer_fixtures.py.
// Returns the number of records that differ from HF (and logs the first few).
size_t check_records(const Tokenizer& tok, const std::vector<nlohmann::json>& records, const char* what) {
  size_t bad = 0;
  for (const auto& r : records) {
    const std::string text = r["text"];
    const auto want = ids_of(r["ids"]);
    const auto want_plain = r.contains("ids_plain") ? ids_of(r["ids_plain"]) : want;
    const std::string want_dec = r.value("decoded", text);
    const std::string want_skip = r.value("decoded_skip", want_dec);
    std::string why;
    std::vector<int32_t> got, got_plain;
    try {
      got = tok.encode(text);
      got_plain = tok.encode(text, /*parse_special=*/false);
      if (got != want) why = "encode " + show(got) + " != HF " + show(want);
      else if (got_plain != want_plain) why = "encode(parse_special=false) " + show(got_plain) + " != HF " + show(want_plain);
      else if (tok.decode(want) != want_dec) why = "decode differs: '" + tok.decode(want) + "'";
      else if (tok.decode(want, true) != want_skip) why = "decode(skip_special) differs: '" + tok.decode(want, true) + "'";
    } catch (const std::exception& e) {
      why = std::string("exception: ") + e.what();
    }
    if (!why.empty()) {
      if (++bad <= 10)
        BOOST_TEST_MESSAGE(what << " mismatch [" << r.value("src", r.value("tokenizer", std::string())) << "] "
                                << nlohmann::json(text).dump().substr(0, 200) << ": " << why);
    }
  }
  return bad;
}

bool contains(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const TokenizerError& e) {
    return e.what();
  }
  return "(no TokenizerError)";
}

// A minimal tokenizer.json around a 2-merge byte-level model, with one field replaced.
std::string mini_json(const std::string& field, const std::string& value) {
  nlohmann::json j = nlohmann::json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
    "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
              "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
              "vocab": {"a": 0, "b": 1, "ab": 2, "c": 3}, "merges": [["a", "b"]]}})");
  nlohmann::json v = nlohmann::json::parse(value);
  if (field.rfind("model.", 0) == 0)
    j["model"][field.substr(6)] = v;
  else
    j[field] = v;
  return j.dump();
}

}  // namespace

BOOST_AUTO_TEST_CASE(unicode_tables_match_installed_libraries) {
  // unicode_tables.hpp records where PCRE2 / utf8proc differ from HF; it is only right for the library
  // versions it was generated with (regenerate with tests/tokenizer/make_unicode_tables.py).
  char buf[64] = {};
  pcre2_config(PCRE2_CONFIG_UNICODE_VERSION, buf);
  BOOST_TEST(std::string(buf) == dots1::tok::tables::kPcre2UnicodeVersion);
  BOOST_TEST(std::string(utf8proc_unicode_version()) == dots1::tok::tables::kUtf8procUnicodeVersion);
}

BOOST_AUTO_TEST_CASE(qwen2_loads_quickly_and_knows_its_tokens) {
  const auto t0 = std::chrono::steady_clock::now();
  const Tokenizer t = Tokenizer::from_file(qwen2_dir() / "tokenizer.json");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  BOOST_TEST_MESSAGE("loading the 11 MB tokenizer.json took " << secs << " s");
  BOOST_TEST(secs < 3.0);  // ~0.3 s in Release; loose because Debug and sanitizer builds run this too

  const Tokenizer& q = qwen2();
  BOOST_TEST(q.vocab_size() == 151669u);
  BOOST_TEST(q.token_to_id("<|endoftext|>").value() == 151643);
  BOOST_TEST(q.token_to_id("Ġthe").value() == 279);
  BOOST_TEST(q.id_to_token(151643).value() == "<|endoftext|>");
  BOOST_TEST(q.id_to_token(279).value() == "Ġthe");
  BOOST_TEST(!q.id_to_token(151669).has_value());
  BOOST_TEST(!q.id_to_token(-1).has_value());
  BOOST_TEST(!q.token_to_id("no such token").has_value());
  BOOST_TEST(q.is_special(151643));
  BOOST_TEST(!q.is_special(151667));  // <think> is an added token, not special
  BOOST_TEST(q.added_tokens().size() == 26u);
  // From tokenizer_config.json: no BOS; eos <|im_end|>; pad <|endoftext|>.
  BOOST_TEST(!q.bos_id().has_value());
  BOOST_TEST(q.eos_id().value() == 151645);
  BOOST_TEST(q.pad_id().value() == 151643);
  BOOST_TEST(q.chat_template().has_value());
  // Loaded from the file alone, there is no tokenizer_config.json.
  BOOST_TEST(!t.eos_id().has_value());
  BOOST_TEST(t.encode("Hello world") == q.encode("Hello world"));
}

BOOST_AUTO_TEST_CASE(qwen2_corpus_matches_hf) {
  const auto records = read_jsonl(fixtures() / "qwen2_corpus.jsonl");
  BOOST_TEST_MESSAGE(records.size() << " texts");
  BOOST_TEST(records.size() >= 2000u);
  BOOST_TEST(check_records(qwen2(), records, "qwen2") == 0u);
}

BOOST_AUTO_TEST_CASE(decode_of_encode_is_nfc) {
  // For texts without added tokens, decode(encode(x)) is x after NFC.
  const Tokenizer& q = qwen2();
  size_t checked = 0, bad = 0;
  for (const auto& r : read_jsonl(fixtures() / "qwen2_corpus.jsonl")) {
    const std::string text = r["text"];
    const auto ids = q.encode(text);
    if (std::any_of(ids.begin(), ids.end(), [](int32_t id) { return id >= 151643; })) continue;
    ++checked;
    if (q.decode(ids) != q.normalize(text) && ++bad <= 5) BOOST_TEST_MESSAGE("round trip differs: " << nlohmann::json(text).dump());
  }
  BOOST_TEST(checked > 1500u);
  BOOST_TEST(bad == 0u);
}

BOOST_AUTO_TEST_CASE(decode_matches_hf_on_random_ids) {
  // Random ids, lone bytes of multi-byte characters included: HF's lossy UTF-8 (one U+FFFD per
  // maximal invalid sequence) and skip_special_tokens.
  const Tokenizer& q = qwen2();
  size_t bad = 0;
  for (const auto& r : read_jsonl(fixtures() / "decode_cases.jsonl")) {
    const auto ids = ids_of(r["ids"]);
    if (q.decode(ids) != r["decoded"].get<std::string>() || q.decode(ids, true) != r["decoded_skip"].get<std::string>()) {
      if (++bad <= 5) BOOST_TEST_MESSAGE("decode " << show(ids) << ": '" << q.decode(ids) << "' vs HF '" << r["decoded"].get<std::string>() << "'");
    }
  }
  BOOST_TEST(bad == 0u);
  // Ids that are no token are dropped, as in HF.
  BOOST_TEST(q.decode(std::vector<int32_t>{9707, -5, 999999, 1879}) == "Hello world");
}

BOOST_AUTO_TEST_CASE(tiny_tokenizers_match_hf) {
  // Features the Qwen2 file does not use: added-token flags, Split behaviours and invert, legacy merges,
  // ByteLevel add_prefix_space/use_regex, character-level BPE with prefix/suffix/unk/fuse_unk,
  // byte_fallback, ignore_merges.
  std::map<std::string, std::vector<nlohmann::json>> by_tok;
  for (auto& r : read_jsonl(fixtures() / "tiny_cases.jsonl")) by_tok[r["tokenizer"]].push_back(r);
  BOOST_TEST(by_tok.size() >= 15u);
  for (const auto& [name, records] : by_tok) {
    const Tokenizer t = Tokenizer::from_file(fixtures() / "tiny" / (name + ".json"));
    BOOST_TEST(check_records(t, records, name.c_str()) == 0u, name);
  }
}

BOOST_AUTO_TEST_CASE(batch_equals_sequential) {
  const Tokenizer& q = qwen2();
  std::vector<std::string> texts;
  for (const auto& r : read_jsonl(fixtures() / "qwen2_corpus.jsonl")) texts.push_back(r["text"]);
  const auto batch = q.encode_batch(texts, true, 4);
  BOOST_TEST_REQUIRE(batch.size() == texts.size());
  size_t bad = 0;
  for (size_t i = 0; i < texts.size(); ++i) bad += batch[i] != q.encode(texts[i]);
  BOOST_TEST(bad == 0u);
  // An invalid text makes the batch fail with its index.
  texts.push_back("ok");
  texts.push_back("bad \xff");
  BOOST_TEST(contains(error_of([&] { q.encode_batch(texts); }), "text " + std::to_string(texts.size() - 1)));
}

BOOST_AUTO_TEST_CASE(invalid_utf8_is_an_error) {
  const Tokenizer& q = qwen2();
  BOOST_TEST(contains(error_of([&] { q.encode("abc\xff"); }), "byte offset 3"));
  BOOST_TEST(contains(error_of([&] { q.encode("\xc3"); }), "not valid UTF-8"));            // truncated
  BOOST_TEST(contains(error_of([&] { q.encode("\xed\xa0\x80"); }), "0xED"));              // surrogate
  BOOST_TEST(contains(error_of([&] { q.encode("\xc0\xaf"); }), "byte offset 0"));         // overlong
  BOOST_TEST(contains(error_of([&] { q.encode("\xf4\x90\x80\x80"); }), "not valid UTF-8"));  // > U+10FFFF
  BOOST_TEST(q.encode(std::string("a\0b", 3)).size() == 3u);  // NUL is valid
}

BOOST_AUTO_TEST_CASE(long_and_pathological_inputs) {
  const Tokenizer& q = qwen2();
  const std::string spaces(1 << 20, ' ');
  const auto ids = q.encode(spaces);
  BOOST_TEST(q.decode(ids) == spaces);
  const std::string letters(200000, 'a');
  BOOST_TEST(q.decode(q.encode(letters)) == letters);
  std::string mixed;
  for (int i = 0; i < 20000; ++i) mixed += "\r\n \t<|im_end|>x'S 1 \u00e9e\u0301";
  BOOST_TEST(q.decode(q.encode(mixed)) == q.normalize(mixed));
}

BOOST_AUTO_TEST_CASE(decode_stream_matches_decode) {
  const Tokenizer& q = qwen2();
  size_t n = 0;
  for (const auto& r : read_jsonl(fixtures() / "qwen2_corpus.jsonl")) {
    if (n++ % 7) continue;
    const auto ids = ids_of(r["ids"]);
    dots1::DecodeStream stream(q);
    std::string text;
    for (int32_t id : ids)
      if (auto piece = stream.step(id)) text += *piece;
    const std::string full = q.decode(ids);
    // The stream holds back a trailing incomplete character; everything else must agree.
    BOOST_TEST(full.compare(0, text.size(), text) == 0);
    if (full.size() < 3 || full.compare(full.size() - 3, 3, "\xEF\xBF\xBD") != 0) BOOST_TEST(text == full);
  }
}

BOOST_AUTO_TEST_CASE(unsupported_features_are_named) {
  auto load = [](const std::string& field, const std::string& value) {
    return error_of([&] { Tokenizer::from_json_text(mini_json(field, value), "mini.json"); });
  };
  BOOST_TEST(error_of([] { Tokenizer::from_json_text(mini_json("version", "\"1.0\""), "mini.json"); }) == "(no TokenizerError)");
  BOOST_TEST(contains(load("normalizer", R"({"type": "NFKC"})"), "normalizer type 'NFKC'"));
  BOOST_TEST(contains(load("normalizer", R"({"type": "Sequence", "normalizers": [{"type": "Lowercase"}]})"), "'Lowercase'"));
  BOOST_TEST(contains(load("pre_tokenizer", R"({"type": "Whitespace"})"), "pre_tokenizer type 'Whitespace'"));
  BOOST_TEST(contains(load("pre_tokenizer", R"({"type": "Sequence", "pretokenizers": [{"type": "ByteLevel"}, {"type": "Digits"}]})"),
                      "ByteLevel must come last"));
  BOOST_TEST(contains(load("pre_tokenizer", R"({"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated", "invert": false})"),
                      "\\w"));
  BOOST_TEST(contains(load("pre_tokenizer", R"J({"type": "Split", "pattern": {"Regex": "(?m:a.)"}, "behavior": "Isolated", "invert": false})J"),
                      "(?m)"));
  BOOST_TEST(contains(load("post_processor", R"({"type": "TemplateProcessing", "single": [], "pair": [], "special_tokens": {}})"),
                      "post_processor type 'TemplateProcessing'"));
  BOOST_TEST(contains(load("decoder", R"({"type": "Metaspace"})"), "decoder type 'Metaspace'"));
  BOOST_TEST(contains(load("model.type", R"("WordPiece")"), "model type 'WordPiece'"));
  BOOST_TEST(contains(load("model.dropout", "0.1"), "dropout"));
  BOOST_TEST(contains(load("model.merges", R"([["a", "x"]])"), "'x', which is not in the vocab"));
  BOOST_TEST(contains(load("model.merges", R"(["a b c"])"), "is not 'a b'"));
  BOOST_TEST(contains(load("version", "\"2.0\""), "version"));
  BOOST_TEST(contains(load("added_tokens", R"([{"id": 7, "content": "<x>", "special": true}])"),
                      "has id 7 in the file, but HF tokenizers would give it id 4"));
  BOOST_TEST(contains(error_of([] { Tokenizer::from_json_text("{not json", "broken.json"); }), "broken.json"));
  BOOST_TEST(contains(error_of([] { dots1::tok::onig_to_pcre2("[a[b]]", "x"); }), "nested character class"));
}

BOOST_AUTO_TEST_CASE(legacy_merges_and_added_tokens_in_mini_model) {
  const Tokenizer t = Tokenizer::from_json_text(
      mini_json("added_tokens", R"([{"id": 4, "content": "<x>", "special": true, "normalized": false},
                                    {"id": 5, "content": "ab c", "special": false, "normalized": true}])"),
      "mini.json");
  BOOST_TEST(t.encode("abab") == (std::vector<int32_t>{2, 2}));
  BOOST_TEST(t.encode("ab<x>c") == (std::vector<int32_t>{2, 4, 3}));
  // <x> as text: its characters are not in this vocab and there is no unk token, so HF drops them.
  BOOST_TEST(t.encode("ab<x>c", false) == (std::vector<int32_t>{2, 3}));
  BOOST_TEST(t.encode("ab c") == (std::vector<int32_t>{5}));
  BOOST_TEST(t.decode(std::vector<int32_t>{2, 4, 3}) == "ab<x>c");
  BOOST_TEST(t.decode(std::vector<int32_t>{2, 4, 3}, true) == "abc");
}
