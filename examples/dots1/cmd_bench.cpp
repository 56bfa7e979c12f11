// dots1 bench (--model DIR | --config FILE [--seed N]) [--dtype auto|f32|bf16] [--prompt 512] [--gen 128]
//             [--threads N] [--context 0,512,2048] [--repeat R] [--ubatch 512] [--probe] [--json]
//
// CPU speed of the Eigen backend on one model: per run and as min/median/max over the runs,
//   prompt tokens/s   a prefill of --prompt random tokens into an empty cache (logits for the last position
//                     only, as generate() asks), with its GFLOP/s and the fraction of the cores' FMA peak;
//   decode tokens/s   --gen one-token steps after a prefill of C random tokens (untimed) for each C of
//                     --context, with the GB/s actually needed (weights read for one token: the embedding
//                     row, attention, the routed experts used, shared experts, LM head; plus the K/V rows at
//                     that context) and its fraction of the read bandwidth, and GFLOP/s;
//   peak resident memory (VmHWM) against weights + KV cache.
// With --config alone the weights are random (RandomWeights, from --seed), generated in memory in the
// chosen dtype. --probe measures the machine's read bandwidth, FMA peak and the kernel's SGEMM rate first,
// in this process, so that every fraction comes from one run; without it the fractions use --limit-gbs /
// --limit-gflops (default: the figures of shared/bench/README.md). `dots1 bench --probe` alone only probes.
// Decode and prompt tokens are random (seeded): a fixed prompt would keep hitting the same experts.
// --parallel ep=N|tp=N|ep=a,tp=b under `mpirun -np N`: every rank loads only its shard (random weights: only
// its shard is generated) and runs the same workload; rank 0 reports, with the time spent in communication
// (the collectives' wall time, including waiting for the slowest rank) separately from compute, and every
// rank's weight bytes and resident memory.
// --device cuda runs the prompt and decode measurements on the GPU model instead (see bench_gpu), reporting
// the fraction of --hbm-gbs the decode's weight and KV reads achieve.
// Prefills longer than --ubatch tokens run as several forwards through the cache (as inference engines do),
// which bounds the activations' memory. The KV cache is preallocated for each run (KvCache::reserve).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>

#include <omp.h>

#include <dots1/bench/probe.hpp>
#include <dots1/bench/stats.hpp>
#include <dots1/bench/traffic.hpp>
#include <dots1/io/memory_plan.hpp>


#include "commands.hpp"
#include "tool_model.hpp"
#include "parallel_options.hpp"
#include "tool_support.hpp"

