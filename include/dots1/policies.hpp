// dots1/policies.hpp — the compile-time policies a decoder layer is built from.
//
//   DecoderLayer<Backend, AttentionPolicy, FeedForwardPolicy>
//     AttentionPolicy:   FullAttention | SlidingWindowAttention
//     FeedForwardPolicy: DenseMlp | MoE
//     Backend:           EigenBackend<Scalar> (dots1/eigen.hpp) | a CUDA Thrust backend, chosen by the user
//
// A loaded config picks one of the four (attention x feed-forward) instantiations per layer
// (RuntimeStack); a researcher can also fix the whole stack at compile time (StaticStack).
#pragma once

#include "dots1/config.hpp"

namespace dots1 {

template <class B> class DenseMlpBlock;
template <class B> class MoeBlock;

/// Causal attention over every cached key.
struct FullAttention {
  static constexpr AttentionKind kind = AttentionKind::full;
  static constexpr const char* name = "full";
};

/// Causal attention over the last `sliding_window` keys (the query included); its cache keeps W-1 keys.
struct SlidingWindowAttention {
  static constexpr AttentionKind kind = AttentionKind::sliding;
  static constexpr const char* name = "sliding";
};

/// The dense SwiGLU MLP of layers < first_k_dense_replace.
struct DenseMlp {
  static constexpr FeedForwardKind kind = FeedForwardKind::dense;
  static constexpr const char* name = "dense";
  template <class B> using block = DenseMlpBlock<B>;
};

/// Sigmoid-routed mixture of experts plus the fused shared experts.
struct MoE {
  static constexpr FeedForwardKind kind = FeedForwardKind::moe;
  static constexpr const char* name = "moe";
  template <class B> using block = MoeBlock<B>;
};

}  // namespace dots1
