// examples/instruments.cpp — the research instruments (dots1/instrument/) on the embedded model:
//   1. record which experts fire for which tokens (Recorder),
//   2. ablate an expert and a head and see what changes (Intervention, Chain),
//   3. write your own instrument: derive from InstrumentBase and turn on only the hooks you need.
// Usage: instruments [MODEL_DIR] ["prompt"]     (defaults: examples/models/kjv-tiny, "And God said unto Moses,")
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <dots1/eigen.hpp>
#include <dots1/instrument/intervention.hpp>
#include <dots1/instrument/recorder.hpp>
#include <dots1/tokenizer.hpp>

namespace {

/// A custom instrument: only the routing hook is compiled in; it counts how often each expert is chosen.
struct ExpertCounter : dots1::InstrumentBase {
  static constexpr bool routing = true;
  std::map<std::pair<int64_t, int32_t>, int64_t> counts;  // (layer, expert) -> tokens

  template <class T>
  bool on_routing(int64_t layer, const dots1::RouterShape&, std::span<const T>, std::span<const T>, std::span<int32_t> indices, std::span<T>) {
    for (int32_t e : indices) ++counts[{layer, e}];
    return false;  // observed, not edited
  }
};

int64_t argmax_last(const dots1::HostTensor<float>& logits) {
  const int64_t S = logits.shape[1], V = logits.shape[2];
  const float* row = logits.values.data() + (S - 1) * V;
  return std::max_element(row, row + V) - row;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : DOTS1_SOURCE_DIR "/examples/models/kjv-tiny";
  const std::string text = argc > 2 ? argv[2] : "And God said unto Moses,";
  auto model = dots1::CpuModel::from_pretrained(dir);
  const auto tok = dots1::Tokenizer::from_folder(dir);
  const auto ids32 = tok.encode(text);
  const auto input = dots1::ForwardInput::from_ids({std::vector<int64_t>(ids32.begin(), ids32.end())});
  auto piece = [&](int64_t id) { const auto i = static_cast<int32_t>(id); return tok.decode(std::span<const int32_t>(&i, 1)); };

  // 1. Record: one forward with a Recorder gives, per layer and token, the residual stream, the attention
  //    weights and the routing (logits, sigmoid scores, chosen experts and their weights).
  dots1::Recorder recorder;
  const auto out = model.forward(input, nullptr, recorder);
  const dots1::Recording& r = recorder.last();
  std::printf("prompt: \"%s\" (%lld tokens), next token: \"%s\"\n", text.c_str(), static_cast<long long>(r.seq),
              piece(argmax_last(out.logits)).c_str());
  for (int64_t l : r.moe_layers()) {
    const auto& layer = r.layers[static_cast<size_t>(l)];
    std::printf("layer %lld experts per token:", static_cast<long long>(l));
    for (int64_t s = 0; s < r.seq; ++s) {
      std::printf(" [%s:", piece(r.input_ids[static_cast<size_t>(s)]).c_str());
      for (int64_t k = 0; k < layer.top_k; ++k)
        std::printf(" %d(%.2f)", layer.topk_indices[static_cast<size_t>(s * layer.top_k + k)], layer.topk_weights[static_cast<size_t>(s * layer.top_k + k)]);
      std::printf("]");
    }
    std::printf("\n");
  }

  // 2. Ablate: zero the busiest expert of the first MoE layer and head 0 of layer 0, record the edited model
  //    (Chain runs the Intervention first, so the Recorder sees the edits), and compare.
  ExpertCounter counter;
  model.forward(input, nullptr, counter);
  const int64_t first_moe = r.moe_layers().front();
  int32_t busiest = 0;
  for (const auto& [key, n] : counter.counts)
    if (key.first == first_moe && n > counter.counts[{first_moe, busiest}]) busiest = key.second;
  dots1::Intervention edit;
  edit.zero_expert(first_moe, busiest).zero_head(0, 0);
  dots1::Recorder after;
  const auto ablated = model.forward(input, nullptr, dots1::Chain{edit, after});
  double max_change = 0;
  for (size_t i = 0; i < out.logits.values.size(); ++i)
    max_change = std::max(max_change, static_cast<double>(std::fabs(out.logits.values[i] - ablated.logits.values[i])));
  std::printf("\nablated expert %d of layer %lld (chosen %lld times) and head 0 of layer 0:\n", busiest, static_cast<long long>(first_moe),
              static_cast<long long>(counter.counts[{first_moe, busiest}]));
  std::printf("  next token \"%s\" -> \"%s\", max |logit change| %.3f\n", piece(argmax_last(out.logits)).c_str(),
              piece(argmax_last(ablated.logits)).c_str(), max_change);
  for (int64_t l : r.moe_layers()) {
    const auto& before_l = r.layers[static_cast<size_t>(l)];
    const auto& after_l = after.last().layers[static_cast<size_t>(l)];
    const auto K = static_cast<size_t>(before_l.top_k);
    int64_t changed = 0;  // experts chosen after the ablation that were not chosen before, over all tokens
    for (size_t t = 0; t < before_l.topk_indices.size() / K; ++t)
      for (size_t k = 0; k < K; ++k) {
        const auto first = before_l.topk_indices.begin() + static_cast<std::ptrdiff_t>(t * K);
        changed += std::find(first, first + static_cast<std::ptrdiff_t>(K), after_l.topk_indices[t * K + k]) == first + static_cast<std::ptrdiff_t>(K);
      }
    std::printf("  layer %lld: %lld of %zu top-k choices changed\n", static_cast<long long>(l), static_cast<long long>(changed),
                before_l.topk_indices.size());
  }

  // 3. Steer: add a multiple of the difference between two tokens' residuals to the last token's residual
  //    entering the last layer (edits at any layer and ResidualPoint work the same way).
  const auto& last_layer = r.layers.back();
  const int64_t H = r.hidden, last = r.seq - 1;
  std::vector<float> direction(static_cast<size_t>(H));
  for (int64_t i = 0; i < H; ++i)
    direction[static_cast<size_t>(i)] = 2.0f * (last_layer.resid_pre[static_cast<size_t>(1 * H + i)] - last_layer.resid_pre[static_cast<size_t>(last * H + i)]);
  dots1::Intervention steer;
  steer.add_to_residual(last_layer.layer, dots1::ResidualPoint::layer_input, direction, dots1::Tokens::at(0, last));
  const auto steered = model.forward(input, nullptr, steer);
  std::printf("\nsteered the last token's residual toward \"%s\": next token \"%s\" -> \"%s\"\n", piece(r.input_ids[1]).c_str(),
              piece(argmax_last(out.logits)).c_str(), piece(argmax_last(steered.logits)).c_str());
  return 0;
}
