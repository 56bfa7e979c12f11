// dots1/model/rope.hpp — rotary position embeddings: inverse frequencies for every HF rope type (spec 3),
// the runtime updates of "dynamic" and "longrope" (spec 3.4), and the cos/sin tables for given positions.
//
// Host-side and backend-independent: tables are [tokens, head_dim] and are uploaded by the backend.
// Arithmetic follows torch's float32 order of operations so that the tables match HF's bit for bit
// up to libm differences of one ulp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <span>
#include <vector>

#include "dots1/config.hpp"

namespace dots1 {

/// Inverse frequencies (length head_dim/2 for every supported type) and the cos/sin multiplier.
struct RopeFrequencies {
  std::vector<float> inv_freq;
  float attention_scaling = 1.0f;
};

namespace detail {

// torch: base ** (arange(0, dim, 2).float() / dim), all float32.
inline std::vector<float> rope_base_powers(double base, int64_t dim) {
  std::vector<float> p;
  for (int64_t i = 0; i < dim; i += 2)
    p.push_back(std::pow(static_cast<float>(base), static_cast<float>(i) / static_cast<float>(dim)));
  return p;
}

inline std::vector<float> rope_default_inv(double base, int64_t dim) {
  auto p = rope_base_powers(base, dim);
  for (float& x : p) x = 1.0f / x;
  return p;
}

}  // namespace detail

/// HF's rope init function for config.rope.rope_type, at sequence length `seq_len` (0 = init, i.e. None).
inline RopeFrequencies compute_rope_frequencies(const Dots1Config& c, int64_t seq_len = 0) {
  const RopeParameters& r = c.rope;
  const int64_t head_dim = c.head_dim();
  const double base = r.rope_theta;
  const std::string& type = r.rope_type;
  RopeFrequencies out;
  // The default type of Dots1 ignores partial_rotary_factor (model-local compute_default_rope_parameters); the
  // others use int(head_dim * prf), which validation pins to head_dim for Dots1.
  const int64_t dim = head_dim;
  const auto original_max = r.original_max_position_embeddings.value_or(c.max_position_embeddings);
  if (type == "default") {
    out.inv_freq = detail::rope_default_inv(base, dim);
  } else if (type == "linear") {
    out.inv_freq = detail::rope_default_inv(base, dim);
    for (float& x : out.inv_freq) x /= static_cast<float>(*r.factor);
  } else if (type == "dynamic") {
    const double factor = *r.factor;
    const double L = static_cast<double>(std::max(seq_len, c.max_position_embeddings));
    const double d = static_cast<double>(dim);
    const double new_base =
        base * std::pow(factor * L / static_cast<double>(c.max_position_embeddings) - (factor - 1.0), d / (d - 2.0));
    out.inv_freq = detail::rope_default_inv(new_base, dim);
  } else if (type == "yarn") {
    const double factor = r.factor ? *r.factor
                                   : static_cast<double>(c.max_position_embeddings) / static_cast<double>(original_max);
    auto get_mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    double attention = 0;
    if (r.attention_factor) {
      attention = *r.attention_factor;
    } else if (r.mscale && r.mscale_all_dim && *r.mscale != 0 && *r.mscale_all_dim != 0) {
      attention = get_mscale(factor, *r.mscale) / get_mscale(factor, *r.mscale_all_dim);
    } else {
      attention = get_mscale(factor, 1.0);
    }
    out.attention_scaling = static_cast<float>(attention);
    const double beta_fast = r.beta_fast && *r.beta_fast != 0 ? *r.beta_fast : 32.0;
    const double beta_slow = r.beta_slow && *r.beta_slow != 0 ? *r.beta_slow : 1.0;
    const bool truncate = r.truncate.value_or(true);
    auto correction_dim = [&](double rotations) {
      return (static_cast<double>(dim) * std::log(static_cast<double>(original_max) / (rotations * 2 * std::numbers::pi))) /
             (2 * std::log(base));
    };
    double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
    if (truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim - 1));
    if (low == high) high += 0.001;
    auto pos = detail::rope_base_powers(base, dim);
    const auto flow = static_cast<float>(low), fspan = static_cast<float>(high - low);
    // torch: (arange(dim//2) - low) / (high - low), clamped; the scalars enter as float32.
    for (size_t j = 0; j < pos.size(); ++j) {
      float ramp = std::clamp((static_cast<float>(j) - flow) / fspan, 0.0f, 1.0f);
      float extrapolation_factor = 1.0f - ramp;
      float inv_extrapolation = 1.0f / pos[j];
      float inv_interpolation = 1.0f / (static_cast<float>(factor) * pos[j]);
      out.inv_freq.push_back(inv_interpolation * (1.0f - extrapolation_factor) + inv_extrapolation * extrapolation_factor);
    }
  } else if (type == "longrope") {
    const double factor = r.factor ? *r.factor
                                   : static_cast<double>(c.max_position_embeddings) / static_cast<double>(original_max);
    if (r.attention_factor)
      out.attention_scaling = static_cast<float>(*r.attention_factor);
    else
      out.attention_scaling = factor <= 1.0 ? 1.0f
                                            : static_cast<float>(std::sqrt(1 + std::log(factor) /
                                                                                   std::log(static_cast<double>(original_max))));
    const auto& ext = seq_len > original_max ? r.long_factor : r.short_factor;
    auto pos = detail::rope_base_powers(base, dim);
    for (size_t j = 0; j < pos.size(); ++j) out.inv_freq.push_back(1.0f / (static_cast<float>(ext[j]) * pos[j]));
  } else if (type == "llama3") {
    auto inv = detail::rope_default_inv(base, dim);
    const double factor = *r.factor, low_ff = *r.low_freq_factor, high_ff = *r.high_freq_factor;
    const double old_len = static_cast<double>(original_max);
    const float low_wavelen = static_cast<float>(old_len / low_ff), high_wavelen = static_cast<float>(old_len / high_ff);
    for (float f : inv) {
      const float wavelen = static_cast<float>(2 * std::numbers::pi) / f;
      float scaled = wavelen > low_wavelen ? f / static_cast<float>(factor) : f;
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      if (medium) {
        float smooth = (static_cast<float>(old_len) / wavelen - static_cast<float>(low_ff)) / static_cast<float>(high_ff - low_ff);
        scaled = (1.0f - smooth) * scaled / static_cast<float>(factor) + smooth * scaled;
      }
      out.inv_freq.push_back(scaled);
    }
  } else if (type == "proportional") {
    // Rotates only the first int(prf * head_dim // 2) frequency pairs, with exponents over the full head_dim.
    const double prf = c.effective_partial_rotary_factor();
    const auto angles = static_cast<int64_t>(prf * static_cast<double>(head_dim) / 2);
    for (int64_t j = 0; j < head_dim / 2; ++j)
      out.inv_freq.push_back(j < angles ? 1.0f / std::pow(static_cast<float>(base), static_cast<float>(2 * j) / static_cast<float>(head_dim))
                                        : 0.0f);
    const auto factor = static_cast<float>(r.factor.value_or(1.0));
    for (float& x : out.inv_freq) x /= factor;
  }
  return out;
}

