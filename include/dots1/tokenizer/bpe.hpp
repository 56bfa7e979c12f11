// dots1/tokenizer/bpe.hpp — the BPE model of tokenizer.json, merging exactly as HF tokenizers does
// (same priority queue order and the same stale-entry rule), with a flat pair table and a word cache.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "dots1/error.hpp"
#include "dots1/base/memory_check.hpp"
#include "dots1/tokenizer/byte_level.hpp"

namespace dots1::tok {

/// Open-addressing map from a pair of token ids to (merge rank, merged id). Lookups are the inner loop
/// of BPE, so this avoids std::unordered_map's node chasing.
class PairTable {
 public:
  struct Entry {
    uint32_t rank;
    int32_t id;
  };

  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{kEmpty, {}});
    mask_ = cap - 1;
  }

  /// Inserts or overwrites: a later duplicate merge replaces an earlier one, like HF's HashMap collect.
  void insert(int32_t a, int32_t b, Entry e) {
    if (size_ * 2 >= slots_.size()) grow();
    const uint64_t k = key(a, b);
    for (size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == kEmpty) {
        slots_[i] = {k, e};
        ++size_;
        return;
      }
      if (slots_[i].key == k) {
        slots_[i].value = e;
        return;
      }
    }
  }

  const Entry* find(int32_t a, int32_t b) const {
    const uint64_t k = key(a, b);
    for (size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == k) return &slots_[i].value;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }

  size_t size() const noexcept { return size_; }

 private:
  struct Slot {
    uint64_t key;
    Entry value;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are non-negative int32, so never a real key
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    reserve(std::max<size_t>(old.size(), 16));
    size_ = 0;
    for (const auto& s : old)
      if (s.key != kEmpty) insert(static_cast<int32_t>(s.key >> 32), static_cast<int32_t>(s.key & 0xFFFFFFFFu), s.value);
  }

  std::vector<Slot> slots_ = std::vector<Slot>(16, Slot{kEmpty, {}});
  size_t mask_ = 15;
  size_t size_ = 0;
};

/// Fast hash for short byte strings (tokens, words): 8 bytes at a time, then a final mix.
inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ULL ^ (s.size() * 0xC2B2AE3D27D4EB4FULL);
  const char* p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ (w * 0xFF51AFD7ED558CCDULL)) * 0x9FB21C651E98DF25ULL;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ (w * 0xFF51AFD7ED558CCDULL)) * 0x9FB21C651E98DF25ULL;
  }
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ULL;
  h ^= h >> 32;
  return h;
}

