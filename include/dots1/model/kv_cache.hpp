// dots1/model/kv_cache.hpp — HF's DynamicCache for Dots1 (spec 4.3), on any backend.
//
// One layer per decoder layer: full layers keep every key; sliding layers (window W) keep only the last
// W-1 keys after each update, but attend over "stored + new" during the update, exactly as HF's
// DynamicSlidingWindowLayer does. Keys are stored post-k_norm and post-RoPE; values raw.
//
// A KvCache is one session's state: besides the keys and values it owns the scratch activations of the
// forwards run on it (ForwardWorkspace). The model itself holds only read-only weights, so one loaded model
// serves any number of sessions from as many threads, each thread with its own cache.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "dots1/config.hpp"
#include "dots1/error.hpp"

namespace dots1 {

/// Where the keys of one attention call sit, in absolute cache slots.
struct KvView {
  int64_t q_offset = 0;   // slot of the first new token (tokens seen before this call)
  int64_t kv_offset = 0;  // slot of cache row 0
  int64_t kv_len = 0;     // rows to attend over (stored before + new)
};

/// The activations of one forward, reused by the next forward on the same cache (no allocation in a decode
/// loop once the buffers have their size). Layers run one after another, so all layers share one set of
/// buffers sized for the largest layer.
template <class B>
struct ForwardWorkspace {
  typename B::Vector x, y;                                     // DecoderLayer: normed input, sub-block output
  typename B::Vector q, k, v, attn, attn_weights;              // SelfAttention
  typename B::Vector gate, up;                                 // DenseMlpBlock (dense MLP, shared experts)
  typename B::Vector router_logits, topk_weights, shared_out;  // MoeBlock
  typename B::IndexVector topk_indices;
  typename B::Vector hidden, selected, logits;                 // Dots1ForCausalLM: h, kept rows, logits
};

template <class B>
class KvCacheLayer {
 public:
  KvCacheLayer() = default;
  KvCacheLayer(int64_t batch, int64_t row_width, int64_t window) : batch_(batch), row_(row_width), window_(window) {}

  /// Appends `count` new rows per batch entry ([batch, count, row] each) and returns what to attend over.
  KvView append(const typename B::Vector& keys, const typename B::Vector& values, int64_t count) {
    KvView view;
    view.q_offset = cumulative_;
    view.kv_offset = cumulative_ - stored_;
    if (stored_ + count > capacity_) {
      const int64_t grown = std::max<int64_t>({stored_ + count, 2 * capacity_, 16});
      B::kv_reserve(keys_, batch_, capacity_, grown, row_, stored_);
      B::kv_reserve(values_, batch_, capacity_, grown, row_, stored_);
      capacity_ = grown;
    }
    B::kv_write(keys_, batch_, capacity_, row_, stored_, keys, count);
    B::kv_write(values_, batch_, capacity_, row_, stored_, values, count);
    stored_ += count;
    cumulative_ += count;
    view.kv_len = stored_;
    return view;
  }

  /// Room for `tokens` rows per batch entry, so that appends up to that length do not reallocate.
  void reserve(int64_t tokens) {
    if (tokens <= capacity_) return;
    B::kv_reserve(keys_, batch_, capacity_, tokens, row_, stored_);
    B::kv_reserve(values_, batch_, capacity_, tokens, row_, stored_);
    capacity_ = tokens;
  }

  /// After attention: a sliding layer keeps only its last W-1 rows.
  void trim() {
    if (window_ <= 0) return;
    const int64_t keep = window_ - 1;
    if (stored_ > keep) {
      B::kv_drop_front(keys_, batch_, capacity_, row_, stored_, stored_ - keep);
      B::kv_drop_front(values_, batch_, capacity_, row_, stored_, stored_ - keep);
      stored_ = keep;
    }
  }

  /// Drops tokens from the end, as HF's cache crop: `tokens` >= 0 keeps the first `tokens` (DynamicCache.crop
  /// (max_length) before transformers 5), < 0 removes the last -`tokens` (crop(-n) since 5). Returns false,
  /// changing nothing, when a sliding layer has already dropped keys the shorter cache would need (HF raises
  /// there unless it recorded the past); the caller then re-feeds the kept tokens into a fresh cache.
  bool crop(int64_t tokens) {
    const int64_t keep = tokens >= 0 ? tokens : std::max<int64_t>(cumulative_ + tokens, 0);
    if (keep >= cumulative_) return true;
    if (stored_ < cumulative_) return false;  // keys [0, cumulative_ - stored_) are gone
    stored_ = cumulative_ = keep;
    return true;
  }

  /// Tokens seen so far (HF get_seq_length: the cumulative count, also for sliding layers).
  int64_t seq_length() const { return cumulative_; }
  int64_t stored() const { return stored_; }
  int64_t capacity() const { return capacity_; }
  int64_t window() const { return window_; }
  int64_t batch() const { return batch_; }
  const typename B::Vector& keys() const { return keys_; }
  const typename B::Vector& values() const { return values_; }
  size_t bytes() const { return 2 * static_cast<size_t>(batch_ * capacity_ * row_) * sizeof(typename B::Scalar); }

 private:
  typename B::Vector keys_, values_;
  int64_t batch_ = 0, row_ = 0, window_ = 0;
  int64_t capacity_ = 0, stored_ = 0, cumulative_ = 0;
};

/// The whole cache: one layer per decoder layer, sized for a batch.
template <class B>
class KvCache {
 public:
  KvCache() = default;
  KvCache(const Dots1Config& c, int64_t batch) : KvCache(c, batch, c.kv_heads()) {}
  /// A cache for `kv_heads` of the config's KV heads (a tensor-parallel rank's share).
  KvCache(const Dots1Config& c, int64_t batch, int64_t kv_heads) : batch_(batch) {
    const auto plan = c.layer_plan();
    for (const auto& p : plan)
      layers_.emplace_back(batch, kv_heads * c.head_dim(), p.attention == AttentionKind::sliding ? c.window() : 0);
  }
  int64_t batch() const { return batch_; }
  size_t num_layers() const { return layers_.size(); }
  KvCacheLayer<B>& layer(size_t i) { return layers_[i]; }
  const KvCacheLayer<B>& layer(size_t i) const { return layers_[i]; }
  /// Preallocates every layer for `tokens` tokens (an inference engine's fixed context), so that a decode
  /// loop up to that length never grows the cache.
  void reserve(int64_t tokens) {
    for (auto& l : layers_) l.reserve(tokens);
  }
  /// HF's cache crop on every layer (see KvCacheLayer::crop); false, changing no layer, when one cannot.
  bool crop(int64_t tokens) {
    for (const auto& l : layers_) {
      const int64_t keep = tokens >= 0 ? tokens : std::max<int64_t>(l.seq_length() + tokens, 0);
      if (keep < l.seq_length() && l.stored() < l.seq_length()) return false;
    }
    for (auto& l : layers_) l.crop(tokens);
    return true;
  }
  /// HF's cache.get_seq_length(): layer 0's count.
  int64_t seq_length() const { return layers_.empty() ? 0 : layers_[0].seq_length(); }
  size_t bytes() const {
    size_t n = 0;
    for (const auto& l : layers_) n += l.bytes();
    return n;
  }
  /// The scratch activations of the forwards on this cache (see ForwardWorkspace).
  ForwardWorkspace<B>& workspace() { return workspace_; }

 private:
  int64_t batch_ = 0;
  std::vector<KvCacheLayer<B>> layers_;
  ForwardWorkspace<B> workspace_;
};

}  // namespace dots1
