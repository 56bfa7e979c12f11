// The CPU backend's kernels (backend/eigen/cpu_kernels.hpp) against naive loops: matmul on f32 and bf16
// weights (decode and prefill paths, K blocking, tails, 1 and 2 threads) within the float32 summation
// bound, attention against the portable AttentionRow functor (masks, GQA, padding, sliding window,
// attention weights), RMSNorm / SiLU / exp, and the MoE (both thread strategies, f32 and bf16 experts)
// against the double-precision reference path of the same backend.
#define BOOST_TEST_MODULE cpu_kernels
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <dots1/eigen.hpp>

namespace cpu = dots1::cpu;
using dots1::kernels::Activation;

namespace {

constexpr double kUnitRoundoff = 1.0 / (1 << 24);  // float32

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = dots1::float_to_bf16(v[i]);
  return b;
}

struct ThreadCount {
  explicit ThreadCount(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadCount() { omp_set_num_threads(saved); }
  int saved;
};

/// Checks y = x . W^T against a double-precision reference; the error of any float32 summation order of
/// K products is bounded by gamma_K * sum |x_k w_k| with gamma_K = K u / (1 - K u), plus one rounding.
void check_matmul(int64_t M, int64_t N, int64_t K, bool bf16, int threads) {
  ThreadCount tc(threads);
  const auto x = randn(static_cast<size_t>(M * K), 1 + M * 7 + K);
  auto w = randn(static_cast<size_t>(N * K), 2 + N * 11 + K);
  const auto wb = to_bf16(w);
  if (bf16)
    for (size_t i = 0; i < w.size(); ++i) w[i] = dots1::bf16_to_float(wb[i]);  // the values the kernel sees
  cpu::WeightRef ref{bf16 ? static_cast<const void*>(wb.data()) : static_cast<const void*>(w.data()), bf16 ? cpu::WType::bf16 : cpu::WType::f32,
                     N, K, K};
  std::vector<float> y(static_cast<size_t>(M * N), NAN);
  cpu::matmul(x.data(), M, K, ref, y.data(), N);
  const double gamma = static_cast<double>(K + 1) * kUnitRoundoff / (1.0 - static_cast<double>(K + 1) * kUnitRoundoff);
  double worst = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double exact = 0, magnitude = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double p = static_cast<double>(x[m * K + k]) * static_cast<double>(w[n * K + k]);
        exact += p;
        magnitude += std::fabs(p);
      }
      const double err = std::fabs(static_cast<double>(y[m * N + n]) - exact);
      const double bound = gamma * magnitude + 1e-30;
      worst = std::max(worst, err / bound);
      if (!(err <= bound)) {
        BOOST_ERROR("matmul M=" << M << " N=" << N << " K=" << K << (bf16 ? " bf16" : " f32") << " threads " << threads << ": y[" << m << "," << n
                                << "] = " << y[m * N + n] << ", exact " << exact << ", bound " << bound);
        return;
      }
    }
  BOOST_TEST_MESSAGE("matmul M=" << M << " N=" << N << " K=" << K << (bf16 ? " bf16" : " f32") << " threads " << threads
                                 << ": worst error / bound " << worst);
}

}  // namespace

BOOST_AUTO_TEST_CASE(matmul_matches_naive_within_the_summation_bound) {
  // decode (1-3 rows), prefill chunks (96-row chunks, K blocks of ~512), tails in every dimension
  const std::vector<std::array<int64_t, 3>> shapes = {{1, 1, 1},    {1, 4, 8},     {1, 7, 9},     {2, 5, 17},   {3, 64, 100},  {4, 9, 33},
                                                      {5, 16, 8},   {7, 13, 1030}, {48, 36, 64}, {100, 21, 600}, {97, 8, 1200}, {200, 6, 40},
                                                      {1, 300, 700}, {3, 33, 2816}};
  for (int threads : {1, 2})
    for (bool bf16 : {false, true})
      for (const auto& s : shapes) check_matmul(s[0], s[1], s[2], bf16, threads);
}

BOOST_AUTO_TEST_CASE(matmul_reads_strided_weight_rows) {
  // a weight view with ld > cols (rows of a wider tensor)
  const int64_t M = 5, N = 6, K = 20, ld = 27;
  const auto x = randn(static_cast<size_t>(M * K), 3);
  const auto w = randn(static_cast<size_t>(N * ld), 4);
  std::vector<float> y(static_cast<size_t>(M * N));
  cpu::matmul(x.data(), M, K, cpu::WeightRef{w.data(), cpu::WType::f32, N, K, ld}, y.data(), N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double e = 0;
      for (int64_t k = 0; k < K; ++k) e += static_cast<double>(x[m * K + k]) * w[n * ld + k];
      BOOST_TEST(std::fabs(y[m * N + n] - e) <= 1e-5);
    }
}

