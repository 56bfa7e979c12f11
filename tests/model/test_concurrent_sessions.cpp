// One loaded model serving several sessions at once: threads that each run their own generation (own
// KvCache) on the shared, read-only model must get exactly what the same sessions give one after another.
// The model is the embedded kjv-tiny (large enough for the CPU backend's parallel loops), so the sessions
// also contend for the backend's thread pool.
#define BOOST_TEST_MODULE concurrent_sessions
#include <boost/test/unit_test.hpp>

#include <barrier>
#include <thread>

#include <dots1/generation.hpp>
#include <dots1/tokenizer.hpp>

#include "../support/backend_under_test.hpp"
#include "../support/fixtures.hpp"

using Model = dots1::Dots1ForCausalLM<dots1_test::TestBackend>;

namespace {

const std::filesystem::path kModelDir = std::filesystem::path(DOTS1_FIXTURES_DIR) / ".." / ".." / "examples" / "models" / "kjv-tiny";

struct Session {
  std::string prompt;
  bool sample = false;
  uint64_t seed = 0;
};

struct Result {
  std::vector<int64_t> tokens;
  std::vector<float> prompt_logits;  // the prompt forward's last-position logits, compared bit for bit
};

Result run_session(const Model& model, const dots1::Tokenizer& tok, const Session& s) {
  const auto ids32 = tok.encode(s.prompt);
  const std::vector<int64_t> ids(ids32.begin(), ids32.end());
  Result r;
  dots1::ForwardInput in;
  in.input_ids = ids;
  in.batch = 1;
  in.seq = static_cast<int64_t>(ids.size());
  in.logits_to_keep.value = int64_t{1};
  r.prompt_logits = model.forward(in).logits.values;

  dots1::GenerationConfig options;
  options.max_new_tokens = 24;
  options.do_sample = s.sample;
  options.temperature = 0.9;
  options.top_k = 40;
  options.seed = s.seed;
  // generate() takes a mutable model (the concept of a causal LM); forward is const and thread-safe.
  r.tokens = dots1::generate(const_cast<Model&>(model), dots1::GenerationInput::from_ids(ids), options).sequences[0];
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(threads_with_their_own_caches_equal_sequential_runs) {
  const Model model = Model::from_pretrained(kModelDir);
  const auto tok = dots1::Tokenizer::from_folder(kModelDir);
  const std::vector<Session> sessions = {
      {"In the beginning God created the heaven and the earth.", false, 0},
      {"And the LORD spake unto Moses, saying,", true, 11},
      {"Blessed are the poor in spirit:", true, 12},
      {"The LORD is my shepherd; I shall not want. He maketh me to lie down", false, 0},
      {"And Jesus answered and said unto them,", true, 13},
      {"Praise ye the LORD.", true, 14},
  };

  std::vector<Result> sequential;
  for (const auto& s : sessions) sequential.push_back(run_session(model, tok, s));

  for (int round = 0; round < 2; ++round) {
    std::vector<Result> concurrent(sessions.size());
    std::barrier start(static_cast<std::ptrdiff_t>(sessions.size()));
    std::vector<std::exception_ptr> errors(sessions.size());
    {
      std::vector<std::jthread> threads;
      for (size_t i = 0; i < sessions.size(); ++i)
        threads.emplace_back([&, i] {
          start.arrive_and_wait();  // all sessions start together
          try {
            concurrent[i] = run_session(model, tok, sessions[i]);
          } catch (...) {
            errors[i] = std::current_exception();
          }
        });
    }
    for (size_t i = 0; i < sessions.size(); ++i) {
      BOOST_TEST_CONTEXT("round " << round << ", session " << i << ": " << sessions[i].prompt) {
        BOOST_TEST_REQUIRE(!errors[i]);
        BOOST_TEST(concurrent[i].tokens == sequential[i].tokens, boost::test_tools::per_element());
        BOOST_TEST(concurrent[i].prompt_logits == sequential[i].prompt_logits, boost::test_tools::per_element());
      }
    }
  }
  // The sampled sessions really differ from one another (the test would not notice swapped caches otherwise).
  BOOST_TEST(sequential[1].tokens != sequential[2].tokens);
}

BOOST_AUTO_TEST_CASE(a_session_continues_its_cache_while_others_run) {
  // Two sessions decode step by step on their own caches, interleaved from two threads; each equals a
  // forward over its whole sequence at once, within float32 rounding of differently shaped GEMMs.
  const Model model = Model::from_pretrained(kModelDir);
  const auto tok = dots1::Tokenizer::from_folder(kModelDir);
  const std::vector<std::string> prompts = {"And God said, Let there be light: and there was light.",
                                            "For God so loved the world, that he gave his only begotten Son,"};
  std::vector<std::vector<float>> stepwise(prompts.size()), whole(prompts.size());
  {
    std::vector<std::jthread> threads;
    for (size_t i = 0; i < prompts.size(); ++i)
      threads.emplace_back([&, i] {
        const auto ids = tok.encode(prompts[i]);
        auto cache = std::make_shared<Model::Cache>(model.make_cache(1));
        for (size_t t = 0; t < ids.size(); ++t) {
          dots1::ForwardInput in;
          in.input_ids = {ids[t]};
          in.batch = 1;
          in.seq = 1;
          const auto out = model.forward(in, cache);
          if (t + 1 == ids.size()) stepwise[i] = out.logits.values;
        }
      });
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto ids = tok.encode(prompts[i]);
    dots1::ForwardInput in;
    in.input_ids.assign(ids.begin(), ids.end());
    in.batch = 1;
    in.seq = static_cast<int64_t>(ids.size());
    in.logits_to_keep.value = int64_t{1};
    whole[i] = model.forward(in).logits.values;
    BOOST_TEST_REQUIRE(stepwise[i].size() == whole[i].size());
    float worst = 0, largest = 1;
    for (size_t v = 0; v < whole[i].size(); ++v) {
      worst = std::max(worst, std::abs(stepwise[i][v] - whole[i][v]));
      largest = std::max(largest, std::abs(whole[i][v]));
    }
    BOOST_TEST(worst <= 1e-5f * largest, "session " << i << ": max |stepwise - whole| = " << worst);
  }
}
