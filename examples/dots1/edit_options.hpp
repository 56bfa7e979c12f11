// The model edits `dots1 trace` and `dots1 generate` take (--zero-head, --zero-expert, --forbid-expert,
// --force-experts), turned into one dots1::Intervention (dots1/instrument/intervention.hpp).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include <dots1/error.hpp>
#include <dots1/instrument/intervention.hpp>

#include "tool_support.hpp"

namespace dots1_cli {

struct EditOptions {
  std::vector<std::string> zero_heads, zero_experts, forbid_experts, force_experts;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--zero-head", zero_heads, "ablate head H of layer L (its output before o_proj is 0): L:H, repeatable");
    cmd->add_option("--zero-expert", zero_experts, "ablate routed expert E of layer L (weight 0 where chosen): L:E, repeatable");
    cmd->add_option("--forbid-expert", forbid_experts, "never select routed expert E in layer L: L:E, repeatable");
    cmd->add_option("--force-experts", force_experts, "route every token of layer L to exactly these experts: L:E1,E2,..., repeatable");
  }

  bool empty() const { return zero_heads.empty() && zero_experts.empty() && forbid_experts.empty() && force_experts.empty(); }

  /// The edits as an Intervention (the model checks layers, heads and experts when it runs).
  dots1::Intervention build() const {
    dots1::Intervention edit;
    for (const auto& s : zero_heads) {
      const auto [l, h] = parse_pair(s, "--zero-head", false);
      edit.zero_head(l, h[0]);
    }
    for (const auto& s : zero_experts) {
      const auto [l, e] = parse_pair(s, "--zero-expert", false);
      edit.zero_expert(l, e[0]);
    }
    for (const auto& s : forbid_experts) {
      const auto [l, e] = parse_pair(s, "--forbid-expert", false);
      edit.forbid_expert(l, e[0]);
    }
    for (const auto& s : force_experts) {
      const auto [l, e] = parse_pair(s, "--force-experts", true);
      edit.force_experts(l, e);
    }
    return edit;
  }

  /// "L:X" (or "L:X,Y,..." when `many`) -> (L, [X, ...]).
  static std::pair<int64_t, std::vector<int64_t>> parse_pair(const std::string& text, const std::string& option, bool many) {
    const auto colon = text.find(':');
    const std::string expected = "LAYER:" + std::string(many ? "E1,E2,..." : "INDEX");
    if (colon == std::string::npos) throw dots1::InputError(option + ": '" + text + "' is not " + expected);
    const auto layer = parse_int_list(text.substr(0, colon), option);
    auto rest = parse_int_list(text.substr(colon + 1), option);
    if (layer.size() != 1 || (!many && rest.size() != 1)) throw dots1::InputError(option + ": '" + text + "' is not " + expected);
    return {layer[0], std::move(rest)};
  }
};

}  // namespace dots1_cli