BOOST_AUTO_TEST_CASE(exp8_and_activations) {
#if DOTS1_CPU_AVX2
  double worst = 0;
  for (float x = -87.0f; x < 87.9f; x += 0.0173f) {
    float in[8], out[8];
    for (int i = 0; i < 8; ++i) in[i] = x + static_cast<float>(i) * 0.002f;
    _mm256_storeu_ps(out, cpu::exp8(_mm256_loadu_ps(in)));
    for (int i = 0; i < 8; ++i) worst = std::max(worst, std::fabs(out[i] / std::exp(static_cast<double>(in[i])) - 1.0));
  }
  BOOST_TEST_MESSAGE("exp8 worst relative error on [-87, 88]: " << worst);
  BOOST_TEST(worst < 3e-7);  // about 2 ulp
  float in[8] = {-1e30f, -FLT_MAX, -88.0f, -87.5f, 0.0f, -0.0f, 1.0f, -200.0f}, out[8];
  _mm256_storeu_ps(out, cpu::exp8(_mm256_loadu_ps(in)));
  BOOST_TEST(out[0] == 0.0f);
  BOOST_TEST(out[1] == 0.0f);  // masked scores give exact zeros
  BOOST_TEST(out[4] == 1.0f);
  BOOST_TEST(out[5] == 1.0f);
#endif
  const auto g = randn(1000, 5, 3.0f), u = randn(1000, 6);
  for (auto act : {Activation::silu, Activation::gelu, Activation::gelu_tanh, Activation::relu}) {
    std::vector<float> out(g.size());
    cpu::act_mul(g.data(), u.data(), out.data(), static_cast<int64_t>(g.size()), act);
    for (size_t i = 0; i < g.size(); ++i) {
      const float want = dots1::kernels::activate(act, g[i]) * u[i];
      BOOST_TEST(std::fabs(out[i] - want) <= 4e-7f * (std::fabs(want) + 1e-30f), "act " << static_cast<int>(act) << " at " << g[i]);
    }
  }
}

BOOST_AUTO_TEST_CASE(rms_norm_matches_functor) {
  for (int64_t dim : {1, 7, 64, 100, 1024}) {
    const auto x = randn(static_cast<size_t>(3 * dim), 7), w = randn(static_cast<size_t>(dim), 8);
    std::vector<float> a(x.size()), b(x.size());
    for (int64_t r = 0; r < 3; ++r) {
      cpu::rms_norm_row(x.data() + r * dim, w.data(), a.data() + r * dim, dim, 1e-6f);
      dots1::kernels::RmsNormRow<float>{x.data(), w.data(), b.data(), dim, 1e-6f}(r);
    }
    for (size_t i = 0; i < a.size(); ++i) BOOST_TEST(std::fabs(a[i] - b[i]) <= 2e-6f * (std::fabs(b[i]) + 1e-6f));
  }
}

namespace {

struct AttentionCase {
  int64_t batch, q_len, kv_len, capacity, heads, kv_heads, head_dim;
  int64_t q_offset = 0, window = 0;
  bool padding = false, weights = false;
};

template <class Window>
void check_attention_with(const AttentionCase& c, int threads, Window window) {
  ThreadCount tc(threads);
  const auto q = randn(static_cast<size_t>(c.batch * c.q_len * c.heads * c.head_dim), 11);
  const auto k = randn(static_cast<size_t>(c.batch * c.capacity * c.kv_heads * c.head_dim), 12);
  const auto v = randn(static_cast<size_t>(c.batch * c.capacity * c.kv_heads * c.head_dim), 13);
  std::vector<int32_t> key_mask;
  dots1::kernels::MaskSpec<Window> mask;
  mask.q_offset = c.q_offset;
  mask.kv_offset = 0;
  mask.window = window;
  mask.q_len = c.q_len;
  if (c.padding) {  // batch entry 1 is left-padded by 3
    key_mask.assign(static_cast<size_t>(c.batch * c.kv_len), 1);
    for (int64_t j = 0; j < 3 && c.batch > 1; ++j) key_mask[static_cast<size_t>(c.kv_len + j)] = 0;
    mask.key_mask = key_mask.data();
    mask.key_mask_len = c.kv_len;
  }
  const int64_t rows = c.batch * c.heads * c.q_len;
  std::vector<float> out(q.size(), NAN), want(q.size(), NAN), w(c.weights ? static_cast<size_t>(rows * c.kv_len) : 0),
      want_w(static_cast<size_t>(rows * c.kv_len)), scratch(static_cast<size_t>(rows * c.kv_len));
  cpu::attention(cpu::AttentionArgs<Window>{q.data(), k.data(), v.data(), out.data(), c.weights ? w.data() : nullptr, c.batch, c.q_len, c.kv_len,
                                            c.capacity, c.heads, c.kv_heads, c.head_dim, 0.125f, mask});
  dots1::kernels::AttentionRow<float, Window> f{q.data(), k.data(), v.data(), want.data(), want_w.data(), scratch.data(),
                                                {c.q_len, c.kv_len, c.capacity, c.heads, c.kv_heads, c.head_dim, 0.125f}, mask};
  for (int64_t r = 0; r < rows; ++r) f(r);
  double worst = 0;
  for (size_t i = 0; i < out.size(); ++i) worst = std::max(worst, static_cast<double>(std::fabs(out[i] - want[i])));
  BOOST_TEST(worst <= 2e-6, "attention output max |diff| " << worst << " (q_len " << c.q_len << ", kv " << c.kv_len << ", threads " << threads << ")");
  if (c.weights) {
    double ww = 0;
    for (size_t i = 0; i < w.size(); ++i) ww = std::max(ww, static_cast<double>(std::fabs(w[i] - want_w[i])));
    BOOST_TEST(ww <= 1e-6, "attention weights max |diff| " << ww);
  }
}

void check_attention(const AttentionCase& c, int threads) {
  if (c.window > 0) check_attention_with(c, threads, dots1::kernels::SlidingWindow{c.window});
  else check_attention_with(c, threads, dots1::kernels::NoWindow{});
}

}  // namespace