namespace {

using dots1::bench::Summary;

struct BenchOptions {
  std::string model, config, dtype = "auto", contexts = "0";
  uint64_t seed = 1;
  int64_t prompt = 512, gen = 128, ubatch = 512;
  int threads = 0, repeat = 3;
  bool json = false, probe = false;
  double limit_gbs = 27.0, limit_gflops = 157.0;  // shared/bench/README.md (2-vCPU EPYC Zen 3)
  dots1_cli::ParallelOptions parallel;
  std::string device = "cpu";
  double hbm_gbs = 4800.0;  // H200
};

std::vector<int64_t> parse_contexts(const std::string& s) { return dots1_cli::parse_int_list(s, "--context", {.min = 0}); }

dots1::WeightFormat parse_format(const std::string& d) {
  if (d == "auto") return dots1::WeightFormat::as_stored;
  if (d == "f32") return dots1::WeightFormat::f32;
  if (d == "bf16") return dots1::WeightFormat::bf16;
  throw dots1::InputError("--dtype: expected auto, f32 or bf16, got '" + d + "'");
}

/// Bytes per element each tensor is held in under `format` (the backends hold F32 or BF16; F16 and F64 are
/// widened or narrowed to float32).
dots1::bench::ElementBytes element_bytes_for(dots1::WeightFormat format) {
  return [format](const dots1::TensorSpec& t) { return dots1::held_dtype(t.kind, format, t.stored) == dots1::DType::BF16 ? 2.0 : 4.0; };
}

std::vector<int64_t> random_tokens(std::mt19937_64& rng, int64_t n, int64_t vocab) {
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  std::vector<int64_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = pick(rng);
  return ids;
}

/// Wall and CPU (all threads) seconds of one measured phase, and the part of the wall time spent in
/// collectives (0 for an unsplit model), with the bytes this rank sent.
struct Timing {
  double wall = 0, cpu = 0, comm = 0, comm_bytes = 0;
};

/// Adds the communication of the phase since `before` to `t`.
Timing with_comm(Timing t, const dots1::Parallel& par, const dots1::CommStats& before) {
  t.comm = par.stats().seconds - before.seconds;
  t.comm_bytes = static_cast<double>(par.stats().bytes_sent - before.bytes_sent);
  return t;
}

/// Prefill of `ids` into the model's bench cache in forwards of at most `ubatch` tokens, logits for the last
/// position only (as generate()'s prefill).
Timing prefill(dots1_cli::ToolModel& model, const std::vector<int64_t>& ids, int64_t ubatch) {
  const dots1::CommStats comm0 = model.parallel().stats();
  const double c0 = dots1::bench::process_cpu_seconds();
  const double wall = model.prefill(ids, ubatch);
  return with_comm({wall, dots1::bench::process_cpu_seconds() - c0}, model.parallel(), comm0);
}

/// `steps` one-token forwards through the bench cache (random tokens), each with its greedy token choice.
Timing decode(dots1_cli::ToolModel& model, std::mt19937_64& rng, int64_t steps) {
  const auto ids = random_tokens(rng, steps, model.config().vocab_size);
  const dots1::CommStats comm0 = model.parallel().stats();
  const double c0 = dots1::bench::process_cpu_seconds();
  const double wall = model.decode(ids);
  return with_comm({wall, dots1::bench::process_cpu_seconds() - c0}, model.parallel(), comm0);
}

nlohmann::json summary_json(const Summary& s) { return {{"min", s.min}, {"median", s.median}, {"max", s.max}, {"values", s.values}}; }

std::string gb(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f GB", bytes / 1e9);
  return b;
}

void print_row(const char* label, const Summary& s, const char* fmt_unit) {
  std::printf("  %-34s %10.2f %10.2f %10.2f  %s\n", label, s.min, s.median, s.max, fmt_unit);
}

Summary scaled(const Summary& s, double k) {
  std::vector<double> v;
  for (double x : s.values) v.push_back(x * k);
  return dots1::bench::summarize(v);
}

/// What a bench run measures, from --model or --config and --dtype: the checkpoint (when given), its
/// config, the traffic model of its weights in the chosen format, and the JSON "config"/"weights" entries.
struct BenchModelSpec {
  std::unique_ptr<dots1::Checkpoint> checkpoint;  // null: random weights for `config`
  dots1::Dots1Config config;
  dots1::ModelDescription description;  // the whole model (stored dtypes from the checkpoint)
  std::unique_ptr<dots1::bench::TrafficModel> traffic;
  const char* dtype_name = "f32";
  std::string config_path;
  nlohmann::json weights;

