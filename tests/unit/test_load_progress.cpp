// Loading progress: every tensor of a checkpoint is reported once, bytes add up to the files' tensor bytes,
// the model is the same as without progress, and the terminal bar is silent when disabled (not a terminal).
#define BOOST_TEST_MODULE load_progress
#include <boost/test/unit_test.hpp>

#include <dots1/io/load_progress.hpp>

#include "../support/backend_under_test.hpp"
#include "../support/fixtures.hpp"

using Model = dots1::Dots1ForCausalLM<dots1_test::TestBackend>;

BOOST_AUTO_TEST_CASE(reports_every_tensor_and_byte_once) {
  for (const char* name : {"gqa_dense2", "groups_moe0"}) {  // per-expert and fused expert tensors
    BOOST_TEST_CONTEXT(name) {
      const auto dir = dots1_test::fixtures_dir() / "model" / name;
      const auto ck = dots1::Checkpoint::open(dir);
      std::vector<dots1::LoadProgress> seen;
      dots1::ProgressWeightSource source(ck, [&](const dots1::LoadProgress& p) { seen.push_back(p); });
      Model model(ck.config(), source);
      uint64_t bytes = 0;
      for (const auto& f : ck.files())
        for (const auto& [n, t] : f.tensors()) bytes += t.nbytes;
      BOOST_REQUIRE(!seen.empty());
      BOOST_TEST(seen.size() == ck.names().size());
      BOOST_TEST(seen.back().tensors_done == seen.back().tensors_total);
      BOOST_TEST(seen.back().bytes_done == bytes);
      BOOST_TEST(seen.back().bytes_total == bytes);
      for (size_t i = 1; i < seen.size(); ++i) BOOST_TEST(seen[i].bytes_done > seen[i - 1].bytes_done);
      const auto in = dots1::ForwardInput::from_ids({{1, 2, 3}});
      BOOST_TEST(model.forward(in).logits.values == Model::from_pretrained(dir).forward(in).logits.values);
    }
  }
}

BOOST_AUTO_TEST_CASE(terminal_bar_is_silent_when_disabled) {
  BOOST_TEST(!dots1::terminal_progress_bar(false));
  BOOST_TEST(static_cast<bool>(dots1::terminal_progress_bar(true)));
}
