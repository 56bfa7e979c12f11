// dots1/model/kv_cache.hpp — HF's DynamicCache (spec 4.3) on any backend, as per-layer cache states that
// each attention policy chooses (model/dots1.hpp), and the session state around them.
//
//   FullKv<B>     every key and value (full attention)
//   SlidingKv<B>  HF's DynamicSlidingWindowLayer: attends over "stored + new" during an update, then keeps
//                 only the last W-1 keys (sliding-window attention)
//   NoCache       a layer that keeps nothing between forwards
// Keys are stored post-k_norm and post-RoPE; values raw.
//
// A KvCache is one session's state: the states of its layers, the number of tokens seen, and the scratch
// activations of the forwards run on it (Workspace). The model itself holds only read-only weights, so one
// loaded model serves any number of sessions from as many threads, each thread with its own cache.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "dots1/error.hpp"

namespace dots1 {

/// Where the keys of one attention call sit, in absolute cache slots.
struct KvView {
  int64_t q_offset = 0;   // slot of the first new token (tokens seen before this call)
  int64_t kv_offset = 0;  // slot of cache row 0
  int64_t kv_len = 0;     // rows to attend over (stored before + new)
};

/// Keys and values [batch, capacity, row] of one layer: the storage FullKv and SlidingKv share.
template <class B>
class KvStore {
 public:
  KvStore() = default;
  KvStore(int64_t batch, int64_t row_width) : batch_(batch), row_(row_width) {}

  /// Appends `count` new rows per batch entry ([batch, count, row] each) and returns what to attend over.
  KvView append(const typename B::Vector& keys, const typename B::Vector& values, int64_t count) {
    KvView view;
    view.q_offset = cumulative_;
    view.kv_offset = cumulative_ - stored_;
    if (stored_ + count > capacity_) grow(std::max<int64_t>({stored_ + count, 2 * capacity_, 16}));
    B::kv_write(keys_, batch_, capacity_, row_, stored_, keys, count);
    B::kv_write(values_, batch_, capacity_, row_, stored_, values, count);
    stored_ += count;
    cumulative_ += count;
    view.kv_len = stored_;
    return view;
  }
  /// Room for `tokens` rows per batch entry, so that appends up to that length do not reallocate.
  void reserve(int64_t tokens) {
    if (tokens > capacity_) grow(tokens);
  }
  /// Whether the first `tokens` tokens' keys are all still held (none was dropped from the front).
  bool can_crop(int64_t tokens) const { return tokens >= cumulative_ || cumulative_ == stored_; }
  /// Forgets every token from position `tokens` on (when can_crop(tokens)).
  void crop(int64_t tokens) {
    if (tokens >= cumulative_) return;
    stored_ -= cumulative_ - tokens;
    cumulative_ = tokens;
  }

  int64_t seq_length() const { return cumulative_; }
  int64_t stored() const { return stored_; }
  int64_t capacity() const { return capacity_; }
  int64_t batch() const { return batch_; }
  const typename B::Vector& keys() const { return keys_; }
  const typename B::Vector& values() const { return values_; }
  size_t bytes() const { return 2 * static_cast<size_t>(batch_ * capacity_ * row_) * sizeof(typename B::Scalar); }

 protected:
  /// Keeps the last `keep` stored rows.
  void keep_last(int64_t keep) {
    if (stored_ <= keep) return;
    B::kv_drop_front(keys_, batch_, capacity_, row_, stored_, stored_ - keep);
    B::kv_drop_front(values_, batch_, capacity_, row_, stored_, stored_ - keep);
    stored_ = keep;
  }

 private:
  void grow(int64_t capacity) {
    B::kv_reserve(keys_, batch_, capacity_, capacity, row_, stored_);
    B::kv_reserve(values_, batch_, capacity_, capacity, row_, stored_);
    capacity_ = capacity;
  }
  typename B::Vector keys_, values_;
  int64_t batch_ = 0, row_ = 0;
  int64_t capacity_ = 0, stored_ = 0, cumulative_ = 0;
};

/// Full attention's cache: every key.
template <class B>
class FullKv : public KvStore<B> {
 public:
  FullKv(int64_t batch, int64_t row_width) : KvStore<B>(batch, row_width) {}
  KvView update(const typename B::Vector& keys, const typename B::Vector& values, int64_t count) { return this->append(keys, values, count); }
  void after_attention() {}
};

/// Sliding-window attention's cache (window W): after each attention call only the last W-1 keys stay.
template <class B>
class SlidingKv : public KvStore<B> {
 public:
  SlidingKv(int64_t batch, int64_t row_width, int64_t window) : KvStore<B>(batch, row_width), window_(window) {}
  KvView update(const typename B::Vector& keys, const typename B::Vector& values, int64_t count) { return this->append(keys, values, count); }
  void after_attention() { this->keep_last(window_ - 1); }
  int64_t window() const { return window_; }
  /// Going back to `tokens` needs the keys a query at that position sees: the last W-1 before it.
  bool can_crop(int64_t tokens) const {
    const int64_t dropped = this->seq_length() - this->stored();
    return tokens >= this->seq_length() || dropped == 0 || tokens - (window_ - 1) >= dropped;
  }