  static BenchModelSpec from(const BenchOptions& o, dots1::WeightFormat format) {
    BenchModelSpec m;
    if (!o.model.empty()) {
      m.checkpoint = std::make_unique<dots1::Checkpoint>(dots1::Checkpoint::open(o.model));
      m.config = m.checkpoint->config();
      m.config_path = (std::filesystem::path(o.model) / "config.json").string();
    } else {
      m.config = dots1::Dots1Config::load(o.config);
      m.config_path = o.config;
    }
    m.description = dots1::describe_model(m.config, dots1::Parallel::single(), m.checkpoint.get());
    m.traffic = std::make_unique<dots1::bench::TrafficModel>(m.config, m.description, element_bytes_for(format));
    m.dtype_name = o.dtype == "bf16" ? "bf16" : o.dtype == "f32" ? "f32" : (m.checkpoint ? "as stored" : "f32");
    m.weights = {{"source", m.checkpoint ? "checkpoint" : "random"},
                 {"seed", o.seed},
                 {"dtype", m.dtype_name},
                 {"resident_bytes", m.traffic->resident_weight_bytes()},
                 {"bytes_read_per_decoded_token", m.traffic->weight_bytes_per_token()},
                 {"kv_bytes_per_cached_token", m.traffic->kv_bytes_per_token()}};
    return m;
  }
};

void bench_on_this_rank(const BenchOptions& o, dots1::WeightFormat format, const std::vector<int64_t>& contexts, int threads,
                        const dots1_cli::ModelRequest& split_request);

/// What the tool loads for this bench: the checkpoint, or random weights for the config (generated on
/// `threads` threads), in `format`; no progress bar.
dots1_cli::ModelRequest model_request(const BenchOptions& o, const BenchModelSpec& spec, dots1::WeightFormat format, int threads) {
  dots1_cli::ModelRequest r;
  if (spec.checkpoint) r.dir = o.model;
  r.config = spec.config;
  r.seed = o.seed;
  r.threads = threads;
  r.format = format;
  r.progress = false;
  return r;
}

/// The workload against the model, before anything is generated, loaded or measured: every prefill and
/// decode run must fit the model's context, and on the CPU the largest KV cache and (for --config) the
/// random weights must fit the memory (base/memory_check.hpp), so that a huge --prompt, --context or config
/// fails at once with what it needs instead of running out of memory or time.
void check_workload(const BenchOptions& o, const BenchModelSpec& spec, const std::vector<int64_t>& contexts, dots1::WeightFormat format, bool host) {
  const auto& c = spec.config;
  int64_t longest = o.prompt;
  dots1_cli::check_context_length(c, o.prompt, "--prompt " + std::to_string(o.prompt));
  for (int64_t C : contexts) {
    if (o.gen <= 0) break;
    if (C > c.max_position_embeddings - o.gen)  // C + gen without overflow
      dots1_cli::check_context_length(c, C > INT64_MAX - o.gen ? INT64_MAX : C + o.gen,
                                      "--context " + std::to_string(C) + " plus --gen " + std::to_string(o.gen));
    longest = std::max(longest, C + o.gen);
  }
  if (!host) return;
  const double kv = spec.traffic->kv_bytes_per_token() * static_cast<double>(longest);
  dots1::check_allocation(kv >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(kv), "bench: the KV cache for " + std::to_string(longest) + " tokens");
  if (!spec.checkpoint)
    dots1::check_memory(dots1::random_weights_memory(spec.description.tensors, format), "bench: random weights for " + spec.config_path);
}

/// --device cuda: the same workload on the GPU model (gpu_model.hpp, one nvcc-compiled translation unit):
/// prompt and decode tokens/s, and the bytes a decoded token must read (weights used + KV rows, as for the
/// CPU) per second against the GPU's memory bandwidth (--hbm-gbs; H200: 4800 GB/s). Every timed phase
/// ends with a device synchronisation; each decode step chooses its token on the device, as generate() does.
void bench_gpu(const BenchOptions& o, dots1::WeightFormat format, const std::vector<int64_t>& contexts) {
  namespace bench = dots1::bench;
  if (!o.parallel.spec.empty()) throw dots1::InputError("--device cuda does not combine with --parallel");
  if (o.model.empty() && o.config.empty()) throw dots1::InputError("bench --device cuda: give --model DIR or --config FILE");
  const BenchModelSpec spec = BenchModelSpec::from(o, format);
  check_workload(o, spec, contexts, format, /*host=*/false);
  const auto& ck = spec.checkpoint;
  const auto& config = spec.config;
  const bench::TrafficModel& traffic = *spec.traffic;
  const int64_t V = config.vocab_size;
  const char* dtype_name = spec.dtype_name;
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  nlohmann::json j;
  j["device"] = "cuda";
  j["config"] = spec.config_path;
  j["weights"] = spec.weights;
  j["workload"] = {{"prompt", o.prompt}, {"gen", o.gen}, {"contexts", contexts}, {"repeat", o.repeat}, {"batch", 1}, {"ubatch", o.ubatch}};
  j["limits"] = {{"hbm_gbs", o.hbm_gbs}};
  const double t_load = bench::seconds_now();
  auto model = dots1_cli::load_model("cuda", model_request(o, spec, format, threads));
  j["load_seconds"] = bench::seconds_now() - t_load;
  j["gpu"] = model->device();
  j["device_weight_bytes"] = model->weight_bytes();
  if (!o.json) {
    std::printf("dots1 bench --device cuda: %s\n", model->device().c_str());
    std::printf("model: %s, weights %s (%s)%s: %s on the device, loaded in %.1f s; %.1f MB read per decoded token + %.1f KB of KV per cached token\n",
                j["config"].get<std::string>().c_str(), ck ? "from the checkpoint" : "random", dtype_name, ck ? "" : (", seed " + std::to_string(o.seed)).c_str(),
                gb(static_cast<double>(model->weight_bytes())).c_str(), j["load_seconds"].get<double>(), traffic.weight_bytes_per_token() / 1e6,
                traffic.kv_bytes_per_token() / 1e3);
    std::printf("limit: %.0f GB/s memory bandwidth (--hbm-gbs)\n", o.hbm_gbs);
    std::fflush(stdout);
  }
  std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + 12345);
  {  // warm-up: cuBLAS handles, kernels' first launch, scratch buffers
    model->new_cache(std::max<int64_t>(o.prompt, 16) + 4);
    model->prefill(random_tokens(rng, std::min<int64_t>(std::max<int64_t>(o.prompt, 16), o.ubatch), V), o.ubatch);
    model->decode(random_tokens(rng, 4, V));
  }
  std::vector<double> prompt_s;
  std::vector<std::vector<double>> decode_s(contexts.size());
  for (int r = 0; r < o.repeat; ++r) {
    if (o.prompt > 0) {
      model->new_cache(o.prompt);
      const double t = model->prefill(random_tokens(rng, o.prompt, V), o.ubatch);
      prompt_s.push_back(t);
      if (!o.json)
        std::printf("run %d: prompt %lld: %.4f s, %.1f tok/s, %.1f TFLOP/s\n", r + 1, (long long)o.prompt, t, static_cast<double>(o.prompt) / t,
                    traffic.prefill_flops(o.prompt) / t / 1e12);
    }
    for (size_t ci = 0; ci < contexts.size() && o.gen > 0; ++ci) {
      const int64_t C = contexts[ci];
      model->new_cache(C + o.gen);
      if (C > 0) model->prefill(random_tokens(rng, C, V), o.ubatch);
      const double t = model->decode(random_tokens(rng, o.gen, V));
      decode_s[ci].push_back(t);
      if (!o.json)
        std::printf("run %d: decode %lld at context %lld: %.4f s, %.1f tok/s, %.0f GB/s = %.1f%% of %.0f GB/s\n", r + 1, (long long)o.gen, (long long)C, t,
                    static_cast<double>(o.gen) / t, traffic.decode_bytes(C, o.gen) / t / 1e9, 100 * traffic.decode_bytes(C, o.gen) / t / 1e9 / o.hbm_gbs,
                    o.hbm_gbs);
      if (!o.json) std::fflush(stdout);
    }
  }
  auto rates = [](const std::vector<double>& secs, double amount) {
    std::vector<double> v;
    for (double x : secs) v.push_back(amount / x);
    return bench::summarize(v);
  };
  if (!o.json) std::printf("summary over %d run(s):                    min     median        max\n", o.repeat);
  if (!prompt_s.empty()) {
    const double flops = traffic.prefill_flops(o.prompt);
    const Summary tps = rates(prompt_s, static_cast<double>(o.prompt)), tflops = rates(prompt_s, flops / 1e12);
    j["prompt"] = {{"tokens", o.prompt}, {"seconds", prompt_s}, {"tokens_per_s", summary_json(tps)}, {"flops", flops}, {"tflops", summary_json(tflops)}};
    if (!o.json) {
      const std::string label = "prompt " + std::to_string(o.prompt) + " tokens/s";
      print_row(label.c_str(), tps, "tok/s");
      print_row("  TFLOP/s", tflops, "TFLOP/s");
    }
  }
  j["decode"] = nlohmann::json::array();
  for (size_t ci = 0; ci < contexts.size(); ++ci) {
    if (decode_s[ci].empty()) continue;
    const int64_t C = contexts[ci];
    const double bytes = traffic.decode_bytes(C, o.gen);
    const Summary tps = rates(decode_s[ci], static_cast<double>(o.gen)), gbs = rates(decode_s[ci], bytes / 1e9);
    const Summary frac = scaled(gbs, 1.0 / o.hbm_gbs);
    j["decode"].push_back({{"context", C},
                           {"tokens", o.gen},
                           {"seconds", decode_s[ci]},
                           {"tokens_per_s", summary_json(tps)},
                           {"bytes_per_token", bytes / static_cast<double>(o.gen)},
                           {"gbs", summary_json(gbs)},
                           {"fraction_of_hbm_bandwidth", summary_json(frac)},
                           {"limit_tokens_per_s", o.hbm_gbs * 1e9 / (bytes / static_cast<double>(o.gen))}});
    if (!o.json) {
      const std::string label = "decode " + std::to_string(o.gen) + " @ context " + std::to_string(C) + " tok/s";
      print_row(label.c_str(), tps, "tok/s");
      print_row("  GB/s", gbs, "GB/s");
      print_row("  % of HBM bandwidth", scaled(frac, 100), "%");
      std::printf("  %-34s %10.1f tok/s at %.0f GB/s (%.1f MB per token)\n", "  limit", o.hbm_gbs * 1e9 / (bytes / static_cast<double>(o.gen)), o.hbm_gbs,
                  bytes / static_cast<double>(o.gen) / 1e6);
    }
  }
  if (o.json) std::printf("%s\n", j.dump(2).c_str());
}

