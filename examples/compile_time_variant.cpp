// A Dots1 variant fixed entirely at compile time: 2 dense layers, then 4 MoE layers of which the last two
// use sliding-window attention. The layer types are template arguments, so each layer's code is
// specialised for its policies; the config only supplies sizes (and must agree with the stack).
//
// The backend is a compile-time switch too: the CPU (Eigen) by default; with DOTS1_VARIANT_THRUST defined the
// same model is instantiated for the Thrust backend: on the OpenMP device system when g++ compiles it with
// -DTHRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP (the compile_time_variant_thrust_omp target, no GPU
// needed), on the GPU when nvcc compiles it (as a .cu, linked with cuBLAS).
//
//   build/bin/compile_time_variant
//   build/bin/compile_time_variant_thrust_omp     (the same tokens)
#include <algorithm>
#include <cstdio>

#if defined(DOTS1_VARIANT_THRUST)
#include <dots1/cuda.hpp>
using B = dots1::ThrustBackend<float>;
#else
#include <dots1/eigen.hpp>
using B = dots1::EigenBackend<float>;
#endif
template <class A, class F>
using Layer = dots1::DecoderLayer<B, A, F>;
using Full = dots1::FullAttention;
using Sliding = dots1::SlidingWindowAttention;
using Stack = dots1::StaticStack<B,                           //
                                 Layer<Full, dots1::DenseMlp>,  // 0
                                 Layer<Full, dots1::DenseMlp>,  // 1
                                 Layer<Full, dots1::MoE>,       // 2
                                 Layer<Full, dots1::MoE>,       // 3
                                 Layer<Sliding, dots1::MoE>,    // 4
                                 Layer<Sliding, dots1::MoE>>;   // 5
using Model = dots1::Dots1ForCausalLM<B, Stack>;

int main() {
  dots1::Dots1Config c;
  c.vocab_size = 512;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.moe_intermediate_size = 64;
  c.num_hidden_layers = 6;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 2;
  c.n_routed_experts = 16;
  c.num_experts_per_tok = 4;
  c.n_shared_experts = 1;
  c.first_k_dense_replace = 2;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.sliding_window = 8;
  c.max_window_layers = 4;  // layers 4 and 5 slide
  c.validate();

  dots1::RandomWeights weights(Model::describe(c), /*seed=*/42);
  Model model(c, weights);
  std::vector<int64_t> prompt;
  for (int64_t t = 0; t < 16; ++t) prompt.push_back((t * 37 + 11) % c.vocab_size);
  // Greedy continuation of 8 tokens through the KV cache.
  auto cache = std::make_shared<Model::Cache>(model.make_cache(1));
  dots1::ForwardInput in = dots1::ForwardInput::from_ids({prompt});
  in.logits_to_keep = 1;
  std::printf("backend %s, static stack of %zu layers; greedy continuation:", B::name, Stack::size());
  for (int step = 0; step < 8; ++step) {
    const auto out = model.forward(in, cache);
    const auto& l = out.logits.values;
    const auto next = static_cast<int64_t>(std::max_element(l.begin(), l.end()) - l.begin());
    std::printf(" %lld", static_cast<long long>(next));
    in = dots1::ForwardInput::from_ids({{next}});
    in.logits_to_keep = 1;
  }
  std::printf("\ncache holds %lld tokens (sliding layers keep %lld)\n", static_cast<long long>(cache->seq_length()),
              static_cast<long long>(cache->stored(5)));
  return 0;
}