 private:
  int64_t window_;
};

/// A layer that keeps nothing between forwards.
struct NoCache {
  void reserve(int64_t) {}
  bool can_crop(int64_t) const { return true; }
  void crop(int64_t) {}
  int64_t stored() const { return 0; }
  size_t bytes() const { return 0; }
};

/// Scratch activations, one object per type: each block names its buffers as a struct (its `Scratch`) and
/// asks the workspace for it. Layers run one after another, so all layers of a forward share one object of
/// each type, grown to the largest use and reused by the next forward (no allocation in a decode loop).
class Workspace {
 public:
  template <class S>
  S& get() {
    for (auto& e : entries_)
      if (e.tag == &tag<S>) return *static_cast<S*>(e.object.get());
    entries_.push_back({&tag<S>, std::shared_ptr<void>(new S(), [](void* p) { delete static_cast<S*>(p); })});
    return *static_cast<S*>(entries_.back().object.get());
  }

 private:
  template <class S>
  static constexpr char tag = 0;
  struct Entry {
    const char* tag;
    std::shared_ptr<void> object;
  };
  std::vector<Entry> entries_;
};

/// One session's cache: a state per decoder layer (one of `States`, as the layer's attention policy
/// chooses), sized for a batch.
template <class B, class... States>
class KvCache {
 public:
  using State = std::variant<States...>;

  KvCache() = default;
  KvCache(int64_t batch, std::vector<State> layers) : batch_(batch), layers_(std::move(layers)) {}

  int64_t batch() const { return batch_; }
  size_t num_layers() const { return layers_.size(); }
  /// Layer i's state, of the type its attention policy chose.
  template <class S>
  S& state(size_t i) {
    return *std::get_if<S>(&layers_[i]);
  }
  const State& layer(size_t i) const { return layers_[i]; }
  /// Keys held by layer i per batch row (a sliding window holds at most W-1 between forwards).
  int64_t stored(size_t i) const {
    return std::visit([](const auto& s) { return s.stored(); }, layers_[i]);
  }

  /// Layer i's attention window (0: it keeps every key).
  int64_t window(size_t i) const {
    return std::visit([](const auto& s) -> int64_t {
      if constexpr (requires { s.window(); }) return s.window();
      else return 0;
    }, layers_[i]);
  }
  /// Preallocates every layer for `tokens` tokens (an inference engine's fixed context), so that a decode
  /// loop up to that length never grows the cache.
  void reserve(int64_t tokens) {
    for (auto& l : layers_) std::visit([&](auto& s) { s.reserve(tokens); }, l);
  }
  /// HF's cache crop: `tokens` >= 0 keeps the first `tokens` (DynamicCache.crop(max_length)), < 0 removes the
  /// last -`tokens` (crop(-n)). Returns false, changing nothing, when a layer can no longer go back there (a
  /// sliding window already dropped keys the shorter cache needs; HF raises there): then feed the kept tokens
  /// into a fresh cache instead.
  bool crop(int64_t tokens) {
    const int64_t keep = tokens >= 0 ? tokens : std::max<int64_t>(seq_length_ + tokens, 0);
    if (keep >= seq_length_) return true;
    for (const auto& l : layers_)
      if (!std::visit([&](const auto& s) { return s.can_crop(keep); }, l)) return false;
    for (auto& l : layers_) std::visit([&](auto& s) { s.crop(keep); }, l);
    seq_length_ = keep;
    return true;
  }
  /// HF's cache.get_seq_length(): tokens seen so far.
  int64_t seq_length() const { return seq_length_; }
  /// Called by the model after each forward of `tokens` new tokens.
  void advance(int64_t tokens) { seq_length_ += tokens; }
  size_t bytes() const {
    size_t n = 0;
    for (const auto& l : layers_) n += std::visit([](const auto& s) { return s.bytes(); }, l);
    return n;
  }
  /// The scratch activations of the forwards on this cache (see Workspace).
  Workspace& workspace() { return workspace_; }

 private:
  int64_t batch_ = 0;
  std::vector<State> layers_;
  int64_t seq_length_ = 0;
  Workspace workspace_;
};

}  // namespace dots1