void run_bench(const BenchOptions& o) {
  // the inputs first, before anything is measured or printed
  const dots1::WeightFormat format = parse_format(o.dtype);
  const auto contexts = parse_contexts(o.contexts);
  if (o.device == "cuda") return bench_gpu(o, format, contexts);
  if (o.model.empty() && o.config.empty() && !o.probe) throw dots1::InputError("bench: give --model DIR or --config FILE (or --probe alone)");
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  omp_set_num_threads(threads);
  // split across the ranks of an MPI run: every rank runs the workload, rank 0 reports
  dots1_cli::ModelRequest split_request;
  if (!o.model.empty() || !o.config.empty())
    o.parallel.request(split_request, o.model.empty() ? dots1::Dots1Config::load(o.config) : dots1::Checkpoint::open(o.model).config());
  dots1_cli::on_every_rank(split_request, [&] { bench_on_this_rank(o, format, contexts, threads, split_request); });
}

void bench_on_this_rank(const BenchOptions& o, dots1::WeightFormat format, const std::vector<int64_t>& contexts, int threads,
                        const dots1_cli::ModelRequest& split_request) {
  namespace bench = dots1::bench;
  const bool root = !split_request.world || split_request.world->rank() == 0, split = split_request.plan.has_value();
  const bool text = !o.json && root;
  nlohmann::json j;
  j["threads"] = threads;
  j["load_average_start"] = bench::load_average();
  if (text) std::printf("dots1 bench: %d thread(s), load average %.2f at start\n", threads, bench::load_average());

  double limit_gbs = o.limit_gbs, limit_gflops = o.limit_gflops;
  std::string limit_source = "reference figures (--limit-gbs/--limit-gflops, default shared/bench/README.md), not measured in this run";
  if (o.probe) {
    if (text) std::fflush(stdout);
    const auto p = bench::probe_machine(threads);
    limit_gbs = p.read_gbs.median;
    limit_gflops = p.fma_gflops.median;
    limit_source = "measured by --probe in this run (medians)";
    j["probe"] = {{"threads", p.threads},
                  {"buffer_bytes", p.buffer_bytes},
                  {"read_gbs", summary_json(p.read_gbs)},
                  {"fma_peak_gflops", summary_json(p.fma_gflops)},
                  {"sgemm_n", p.gemm_n},
                  {"sgemm_gflops", summary_json(p.sgemm_gflops)},
                  {"load_average", bench::load_average()}};
    if (text) {
      std::printf("probe (%d threads, load average %.2f):             min     median        max\n", threads, bench::load_average());
      print_row("read bandwidth (512 MiB buffer)", p.read_gbs, "GB/s");
      print_row("FMA peak (registers only)", p.fma_gflops, "GFLOP/s");
      print_row("SGEMM 1024^3 (backend kernel)", p.sgemm_gflops, "GFLOP/s");
    }
  }
  j["limits"] = {{"read_gbs", limit_gbs}, {"compute_gflops", limit_gflops}, {"source", limit_source}};
  if (o.model.empty() && o.config.empty()) {
    j["load_average_end"] = bench::load_average();
    if (o.json && root) std::printf("%s\n", j.dump(2).c_str());
    return;
  }

  // ---- model
  const BenchModelSpec spec = BenchModelSpec::from(o, format);
  check_workload(o, spec, contexts, format, /*host=*/true);
  const auto& ck = spec.checkpoint;
  const auto& config = spec.config;
  const bench::TrafficModel& traffic = *spec.traffic;
  const int64_t V = config.vocab_size;
  const char* dtype_name = spec.dtype_name;
  j["model"] = o.model.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.model);
  j["config"] = spec.config_path;
  j["weights"] = spec.weights;
  j["workload"] = {{"prompt", o.prompt}, {"gen", o.gen}, {"contexts", contexts}, {"repeat", o.repeat}, {"batch", 1}, {"ubatch", o.ubatch}};
  if (text) {
    std::printf("model: %s, weights %s (%s)%s, %s resident; %.1f MB read per decoded token + %.1f KB of KV per cached token\n",
                j["config"].get<std::string>().c_str(), ck ? "from the checkpoint" : "random", dtype_name,
                ck ? "" : (", seed " + std::to_string(o.seed)).c_str(), gb(traffic.resident_weight_bytes()).c_str(),
                traffic.weight_bytes_per_token() / 1e6, traffic.kv_bytes_per_token() / 1e3);
    std::printf("limits: %.1f GB/s read, %.1f GFLOP/s compute: %s\n", limit_gbs, limit_gflops, limit_source.c_str());
    std::fflush(stdout);
  }
  const double t_load = bench::seconds_now();
  dots1_cli::ModelRequest request = model_request(o, spec, format, threads);
  request.plan = split_request.plan;
  request.world = split_request.world;
  const auto model = dots1_cli::load_model("cpu", request);  // a split model reads (or generates) only this rank's shard
  const dots1::Parallel& par = model->parallel();
  const double load_s = bench::seconds_now() - t_load;
  j["load_seconds"] = load_s;
  if (text) std::printf("loaded in %.1f s\n", load_s);
  if (split) {
    j["parallel"] = {{"ranks", par.size()}, {"plan", par.plan().str()}, {"communicator", par.world().describe()}};
    if (text)
      std::printf("split over %d ranks (%s, %s), %d thread(s) per rank: weights per rank %s (the whole model: %s)\n", par.size(),
                  par.plan().str().c_str(), par.world().describe().c_str(), threads, gb(static_cast<double>(model->weight_bytes())).c_str(),
                  gb(traffic.resident_weight_bytes()).c_str());
  }

  // ---- warm-up (first touch of every page on the decode path, OpenMP pool start)
  std::mt19937_64 rng(o.seed * 0x9E3779B97F4A7C15ull + 12345);
  {
    model->new_cache(std::min<int64_t>(16, std::max<int64_t>(o.prompt, 1)) + 4);
    prefill(*model, random_tokens(rng, std::min<int64_t>(16, std::max<int64_t>(o.prompt, 1)), V), o.ubatch);
    decode(*model, rng, 4);
  }

  // ---- runs
  std::vector<double> prompt_s, prompt_cpu, prompt_comm;
  std::vector<std::vector<double>> decode_s(contexts.size()), decode_cpu(contexts.size()), decode_comm(contexts.size()),
      decode_comm_bytes(contexts.size());
  auto comm_note = [&](const Timing& tm) {
    if (!split) return std::string();
    char b[128];
    std::snprintf(b, sizeof b, "; communication %.3f s = %.1f%%, compute %.3f s", tm.comm, 100 * tm.comm / tm.wall, tm.wall - tm.comm);
    return std::string(b);
  };
  int64_t max_cache_tokens = 0;
  for (int r = 0; r < o.repeat; ++r) {
    if (o.prompt > 0) {
      model->new_cache(o.prompt);
      max_cache_tokens = std::max(max_cache_tokens, o.prompt);
      const Timing tm = prefill(*model, random_tokens(rng, o.prompt, V), o.ubatch);
      const double t = tm.wall;
      prompt_s.push_back(t);
      prompt_cpu.push_back(tm.cpu);
      prompt_comm.push_back(tm.comm);
      if (text)
        std::printf("run %d: prompt %lld: %.3f s, %.1f tok/s, %.1f GFLOP/s (CPU %.2f s = %.2f cores busy; load %.2f%s)\n", r + 1, (long long)o.prompt, t,
                    static_cast<double>(o.prompt) / t, traffic.prefill_flops(o.prompt) / t / 1e9, tm.cpu, tm.cpu / t, bench::load_average(),
                    comm_note(tm).c_str());
    }
    for (size_t ci = 0; ci < contexts.size(); ++ci) {
      const int64_t C = contexts[ci];
      if (o.gen <= 0) continue;
      model->new_cache(C + o.gen);
      max_cache_tokens = std::max(max_cache_tokens, C + o.gen);
      if (C > 0) prefill(*model, random_tokens(rng, C, V), o.ubatch);
      const Timing tm = decode(*model, rng, o.gen);
      const double t = tm.wall;
      decode_s[ci].push_back(t);
      decode_cpu[ci].push_back(tm.cpu);
      decode_comm[ci].push_back(tm.comm);
      decode_comm_bytes[ci].push_back(tm.comm_bytes);
      if (text)
        std::printf("run %d: decode %lld at context %lld: %.3f s, %.2f tok/s, %.1f GB/s (CPU %.2f s = %.2f cores busy; load %.2f%s)\n", r + 1,
                    (long long)o.gen, (long long)C, t, static_cast<double>(o.gen) / t, traffic.decode_bytes(C, o.gen) / t / 1e9, tm.cpu, tm.cpu / t,
                    bench::load_average(), comm_note(tm).c_str());
      if (text) std::fflush(stdout);
    }
  }

  // ---- summary
  auto rates = [](const std::vector<double>& secs, double amount) {
    std::vector<double> v;
    for (double s : secs) v.push_back(amount / s);
    return bench::summarize(v);
  };
  if (text) std::printf("summary over %d run(s):                    min     median        max\n", o.repeat);
  if (!prompt_s.empty()) {
    const double flops = traffic.prefill_flops(o.prompt);
    const Summary tps = rates(prompt_s, static_cast<double>(o.prompt)), gflops = rates(prompt_s, flops / 1e9);
    const Summary frac = scaled(gflops, 1.0 / limit_gflops);
    j["prompt"] = {{"tokens", o.prompt},
                   {"seconds", prompt_s},
                   {"cpu_seconds", prompt_cpu},
                   {"tokens_per_s", summary_json(tps)},
                   {"flops", flops},
                   {"gflops", summary_json(gflops)},
                   {"fraction_of_compute_limit", summary_json(frac)},
                   {"limit_tokens_per_s", limit_gflops * 1e9 / (flops / static_cast<double>(o.prompt))}};
    if (text) {
      const std::string label = "prompt " + std::to_string(o.prompt) + " tokens/s";
      print_row(label.c_str(), tps, "tok/s");
      print_row("  GFLOP/s", gflops, "GFLOP/s");
      print_row("  % of compute limit", scaled(frac, 100), "%");
      std::printf("  %-34s %10.1f tok/s at %.1f GFLOP/s (%.1f MFLOP per token)\n", "  limit", limit_gflops * 1e9 / (flops / static_cast<double>(o.prompt)),
                  limit_gflops, flops / static_cast<double>(o.prompt) / 1e6);
    }
    if (split) {
      std::vector<double> share;
      for (size_t r = 0; r < prompt_s.size(); ++r) share.push_back(prompt_comm[r] / prompt_s[r]);
      j["prompt"]["communication_seconds"] = prompt_comm;
      j["prompt"]["communication_share"] = summary_json(bench::summarize(share));
      if (text) print_row("  % of time in communication", scaled(bench::summarize(share), 100), "%");
    }
  }
  j["decode"] = nlohmann::json::array();
  for (size_t ci = 0; ci < contexts.size(); ++ci) {
    if (decode_s[ci].empty()) continue;
    const int64_t C = contexts[ci];
    const double bytes = traffic.decode_bytes(C, o.gen), flops = traffic.decode_flops(C, o.gen);
    const double kv = bytes - traffic.weight_bytes_per_token() * static_cast<double>(o.gen);
    const Summary tps = rates(decode_s[ci], static_cast<double>(o.gen)), gbs = rates(decode_s[ci], bytes / 1e9),
                  gflops = rates(decode_s[ci], flops / 1e9);
    const Summary frac = scaled(gbs, 1.0 / limit_gbs);
    const double per_token = bytes / static_cast<double>(o.gen);
    j["decode"].push_back({{"context", C},
                           {"tokens", o.gen},
                           {"seconds", decode_s[ci]},
                           {"cpu_seconds", decode_cpu[ci]},
                           {"tokens_per_s", summary_json(tps)},
                           {"bytes_per_token", per_token},
                           {"kv_bytes_per_token", kv / static_cast<double>(o.gen)},
                           {"gbs", summary_json(gbs)},
                           {"fraction_of_bandwidth_limit", summary_json(frac)},
                           {"gflops", summary_json(gflops)},
                           {"limit_tokens_per_s", limit_gbs * 1e9 / per_token}});
    if (text) {
      const std::string label = "decode " + std::to_string(o.gen) + " @ context " + std::to_string(C) + " tok/s";
      print_row(label.c_str(), tps, "tok/s");
      print_row("  GB/s", gbs, "GB/s");
      print_row("  % of bandwidth limit", scaled(frac, 100), "%");
      print_row("  GFLOP/s", gflops, "GFLOP/s");
      std::printf("  %-34s %10.1f tok/s at %.1f GB/s (%.1f MB per token, of which KV %.1f MB)\n", "  limit", limit_gbs * 1e9 / per_token, limit_gbs,
                  per_token / 1e6, kv / static_cast<double>(o.gen) / 1e6);
    }
    if (split) {  // the collectives' share of the decode time, and the bytes rank 0 sent per token
      std::vector<double> share;
      for (size_t r = 0; r < decode_s[ci].size(); ++r) share.push_back(decode_comm[ci][r] / decode_s[ci][r]);
      const double sent = *std::max_element(decode_comm_bytes[ci].begin(), decode_comm_bytes[ci].end()) / static_cast<double>(o.gen);
      j["decode"].back()["communication_seconds"] = decode_comm[ci];
      j["decode"].back()["communication_share"] = summary_json(bench::summarize(share));
      j["decode"].back()["bytes_sent_per_token_rank0"] = sent;
      if (text) {
        print_row("  % of time in communication", scaled(bench::summarize(share), 100), "%");
        std::printf("  %-34s %10.1f KB per token sent by rank 0\n", "  communication", sent / 1e3);
      }
    }
  }
  const double peak = static_cast<double>(bench::peak_resident_bytes());
  const double kv_bytes = traffic.kv_bytes_per_token() * static_cast<double>(max_cache_tokens);
  const double budget = traffic.resident_weight_bytes() + kv_bytes;
  j["memory"] = {{"peak_resident_bytes", peak},
                 {"weights_bytes", traffic.resident_weight_bytes()},
                 {"largest_kv_cache_bytes", kv_bytes},
                 {"peak_over_weights_plus_kv", peak / budget}};
  j["load_average_end"] = bench::load_average();
  if (split) {  // every rank's weights and memory
    std::vector<int64_t> mine{static_cast<int64_t>(model->weight_bytes()), bench::proc_status_bytes("VmRSS"), bench::proc_status_bytes("RssAnon"),
                              bench::proc_status_bytes("RssFile"), bench::peak_resident_bytes()};
    std::vector<int64_t> all(mine.size() * static_cast<size_t>(par.size()));
    par.world().all_gather_host(mine.data(), mine.size(), all.data());
    j["memory"]["ranks"] = nlohmann::json::array();
    if (text) std::printf("per rank:  weights            VmRSS   (RssAnon, RssFile)       VmHWM   weights / whole model\n");
    for (int r = 0; r < par.size(); ++r) {
      const int64_t* m = all.data() + static_cast<size_t>(r) * mine.size();
      j["memory"]["ranks"].push_back({{"rank", r}, {"weight_bytes", m[0]}, {"vm_rss", m[1]}, {"rss_anon", m[2]}, {"rss_file", m[3]}, {"vm_hwm", m[4]}});
      if (text)
        std::printf("  rank %d: %s  %s  (%s, %s)  %s   %.3f\n", r, gb(static_cast<double>(m[0])).c_str(), gb(static_cast<double>(m[1])).c_str(),
                    gb(static_cast<double>(m[2])).c_str(), gb(static_cast<double>(m[3])).c_str(), gb(static_cast<double>(m[4])).c_str(),
                    static_cast<double>(m[0]) / traffic.resident_weight_bytes());
    }
  }
  if (text) {
    std::printf("peak memory: %s (VmHWM) = %.3f x (weights %s + largest KV cache %s)\n", gb(peak).c_str(), peak / budget,
                gb(traffic.resident_weight_bytes()).c_str(), gb(kv_bytes).c_str());
    std::printf("load average at end: %.2f\n", bench::load_average());
  } else if (root) {
    std::printf("%s\n", j.dump(2).c_str());
  }
}

