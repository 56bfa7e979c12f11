// The NCCL communicator (include/dots1/parallel/nccl.hpp) and the split model on the CUDA backend, compiled
// by nvcc in every CUDA build; run with a GPU (DOTS1_RUN_GPU_TESTS=ON, label gpu), one rank per GPU:
//   mpirun -np <GPUs> test_parallel_nccl          (with MPI: every plan that fits; the ranks bootstrap over MPI)
//   test_parallel_nccl                            (one rank: the collectives against themselves)
// On one GPU the collectives still run through NCCL (a one-rank communicator), and the expert-parallel
// dispatch/combine path is driven directly against the single-process MoE on the same weights.
#define BOOST_TEST_MODULE parallel_nccl
#include <boost/test/unit_test.hpp>

#include <numeric>

#include <dots1/cuda.hpp>
#include <dots1/parallel/nccl.hpp>
#if DOTS1_WITH_MPI
#include <dots1/parallel/mpi.hpp>
#endif

#include "../support/fixtures.hpp"

using namespace dots1_test;
using B = dots1::ThrustBackend<float>;
using Model = dots1::GpuModel;

namespace {

struct Ranks {
#if DOTS1_WITH_MPI
  dots1::MpiSession mpi;
  std::shared_ptr<dots1::Communicator> bootstrap = mpi.world();
#else
  std::shared_ptr<dots1::Communicator> bootstrap = std::make_shared<dots1::SingleProcess>();
#endif
  std::shared_ptr<dots1::NcclCommunicator> nccl = dots1::NcclCommunicator::create(*bootstrap);
};

Ranks& ranks() {
  static Ranks r;
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(collectives_on_device_buffers) {
  auto& comm = *ranks().nccl;
  const int n = comm.size(), me = comm.rank();
  B::Vector x = B::upload(std::vector<float>{1.0f + me, 2.0f, 3.0f});
  comm.all_reduce_sum(B::ptr(x), 3);
  const auto sum = B::download(x);
  BOOST_TEST(sum[0] == n + n * (n - 1) / 2.0f);
  BOOST_TEST(sum[1] == 2.0f * n);
  // all_gather_v: rank r contributes r + 1 values r
  std::vector<size_t> counts(static_cast<size_t>(n));
  for (int r = 0; r < n; ++r) counts[static_cast<size_t>(r)] = static_cast<size_t>(r + 1);
  B::Vector mine = B::upload(std::vector<float>(static_cast<size_t>(me + 1), static_cast<float>(me))), all;
  B::resize(all, std::accumulate(counts.begin(), counts.end(), size_t{0}));
  comm.all_gather_v(B::ptr(mine), B::ptr(all), std::span<const size_t>(counts));
  const auto gathered = B::download(all);
  size_t at = 0;
  for (int r = 0; r < n; ++r)
    for (int i = 0; i <= r; ++i) BOOST_TEST(gathered[at++] == static_cast<float>(r));
  // all_to_all_v: one value to every rank, tagged with (from, to)
  std::vector<float> send(static_cast<size_t>(n));
  for (int d = 0; d < n; ++d) send[static_cast<size_t>(d)] = static_cast<float>(100 * me + d);
  const std::vector<size_t> ones(static_cast<size_t>(n), 1);
  B::Vector s = B::upload(send), r;
  B::resize(r, static_cast<size_t>(n));
  comm.all_to_all_v(B::ptr(s), std::span<const size_t>(ones), B::ptr(r), std::span<const size_t>(ones));
  const auto got = B::download(r);
  for (int src = 0; src < n; ++src) BOOST_TEST(got[static_cast<size_t>(src)] == static_cast<float>(100 * src + me));
  std::vector<int64_t> counts_in{me, 7}, counts_out(static_cast<size_t>(2 * n));
  comm.all_gather_host(counts_in.data(), 2, counts_out.data());
  for (int src = 0; src < n; ++src) BOOST_TEST(counts_out[static_cast<size_t>(2 * src)] == src);
  BOOST_TEST(comm.stats().calls >= 4u);
}

BOOST_AUTO_TEST_CASE(split_model_equals_the_single_gpu_model) {
  const auto dir = fixtures_dir() / "model" / "gqa_dense2";
  auto whole = Model::from_pretrained(dir);
  const auto in = dots1::ForwardInput::from_ids({{5, 17, 3, 88, 41, 9, 60}});
  const auto want = whole.forward(in).logits.values;
  const int n = ranks().nccl->size();
  for (int ep = 1; ep <= n; ++ep)
    for (int tp = 1; tp <= n; ++tp) {
      if (n % ep || n % tp) continue;
      auto split = Model::from_pretrained(dir, dots1::Parallel::create(ranks().nccl, {ep, tp}));
      const double e = max_abs_diff(split.forward(in).logits.values, want);
      BOOST_TEST(e <= 1e-5, "ep=" << ep << ",tp=" << tp << " max |diff| " << e);
    }
}

BOOST_AUTO_TEST_CASE(expert_dispatch_and_combine_on_the_gpu) {
  // The expert-parallel path through NCCL on however many ranks there are (one: to itself).
  auto c = dots1::Checkpoint::open(fixtures_dir() / "model" / "groups_moe0").config();
  const auto par = dots1::Parallel::create(ranks().nccl, {ranks().nccl->size(), 1});
  const int64_t E = *c.n_routed_experts, H = c.hidden_size, Im = c.moe_intermediate_size, T = 5;
  const dots1::RandomWeights w(dots1::model_tensors(c), 3);
  dots1::WeightLoader loader(w);
  auto mlp = loader.root().at("model.layers.0.mlp");
  const auto gate = B::matrix(mlp.take("gate.weight", {E, H}, dots1::TensorKind::router));
  const auto bias = B::vector(mlp.take("gate.e_score_correction_bias", {E}, dots1::TensorKind::buffer));
  std::vector<B::ExpertMatrices> experts, mine;
  const auto range = par->experts(E);
  for (int64_t e = 0; e < E; ++e) {
    const double used = 1.0;
    B::ExpertMatrices m{B::matrix(mlp.take_expert(e, "gate_proj", E, H, Im, used)), B::matrix(mlp.take_expert(e, "up_proj", E, H, Im, used)),
                        B::matrix(mlp.take_expert(e, "down_proj", E, H, Im, used))};
    experts.push_back(m);
    if (range.contains(e)) mine.push_back(m);
  }
  dots1::RouterShape router{E, *c.num_experts_per_tok, c.n_group, c.topk_group, c.norm_topk_prob, c.routed_scaling_factor};
  std::vector<float> xs(static_cast<size_t>(T * H));
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = std::sin(0.37f * static_cast<float>(i));
  const B::Vector x = B::upload(xs);
  B::Vector logits, weights, want, got;
  B::IndexVector indices;
  B::linear(gate, nullptr, x, T, logits);
  B::route(logits, bias, T, router, indices, weights);
  B::moe_experts(x, T, H, indices, weights, router.top_k, experts, Im, dots1::kernels::Activation::silu, want);
  dots1::expert_parallel_moe<B>(*par, x, T, H, indices, weights, router.top_k, E, mine, Im, dots1::kernels::Activation::silu, got);
  BOOST_TEST(max_abs_diff(B::download(got), B::download(want)) <= 1e-5);
}
