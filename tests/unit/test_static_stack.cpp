// A compile-time stack gives exactly the runtime stack's logits for the same config and weights, and
// refuses a config whose layer plan disagrees with it.
#define BOOST_TEST_MODULE static_stack
#include <boost/test/unit_test.hpp>

#include "../support/backend_under_test.hpp"
#include "../support/fixtures.hpp"

using B = dots1_test::TestBackend;
using FullDense = dots1::DecoderLayer<B, dots1::FullAttention, dots1::DenseMlp>;
using FullMoe = dots1::DecoderLayer<B, dots1::FullAttention, dots1::MoE>;
using SlidingMoe = dots1::DecoderLayer<B, dots1::SlidingWindowAttention, dots1::MoE>;
// sliding_mqa fixture: layer 0 full, layers 1-2 sliding, all MoE (first_k_dense_replace 1 -> layer 0 dense)
using Stack = dots1::StaticStack<B, FullDense, SlidingMoe, SlidingMoe>;

BOOST_AUTO_TEST_CASE(static_equals_runtime) {
  const auto dir = dots1_test::fixtures_dir() / "model" / "sliding_mqa";
  const auto ck = dots1::Checkpoint::open(dir);
  dots1::Dots1ForCausalLM<B, Stack> fixed(ck.config(), ck);
  dots1::Dots1ForCausalLM<B> runtime(ck.config(), ck);
  const auto in = dots1::ForwardInput::from_ids({{3, 1, 4, 1, 5, 9, 2, 6}});
  BOOST_TEST(fixed.forward(in).logits.values == runtime.forward(in).logits.values);
}

BOOST_AUTO_TEST_CASE(mismatching_config_is_refused) {
  const auto ck = dots1::Checkpoint::open(dots1_test::fixtures_dir() / "model" / "rope_yarn");  // all full attention
  BOOST_CHECK_THROW((dots1::Dots1ForCausalLM<B, Stack>(ck.config(), ck)), dots1::ConfigError);
  using Wrong = dots1::StaticStack<B, FullDense, FullMoe>;
  BOOST_CHECK_THROW((dots1::Dots1ForCausalLM<B, Wrong>(ck.config(), ck)), dots1::ConfigError);
}