/// The vocabulary: token strings stored back to back, an id -> string index, and an open-addressing
/// table string -> id. Loading puts ~600k lookups through it, which node-based maps make slow.
class VocabTable {
 public:
  void reserve(size_t n, size_t bytes) {
    arena_.reserve(bytes);
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
  }
  /// Adds a token; returns false if the string is already present (the new id is then ignored).
  bool insert(std::string_view tok, int32_t id) {
    if ((count_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
    const uint64_t h = hash_bytes(tok);
    size_t i = h & mask_;
    for (; slots_[i].id >= 0; i = (i + 1) & mask_)
      if (equal(slots_[i], h, tok)) return false;
    if (static_cast<size_t>(id) >= spans_.size()) spans_.resize(static_cast<size_t>(id) + 1, Span{0, UINT32_MAX});
    const auto off = static_cast<uint32_t>(arena_.size());
    spans_[id] = Span{off, static_cast<uint32_t>(tok.size())};
    arena_.append(tok);
    slots_[i] = Slot{static_cast<uint32_t>(h), id, off, static_cast<uint32_t>(tok.size())};
    ++count_;
    return true;
  }
  int32_t find(std::string_view tok) const { return find(tok, hash_bytes(tok)); }
  /// find() with the hash already computed (see prefetch()).
  int32_t find(std::string_view tok, uint64_t h) const {
    for (size_t i = h & mask_; slots_[i].id >= 0; i = (i + 1) & mask_)
      if (equal(slots_[i], h, tok)) return slots_[i].id;
    return -1;
  }
  /// Asks the CPU to fetch the slot a lookup with hash `h` starts at: batches of lookups then overlap
  /// their cache misses (loading does ~450k lookups in a 4 MiB table).
  void prefetch(uint64_t h) const { __builtin_prefetch(&slots_[h & mask_]); }
  bool has_id(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < spans_.size() && spans_[id].len != UINT32_MAX; }
  std::string_view str(int32_t id) const { return std::string_view(arena_).substr(spans_[id].off, spans_[id].len); }
  size_t size() const noexcept { return count_; }
  size_t id_bound() const noexcept { return spans_.size(); }

 private:
  struct Slot {
    uint32_t hash = 0;
    int32_t id = -1;  // -1: empty
    uint32_t off = 0, len = 0;  // the string in arena_, so that a probe needs no id -> span lookup
  };
  struct Span {
    uint32_t off, len;  // len UINT32_MAX: no token with this id
  };
  bool equal(const Slot& s, uint64_t h, std::string_view tok) const {
    return s.hash == static_cast<uint32_t>(h) && s.len == tok.size() && std::memcmp(arena_.data() + s.off, tok.data(), tok.size()) == 0;
  }
  void rehash(size_t cap) {
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    for (size_t id = 0; id < spans_.size(); ++id) {
      if (spans_[id].len == UINT32_MAX) continue;
      const uint64_t h = hash_bytes(str(static_cast<int32_t>(id)));
      size_t i = h & mask_;
      while (slots_[i].id >= 0) i = (i + 1) & mask_;
      slots_[i] = Slot{static_cast<uint32_t>(h), static_cast<int32_t>(id), spans_[id].off, spans_[id].len};
    }
  }
  std::string arena_;
  std::vector<Span> spans_;
  std::vector<Slot> slots_ = std::vector<Slot>(16);
  size_t mask_ = 15;
  size_t count_ = 0;
};

/// Thread-safe cache word -> ids, bounded like HF's (once full, new words are simply not cached).
/// Open addressing in 64-byte slots: a short word and its ids sit in the slot itself, so a hit costs one
/// cache line; longer ones spill to a per-shard arena. Sharded by hash, one mutex per shard, so that
/// encode_batch threads rarely wait on each other.
class BpeCache {
 public:
  static constexpr size_t kMaxWordBytes = 256;  // HF's MAX_LENGTH: longer words are not cached

  BpeCache() : shards_(kShards) {}

  bool get(std::string_view word, std::vector<int32_t>& out) const {
    const uint64_t h = hash_bytes(word);
    Shard& sh = shards_[h >> 58];
    std::lock_guard lock(sh.m);
    if (sh.slots.empty()) return false;
    // Hot slots first: small and direct-mapped, they keep the frequent words in the CPU caches.
    Slot& hot = sh.hot[(h >> 11) & (kHot - 1)];
    if (matches(sh, hot, h, word)) {
      out.insert(out.end(), hot.ids, hot.ids + hot.n_ids);
      return true;
    }
    for (size_t i = h & (kSlots - 1);; i = (i + 1) & (kSlots - 1)) {
      const Slot& s = sh.slots[i];
      if (s.hash == 0) return false;
      if (matches(sh, s, h, word)) {
        const int32_t* ids = ids_of(sh, s);
        out.insert(out.end(), ids, ids + s.n_ids);
        if (s.key_len <= kInlineKey && s.n_ids <= kInlineIds) hot = s;
        return true;
      }
    }
  }

  void put(std::string_view word, const int32_t* ids, size_t n) const {
    if (word.size() >= kMaxWordBytes || n > 65535) return;
    const uint64_t h = hash_bytes(word);
    Shard& sh = shards_[h >> 58];
    std::lock_guard lock(sh.m);
    if (sh.slots.empty()) sh.slots.assign(kSlots, Slot{});
    if (sh.count * 10 >= kSlots * 7) return;  // full (70% load)
    size_t i = h & (kSlots - 1);
    for (; sh.slots[i].hash != 0; i = (i + 1) & (kSlots - 1))
      if (matches(sh, sh.slots[i], h, word)) return;  // another thread got there first
    Slot& s = sh.slots[i];
    s.hash = h | 1;  // never 0, which marks an empty slot
    s.key_len = static_cast<uint16_t>(word.size());
    s.n_ids = static_cast<uint16_t>(n);
    if (word.size() <= kInlineKey) {
      std::memcpy(s.key, word.data(), word.size());
    } else {
      s.key_off = static_cast<uint32_t>(sh.arena_keys.size());
      sh.arena_keys.append(word);
    }
    if (n <= kInlineIds) {
      std::memcpy(s.ids, ids, n * sizeof(int32_t));
    } else {
      s.ids_off = static_cast<uint32_t>(sh.arena_ids.size());
      sh.arena_ids.insert(sh.arena_ids.end(), ids, ids + n);
    }
    ++sh.count;
    if (word.size() <= kInlineKey && n <= kInlineIds) sh.hot[(h >> 11) & (kHot - 1)] = s;
  }

  void clear() const {
    for (auto& sh : shards_) {
      std::lock_guard lock(sh.m);
      sh.slots.clear();
      sh.hot.assign(kHot, Slot{});
      sh.arena_keys.clear();
      sh.arena_ids.clear();
      sh.count = 0;
    }
  }

 private:
  static constexpr size_t kShards = 64;           // chosen by the top 6 bits of the hash
  static constexpr size_t kSlots = 2048;          // per shard: 131072 slots, 8 MiB, ~90k words in all
  static constexpr size_t kHot = 128;             // per shard: 8192 hot slots, 512 KiB
  static constexpr size_t kInlineKey = 24;
  static constexpr size_t kInlineIds = 6;
  struct alignas(64) Slot {
    uint64_t hash = 0;
    uint16_t key_len = 0, n_ids = 0;
    union {
      char key[kInlineKey];
      uint32_t key_off;
    };
    union {
      int32_t ids[kInlineIds];
      uint32_t ids_off;
    };
    Slot() : key{}, ids{} {}
  };
  static_assert(sizeof(Slot) == 64);
  struct Shard {
    std::mutex m;
    std::vector<Slot> slots;  // allocated on first insert
    std::vector<Slot> hot = std::vector<Slot>(kHot);  // copies of inline slots (hash 0: empty)
    std::string arena_keys;
    std::vector<int32_t> arena_ids;
    size_t count = 0;
  };
  static bool matches(const Shard& sh, const Slot& s, uint64_t h, std::string_view word) {
    return s.hash == (h | 1) && s.key_len == word.size() && std::memcmp(key_of(sh, s), word.data(), word.size()) == 0;
  }
  static const char* key_of(const Shard& sh, const Slot& s) {
    return s.key_len <= kInlineKey ? s.key : sh.arena_keys.data() + s.key_off;
  }
  static const int32_t* ids_of(const Shard& sh, const Slot& s) {
    return s.n_ids <= kInlineIds ? s.ids : sh.arena_ids.data() + s.ids_off;
  }
  mutable std::vector<Shard> shards_;
};

struct BpeOptions {
  std::optional<std::string> unk_token;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

class BpeModel {
 public:
  BpeModel() = default;

  /// `vocab`: (token, id) pairs; `merges`: (left, right) pairs in rank order. `byte_level`: the words
  /// given to tokenize() are raw bytes whose characters are the byte-level alphabet (HF's ByteLevel
  /// pre-tokenizer ran before the model). Errors name `origin`.
  BpeModel(std::vector<std::pair<std::string, int64_t>> vocab, const std::vector<std::pair<std::string, std::string>>& merges,
           BpeOptions opts, bool byte_level, std::string_view origin)
      : opts_(std::move(opts)), byte_level_(byte_level) {
    const std::string where(origin);
    size_t bytes = 0;
    int64_t largest = -1;
    std::string largest_token;
    for (const auto& [tok, id] : vocab) {
      if (id < 0 || id > INT32_MAX)
        throw TokenizerError(where + ": model.vocab id " + std::to_string(id) + " for '" + shown(tok) + "' is out of range");
      bytes += tok.size();
      if (id > largest) {
        largest = id;
        largest_token = tok;
      }
    }
    // The id tables (here and the tokenizer's decode tables) have one entry per id up to the largest: an id far
    // above the number of tokens would allocate gigabytes for a handful of tokens. Real vocabularies are
    // dense (ids 0..n-1, sometimes with a few holes), so ids must stay below twice the token count plus 2^20.
    const int64_t id_bound = 2 * static_cast<int64_t>(vocab.size()) + (int64_t(1) << 20);
    if (largest >= id_bound)
      throw TokenizerError(where + ": model.vocab id " + std::to_string(largest) + " for '" + shown(largest_token) + "' is far above the " +
                           std::to_string(vocab.size()) + " tokens of the vocabulary (dots1 keeps tables indexed by id: ids must be below " +
                           std::to_string(id_bound) + ")");
    check_allocation(checked_bytes({largest + 1, 64}), where + ": the id tables of " + std::to_string(largest + 1) + " ids");
    vocab_.reserve(vocab.size(), bytes);
    for (const auto& [tok, id] : vocab) {
      const auto i = static_cast<int32_t>(id);
      if (vocab_.has_id(i))
        throw TokenizerError(where + ": model.vocab gives id " + std::to_string(id) + " to both '" +
                             shown(vocab_.str(i)) + "' and '" + shown(tok) + "'");
      if (!vocab_.insert(tok, i)) throw TokenizerError(where + ": model.vocab lists '" + shown(tok) + "' twice");
    }
    vocab.clear();
    vocab.shrink_to_fit();

    pairs_.reserve(merges.size());
    const size_t prefix_len = opts_.continuing_subword_prefix.size();
    // In batches: hash and prefetch the three lookups of each merge, then resolve them.
    constexpr size_t kBatch = 32;
    std::array<std::string, kBatch> merged;
    std::array<std::array<uint64_t, 3>, kBatch> hashes;
    for (size_t base = 0; base < merges.size(); base += kBatch) {
      const size_t n = std::min(kBatch, merges.size() - base);
      for (size_t k = 0; k < n; ++k) {
        const auto& [a, b] = merges[base + k];
        if (b.size() < prefix_len)
          throw TokenizerError(where + ": merge '" + shown(a + " " + b) + "' is shorter than continuing_subword_prefix");
        merged[k].assign(a);
        merged[k].append(b, prefix_len);  // HF strips the prefix length from the right part
        hashes[k] = {hash_bytes(a), hash_bytes(b), hash_bytes(merged[k])};
        for (uint64_t h : hashes[k]) vocab_.prefetch(h);
      }
      for (size_t k = 0; k < n; ++k) {
        const size_t rank = base + k;
        const auto& [a, b] = merges[rank];
        const int32_t ia = vocab_.find(a, hashes[k][0]), ib = vocab_.find(b, hashes[k][1]);
        if (ia < 0) throw TokenizerError(where + ": merge " + std::to_string(rank) + " uses '" + shown(a) + "', which is not in the vocab");
        if (ib < 0) throw TokenizerError(where + ": merge " + std::to_string(rank) + " uses '" + shown(b) + "', which is not in the vocab");
        const int32_t im = vocab_.find(merged[k], hashes[k][2]);
        if (im < 0)
          throw TokenizerError(where + ": merge '" + shown(a + " " + b) + "' makes '" + shown(merged[k]) + "', which is not in the vocab");
        pairs_.insert(ia, ib, {static_cast<uint32_t>(rank), im});
      }
    }

    if (opts_.unk_token) {
      const int32_t id = vocab_.find(*opts_.unk_token);
      if (id < 0) throw TokenizerError(where + ": unk_token '" + shown(*opts_.unk_token) + "' is not in the vocab");
      unk_id_ = id;
    }
    // Fast path for the usual byte-level model: one table lookup per byte.
    fast_bytes_ = byte_level_ && opts_.continuing_subword_prefix.empty() && opts_.end_of_word_suffix.empty();
    const auto& bl = byte_level_tables();
    for (int b = 0; b < 256; ++b) {
      byte_ids_[b] = vocab_.find(bl.byte_to_utf8[b]);
      if (byte_ids_[b] < 0) fast_bytes_ = false;  // HF's unk / byte-fallback / drop rules apply: slow path
    }
  }

  size_t vocab_size() const noexcept { return vocab_.size(); }  // number of entries, as HF's get_vocab_size
  size_t id_bound() const noexcept { return vocab_.id_bound(); }
  bool byte_level() const noexcept { return byte_level_; }

  std::optional<int32_t> token_to_id(std::string_view t) const {
    const int32_t id = vocab_.find(t);
    if (id < 0) return std::nullopt;
    return id;
  }
  std::optional<std::string_view> id_to_token(int32_t id) const {
    if (!vocab_.has_id(id)) return std::nullopt;
    return vocab_.str(id);
  }

  /// Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const {
    if (word.empty()) return;
    if (fast_bytes_ && word.size() == 1) {  // single byte: no merge possible, no cache needed
      out.push_back(byte_ids_[static_cast<unsigned char>(word[0])]);
      return;
    }
    if (cache_->get(word, out)) return;
    const size_t before = out.size();
    tokenize_uncached(word, out);
    cache_->put(word, out.data() + before, out.size() - before);
  }

  void clear_cache() const { cache_->clear(); }

 private:
  struct Symbol {
    int32_t c;
    int32_t prev, next;
    uint32_t len;  // bytes covered; 0 marks a symbol merged into its left neighbour
  };
  struct Merge {
    uint32_t rank;
    uint32_t pos;
    int32_t new_id;
  };

  // The model's view of a word: byte-level characters of the raw bytes, or the UTF-8 characters.
  template <class F>
  void for_each_char(std::string_view word, F&& f) const {
    if (byte_level_) {
      const auto& bl = byte_level_tables();
      for (size_t i = 0; i < word.size(); ++i) f(std::string_view(bl.byte_to_utf8[static_cast<unsigned char>(word[i])]), size_t{1}, i + 1 == word.size(), i == 0);
    } else {
      size_t i = 0;
      while (i < word.size()) {
        const size_t start = i;
        i += utf8_len(static_cast<unsigned char>(word[i]));
        f(word.substr(start, i - start), i - start, i >= word.size(), start == 0);
      }
    }
  }

  void tokenize_uncached(std::string_view word, std::vector<int32_t>& out) const {
    thread_local std::vector<Symbol> sym;
    sym.clear();
    auto add = [&](int32_t c, uint32_t len) {
      const auto n = static_cast<int32_t>(sym.size());
      if (n) sym.back().next = n;
      sym.push_back({c, n - 1, -1, len});
    };

    if (opts_.ignore_merges) {  // a word that is itself a token is taken whole
      std::string whole = byte_level_ ? byte_level_encode(word) : std::string(word);
      if (const int32_t id = vocab_.find(whole); id >= 0) {
        out.push_back(id);
        return;
      }
    }

    if (fast_bytes_) {
      for (unsigned char b : word) add(byte_ids_[b], 1);
    } else {
      // HF's merge_word: prefix/suffix, then vocab, byte fallback, unk (fused or not), or drop.
      std::optional<std::pair<int32_t, uint32_t>> unk;
      std::string s;
      for_each_char(word, [&](std::string_view ch, size_t byte_len, bool is_last, bool is_first) {
        s.clear();
        if (!is_first) s += opts_.continuing_subword_prefix;
        s += ch;
        if (is_last) s += opts_.end_of_word_suffix;
        if (const int32_t id = vocab_.find(s); id >= 0) {
          if (unk) {
            add(unk->first, unk->second);
            unk.reset();
          }
          add(id, static_cast<uint32_t>(byte_len));
          return;
        }
        if (opts_.byte_fallback) {
          // "<0xAB>" tokens for each byte of the (prefixed/suffixed) string, all or nothing.
          std::vector<int32_t> ids;
          char buf[8];
          for (unsigned char b : s) {
            std::snprintf(buf, sizeof buf, "<0x%02X>", b);
            const int32_t id = vocab_.find(std::string_view(buf));
            if (id < 0) break;
            ids.push_back(id);
          }
          if (ids.size() == s.size()) {
            for (int32_t id : ids) add(id, 1);
            return;
          }
        }
        if (unk_id_) {
          if (unk && opts_.fuse_unk) {
            unk->second += static_cast<uint32_t>(byte_len);
          } else {
            if (unk) add(unk->first, unk->second);
            unk = std::make_pair(*unk_id_, static_cast<uint32_t>(byte_len));
          }
        }
        // else: HF silently drops a character it cannot represent
      });
      if (unk) add(unk->first, unk->second);
    }
    merge_all(sym);
    for (const auto& s : sym)
      if (s.len) out.push_back(s.c);
  }

  // Word::merge_all from HF: a min-heap on (rank, position); an entry is stale when the pair now at
  // its position no longer produces the same id.
  void merge_all(std::vector<Symbol>& sym) const {
    thread_local std::vector<Merge> heap;
    heap.clear();
    auto after = [](const Merge& x, const Merge& y) { return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos; };
    for (size_t i = 0; i + 1 < sym.size(); ++i)
      if (const auto* e = pairs_.find(sym[i].c, sym[i + 1].c)) heap.push_back({e->rank, static_cast<uint32_t>(i), e->id});
    std::make_heap(heap.begin(), heap.end(), after);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), after);
      const Merge top = heap.back();
      heap.pop_back();
      Symbol& cur = sym[top.pos];
      if (cur.len == 0 || cur.next == -1) continue;
      const Symbol right = sym[cur.next];
      const auto* now = pairs_.find(cur.c, right.c);
      if (!now || now->id != top.new_id) continue;
      sym[cur.next].len = 0;
      cur.c = top.new_id;
      cur.len += right.len;
      cur.next = right.next;
      if (right.next != -1) sym[right.next].prev = static_cast<int32_t>(top.pos);
      if (cur.prev >= 0)
        if (const auto* e = pairs_.find(sym[cur.prev].c, cur.c)) {
          heap.push_back({e->rank, static_cast<uint32_t>(cur.prev), e->id});
          std::push_heap(heap.begin(), heap.end(), after);
        }
      if (cur.next != -1)
        if (const auto* e = pairs_.find(cur.c, sym[cur.next].c)) {
          heap.push_back({e->rank, top.pos, e->id});
          std::push_heap(heap.begin(), heap.end(), after);
        }
    }
  }

  BpeOptions opts_;
  bool byte_level_ = false;
  bool fast_bytes_ = false;
  VocabTable vocab_;
  PairTable pairs_;
  std::array<int32_t, 256> byte_ids_{};
  std::optional<int32_t> unk_id_;
  std::unique_ptr<BpeCache> cache_ = std::make_unique<BpeCache>();  // held by pointer: mutexes do not move
};

}  // namespace dots1::tok