/// A limit the fractions are divided by: a finite number > 0 (0 or a negative limit gives meaningless fractions).
const CLI::Validator positive_finite(
    [](std::string& text) {
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (end == text.c_str() || *end != '\0' || !std::isfinite(v) || !(v > 0)) return "'" + text + "' is not a finite number > 0";
      return std::string();
    },
    "POSITIVE");

void add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench", "CPU speed: prompt and decode tokens/s, GB/s, GFLOP/s and peak memory against the machine's limits");
  auto* m = cmd->add_option("--model", o->model, "HF checkpoint folder");
  auto* c = cmd->add_option("--config", o->config, "a config.json: random weights generated in memory")->excludes(m);
  dots1_cli::add_integer_option(cmd, "--seed", o->seed, "seed of the random weights and tokens");
  cmd->add_option("--dtype", o->dtype, "weight matrices: auto (as stored; random weights are f32), f32 or bf16")->capture_default_str();
  dots1_cli::add_integer_option(cmd, "--prompt", o->prompt, "prompt tokens of the prefill run (0: none)", {.min = 0});
  dots1_cli::add_integer_option(cmd, "--gen", o->gen, "decoded tokens per run (0: none)", {.min = 0});
  dots1_cli::add_integer_option(cmd, "--ubatch", o->ubatch, "longest forward of a prefill: longer prompts and contexts go in chunks of this many tokens",
                                {.min = 1});
  dots1_cli::add_integer_option(cmd, "--threads", o->threads, "threads (default: OMP_NUM_THREADS, else all cores)", {.min = 1, .max = 65536});
  cmd->add_option("--context", o->contexts, "comma-separated cached tokens before the decode runs, e.g. 0,512,2048")->capture_default_str();
  dots1_cli::add_integer_option(cmd, "--repeat", o->repeat, "runs of each measurement", {.min = 1, .max = 1000000});
  cmd->add_flag("--probe", o->probe, "measure read bandwidth, FMA peak and SGEMM rate first and take the fractions against them");
  cmd->add_option("--limit-gbs", o->limit_gbs, "read bandwidth limit without --probe (GB/s)")->capture_default_str()->check(positive_finite);
  cmd->add_option("--limit-gflops", o->limit_gflops, "compute limit without --probe (GFLOP/s)")->capture_default_str()->check(positive_finite);
  cmd->add_flag("--json", o->json, "print one JSON object instead of the text report");
  o->parallel.add_to(cmd);
  cmd->add_option("--device", o->device, "cpu, or cuda (the GPU model; needs a dots1 built with CUDA)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--hbm-gbs", o->hbm_gbs, "GPU memory bandwidth for --device cuda's fractions (GB/s; H200 4800, H100 SXM 3350)")
      ->capture_default_str()
      ->check(positive_finite);
  (void)c;
  cmd->callback([o] { run_bench(*o); });
}

dots1_cli::RegisterCommand registered(40, add_bench_command);

}  // namespace
