// The model edits `dots1 trace` and `dots1 generate` take (--zero-head, --zero-expert, --forbid-expert,
// --force-experts), turned into one dots1::Intervention (dots1/instrument/intervention.hpp).
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include <dots1/error.hpp>
#include <dots1/instrument/intervention.hpp>

#include "integer_options.hpp"

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

  /// The edits as an Intervention (the model checks layers, heads and experts against itself when it runs).
  /// Edits that contradict each other are refused here: forcing an expert that is also forbidden, two
  /// --force-experts for one layer (one would silently win), zeroing an expert that is also forbidden (it can
  /// never be chosen, so the zeroing would do nothing), and the same edit given twice.
  dots1::Intervention build() const {
    dots1::Intervention edit;
    std::set<std::pair<int64_t, int64_t>> heads, zeroed, forbidden;
    std::map<int64_t, std::vector<int64_t>> forced;
    auto once = [](std::set<std::pair<int64_t, int64_t>>& seen, std::pair<int64_t, int64_t> key, const std::string& option) {
      if (!seen.insert(key).second)
        throw dots1::InputError(option + " " + std::to_string(key.first) + ":" + std::to_string(key.second) + " is given twice");
    };
    for (const auto& s : zero_heads) {
      const auto [l, h] = parse_pair(s, "--zero-head", false);
      once(heads, {l, h[0]}, "--zero-head");
      edit.zero_head(l, h[0]);
    }
    for (const auto& s : forbid_experts) {
      const auto [l, e] = parse_pair(s, "--forbid-expert", false);
      once(forbidden, {l, e[0]}, "--forbid-expert");
      edit.forbid_expert(l, e[0]);
    }
    for (const auto& s : zero_experts) {
      const auto [l, e] = parse_pair(s, "--zero-expert", false);
      once(zeroed, {l, e[0]}, "--zero-expert");
      if (forbidden.count({l, e[0]}))
        throw dots1::InputError("--zero-expert " + s + " contradicts --forbid-expert " + s +
                                ": a forbidden expert is never chosen, so zeroing it changes nothing (give one of the two)");
      edit.zero_expert(l, e[0]);
    }
    for (const auto& s : force_experts) {
      const auto [l, e] = parse_pair(s, "--force-experts", true);
      if (forced.count(l))
        throw dots1::InputError("--force-experts is given twice for layer " + std::to_string(l) + " ('" + dots1::shown(s) +
                                "'); one list of experts per layer");
      std::set<int64_t> distinct(e.begin(), e.end());
      if (distinct.size() != e.size()) throw dots1::InputError("--force-experts: '" + dots1::shown(s) + "' names an expert twice");
      for (int64_t x : e)
        if (forbidden.count({l, x}))
          throw dots1::InputError("--force-experts " + dots1::shown(s) + " contradicts --forbid-expert " + std::to_string(l) + ":" +
                                  std::to_string(x) + ": an expert cannot be both forced and forbidden");
      forced[l] = e;
      edit.force_experts(l, e);
    }
    return edit;
  }

  /// "L:X" (or "L:X,Y,..." when `many`) -> (L, [X, ...]), every number a non-negative integer.
  static std::pair<int64_t, std::vector<int64_t>> parse_pair(const std::string& text, const std::string& option, bool many) {
    const auto colon = text.find(':');
    const std::string expected = "LAYER:" + std::string(many ? "E1,E2,..." : "INDEX");
    if (colon == std::string::npos) throw dots1::InputError(option + ": '" + dots1::shown(text) + "' is not " + expected);
    const int64_t layer = parse_integer<int64_t>(std::string_view(text).substr(0, colon), option, {.min = 0});
    auto rest = parse_integer_list<int64_t>(std::string_view(text).substr(colon + 1), option, {.min = 0});
    if (!many && rest.size() != 1) throw dots1::InputError(option + ": '" + dots1::shown(text) + "' is not " + expected);
    return {layer, std::move(rest)};
  }
};

}  // namespace dots1_cli