BOOST_AUTO_TEST_CASE(attention_matches_functor) {
  const std::vector<AttentionCase> cases = {
      {1, 1, 1, 4, 2, 2, 8},                                      // first decode step
      {1, 1, 37, 40, 16, 16, 64},                                 // decode, heads split over threads
      {2, 1, 20, 24, 4, 2, 12, 19, 0, true, true},                // GQA, head_dim not a multiple of 8, padded batch, weights
      {2, 9, 9, 16, 4, 1, 16, 0, 0, true, true},                  // prefill, MQA, causal + padding
      {1, 12, 12, 12, 3, 3, 8, 0, 4, false, true},                // sliding window 4
      {1, 5, 25, 32, 2, 2, 64, 20},                               // chunked prefill after 20 cached
      {1, 70, 70, 70, 2, 2, 32},                                  // more rows than threads x 2
      {1, 1, 300, 320, 16, 16, 64, 299},                          // decode split over the cache rows
      {2, 1, 290, 300, 4, 2, 12, 289, 0, true},                   // ... GQA, padding, head_dim 12
      {1, 1, 700, 700, 4, 4, 8, 699, 100},                        // ... sliding window: most parts fully masked
      {1, 1, 513, 600, 2, 1, 64, 512, 0, false, true},            // decode with weights: heads split instead
  };
  for (int threads : {1, 2})
    for (const auto& c : cases) check_attention(c, threads);
}

namespace {

using F = dots1::EigenBackend<float>;
using D = dots1::EigenBackend<double>;

dots1::TensorView view_of(const std::shared_ptr<std::vector<float>>& v, std::vector<int64_t> shape) {
  dots1::TensorView t;
  t.name = "t";
  t.dtype = dots1::DType::F32;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const std::byte*>(v->data());
  t.nbytes = v->size() * 4;
  t.keepalive = v;
  return t;
}

dots1::TensorView bf16_view_of(const std::shared_ptr<std::vector<uint16_t>>& v, std::vector<int64_t> shape) {
  dots1::TensorView t;
  t.name = "t";
  t.dtype = dots1::DType::BF16;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const std::byte*>(v->data());
  t.nbytes = v->size() * 2;
  t.keepalive = v;
  return t;
}

}  // namespace

BOOST_AUTO_TEST_CASE(matrices_are_used_in_place) {
  auto f = std::make_shared<std::vector<float>>(randn(12, 1));
  auto b = std::make_shared<std::vector<uint16_t>>(to_bf16(*f));
  const auto mf = F::matrix(view_of(f, {3, 4}));
  const auto mb = F::matrix(bf16_view_of(b, {3, 4}));
  BOOST_TEST(mf.data == static_cast<const void*>(f->data()));
  BOOST_TEST((mf.dtype == dots1::DType::F32));
  BOOST_TEST(mb.data == static_cast<const void*>(b->data()));
  BOOST_TEST((mb.dtype == dots1::DType::BF16));
  BOOST_TEST(F::bytes(mb) == 24u);
  BOOST_TEST(F::bytes(mf) == 48u);
  // the bf16 embedding row is the exact widening
  std::vector<float> out;
  F::embedding(mb, {2}, out);
  for (int i = 0; i < 4; ++i) BOOST_TEST(out[static_cast<size_t>(i)] == dots1::bf16_to_float((*b)[static_cast<size_t>(8 + i)]));
}