/// The rotary embedding module: HF's Dots1RotaryEmbedding with its dynamic/longrope update hook. Holds the
/// current frequencies; `update(max_position + 1)` is called once per forward, before the tables are built.
class RotaryEmbedding {
 public:
  explicit RotaryEmbedding(const Dots1Config& c)
      : config_(c), original_(compute_rope_frequencies(c)), current_(original_),
        max_seq_len_cached_(c.max_position_embeddings), original_max_seq_len_(c.max_position_embeddings) {}

  /// HF's @dynamic_rope_update with seq_len = max(position_ids) + 1.
  void update(int64_t seq_len) {
    const std::string& type = config_.rope.rope_type;
    if (type == "dynamic") {
      if (seq_len > max_seq_len_cached_) {
        current_ = compute_rope_frequencies(config_, seq_len);
        max_seq_len_cached_ = seq_len;
      }
      if (seq_len < original_max_seq_len_ && max_seq_len_cached_ > original_max_seq_len_) {
        current_ = original_;
        max_seq_len_cached_ = original_max_seq_len_;
      }
    } else if (type == "longrope") {
      const auto original_max =
          config_.rope.original_max_position_embeddings.value_or(config_.max_position_embeddings);
      current_ = seq_len > original_max ? compute_rope_frequencies(config_, seq_len) : original_;
    }
  }

  const RopeFrequencies& frequencies() const { return current_; }

  /// cos/sin tables [positions.size(), head_dim] (half-split layout: the frequency vector twice).
  template <class T>
  void tables(std::span<const int64_t> positions, std::vector<T>& cos, std::vector<T>& sin) const {
    const auto& inv = current_.inv_freq;
    const size_t half = inv.size(), d = 2 * half;
    cos.resize(positions.size() * d);
    sin.resize(positions.size() * d);
    for (size_t t = 0; t < positions.size(); ++t) {
      const auto p = static_cast<float>(positions[t]);
      for (size_t j = 0; j < half; ++j) {
        const float angle = p * inv[j];
        const float c = std::cos(angle) * current_.attention_scaling, s = std::sin(angle) * current_.attention_scaling;
        cos[t * d + j] = cos[t * d + half + j] = static_cast<T>(c);
        sin[t * d + j] = sin[t * d + half + j] = static_cast<T>(s);
      }
    }
  }

 private:
  Dots1Config config_;
  RopeFrequencies original_, current_;
  int64_t max_seq_len_cached_, original_max_seq_len_;
};

}  // namespace dots1
