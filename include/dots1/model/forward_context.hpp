// dots1/model/forward_context.hpp — what one forward hands every block: the sizes, the rotary tables of the
// positions, the attention mask inputs, the requested outputs and the scratch of the session's cache. The
// model fills it once per forward (model/causal_lm.hpp); blocks only read it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "dots1/backend/backend_concept.hpp"
#include "dots1/base/forward_io.hpp"
#include "dots1/base/geometry.hpp"
#include "dots1/kernels/portable.hpp"
#include "dots1/model/kv_cache.hpp"
#include "dots1/parallel/plan.hpp"

namespace dots1 {

template <Backend B>
struct ForwardContext {
  int64_t batch = 0, seq = 0;
  typename B::Vector cos, sin;               // [T, d]: the rotary tables of each token's position
  typename B::IndexVector key_mask;          // [batch, key_mask_len] (2-D padding mask) or empty
  int64_t key_mask_len = 0;
  typename B::Int64Vector packed_positions;  // [batch, seq] when packed sequences were detected
  typename B::IndexVector packed_ids;
  std::vector<HostTensor<typename B::Scalar>>* attentions = nullptr;  // output_attentions: collect here
  Workspace* work = nullptr;                 // the cache's
  const Parallel* parallel = nullptr;

  /// Tokens in this forward (rows of every activation).
  int64_t tokens() const { return batch * seq; }
  /// A block's scratch buffers (see Workspace).
  template <class S>
  S& scratch() const {
    return work->template get<S>();
  }
  /// apply_rotary_pos_emb on x [T, heads, d].
  void rope(typename B::Vector& x, int64_t heads, int64_t head_dim) const { B::rope(x, tokens(), heads, head_dim, cos, sin); }
  /// The mask of an attention call whose keys `kv` describes, with the attention policy's window.
  template <class Window>
  kernels::MaskSpec<Window> mask(Window window, const KvView& kv) const {
    kernels::MaskSpec<Window> m;
    m.q_offset = kv.q_offset;
    m.kv_offset = kv.kv_offset;
    m.window = window;
    m.key_mask = B::ptr(key_mask);
    m.key_mask_len = key_mask_len;
    m.packed_positions = B::ptr(packed_positions);
    m.packed_ids = B::ptr(packed_ids);
    m.q_len = seq;
    return m;
  }
  /// Whether attention weights must be computed (output_attentions, or an instrument that wants them).
  bool wants_attention_weights(bool instrument_wants) const { return attentions != nullptr || instrument_wants; }
  /// output_attentions: the weights [B, nh, S, kv_len] of all heads (tensor parallel: gathered from the group).
  void collect_attention_weights(const typename B::Vector& w, int64_t heads, int64_t kv_len) const {
    if (!attentions) return;
    const int tp = parallel->tp_size();
    if (tp == 1) {
      attentions->push_back({{batch, heads, seq, kv_len}, B::download(w)});
      return;
    }
    typename B::Vector gathered;
    B::resize(gathered, B::size(w) * static_cast<size_t>(tp));
    const std::vector<size_t> counts(static_cast<size_t>(tp), B::size(w));
    parallel->tp().all_gather_v(B::ptr(w), B::ptr(gathered), std::span<const size_t>(counts));
    const std::vector<typename B::Scalar> parts = B::download(gathered);  // [tp][B, heads, S*kv]
    std::vector<typename B::Scalar> out(parts.size());
    const int64_t block = heads * seq * kv_len;  // one batch row of one rank
    for (int r = 0; r < tp; ++r)
      for (int64_t b = 0; b < batch; ++b)
        std::copy_n(parts.begin() + (r * batch + b) * block, block, out.begin() + (b * tp + r) * block);
    attentions->push_back({{batch, heads * tp, seq, kv_len}, std::move(out)});
  }
};

}  // namespace dots1