BOOST_AUTO_TEST_CASE(moe_matches_reference_path) {
  const int64_t hidden = 40, inter = 24, E = 8;
  std::vector<F::ExpertMatrices> ef, eb;
  std::vector<D::ExpertMatrices> ed;
  for (int64_t e = 0; e < E; ++e) {
    auto g = std::make_shared<std::vector<float>>(randn(static_cast<size_t>(inter * hidden), 100 + e, 0.2f));
    auto u = std::make_shared<std::vector<float>>(randn(static_cast<size_t>(inter * hidden), 200 + e, 0.2f));
    auto d = std::make_shared<std::vector<float>>(randn(static_cast<size_t>(hidden * inter), 300 + e, 0.2f));
    // bf16-representable values, so that the f32, bf16 and double paths all see the same weights
    for (auto* v : {g.get(), u.get(), d.get()})
      for (auto& x : *v) x = dots1::bf16_to_float(dots1::float_to_bf16(x));
    ef.push_back({F::matrix(view_of(g, {inter, hidden})), F::matrix(view_of(u, {inter, hidden})), F::matrix(view_of(d, {hidden, inter}))});
    ed.push_back({D::matrix(view_of(g, {inter, hidden})), D::matrix(view_of(u, {inter, hidden})), D::matrix(view_of(d, {hidden, inter}))});
    auto gb = std::make_shared<std::vector<uint16_t>>(to_bf16(*g)), ub = std::make_shared<std::vector<uint16_t>>(to_bf16(*u)),
         db = std::make_shared<std::vector<uint16_t>>(to_bf16(*d));
    eb.push_back({F::matrix(bf16_view_of(gb, {inter, hidden})), F::matrix(bf16_view_of(ub, {inter, hidden})),
                  F::matrix(bf16_view_of(db, {hidden, inter}))});
  }
  for (int64_t tokens : {1, 2, 5, 40})
    for (int64_t top_k : {1, 3})
      for (int threads : {1, 2}) {
        ThreadCount tc(threads);
        const auto x = randn(static_cast<size_t>(tokens * hidden), 9 + tokens);
        std::vector<int32_t> idx;
        std::vector<float> w;
        std::mt19937 rng(static_cast<unsigned>(tokens * 10 + top_k));
        for (int64_t t = 0; t < tokens; ++t) {
          std::vector<int32_t> all(static_cast<size_t>(E));
          std::iota(all.begin(), all.end(), 0);
          std::shuffle(all.begin(), all.end(), rng);
          for (int64_t k = 0; k < top_k; ++k) {
            idx.push_back(all[static_cast<size_t>(k)]);
            w.push_back(0.3f + 0.1f * static_cast<float>(k));
          }
        }
        std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end()), want;
        D::moe_experts(xd, tokens, hidden, idx, wd, top_k, ed, inter, Activation::silu, want);
        for (const auto* experts : {&ef, &eb}) {
          std::vector<float> out;
          F::moe_experts(x, tokens, hidden, idx, w, top_k, *experts, inter, Activation::silu, out);
          double worst = 0, scale = 0;
          for (size_t i = 0; i < out.size(); ++i) {
            worst = std::max(worst, std::fabs(out[i] - want[i]));
            scale = std::max(scale, std::fabs(want[i]));
          }
          BOOST_TEST(worst <= 2e-6 * scale, "moe tokens " << tokens << " top_k " << top_k << " threads " << threads << (experts == &eb ? " bf16" : " f32")
                                                       << ": max |diff| " << worst << " of max |out| " << scale);
        }
      }
}

BOOST_AUTO_TEST_CASE(linear_adds_bias) {
  auto wv = std::make_shared<std::vector<float>>(randn(6 * 5, 21));
  const auto m = F::matrix(view_of(wv, {6, 5}));
  const std::vector<float> x = randn(2 * 5, 22), bias = randn(6, 23);
  std::vector<float> y;
  F::linear(m, &bias, x, 2, y);
  for (int64_t r = 0; r < 2; ++r)
    for (int64_t o = 0; o < 6; ++o) {
      double e = bias[static_cast<size_t>(o)];
      for (int64_t k = 0; k < 5; ++k) e += static_cast<double>(x[static_cast<size_t>(r * 5 + k)]) * (*wv)[static_cast<size_t>(o * 5 + k)];
      BOOST_TEST(std::fabs(y[static_cast<size_t>(r * 6 + o)] - e) <= 1e-5);
    }
}
