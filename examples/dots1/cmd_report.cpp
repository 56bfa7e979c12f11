// dots1 report TRACE.safetensors [--out report.html] [--attention L:H,...] [--layers 1,3] [--row R] [--max-tokens N]
// dots1 report --compare A.safetensors B.safetensors [--out report.html]
// A self-contained HTML page with SVG plots (no network, no JavaScript) from a trace made by `dots1 trace`:
// expert load per layer, load imbalance, chosen experts and routing weights per token, router score margins,
// attention maps. With --compare: how the routing of B differs from A's on the same tokens (e.g. two
// checkpoints): the fraction of changed top-k choices per layer and per token, and the load difference.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <dots1/instrument/report.hpp>
#include <dots1/base/atomic_file.hpp>

#include "commands.hpp"

namespace {

struct ReportCliOptions {
  std::vector<std::string> traces;
  std::string out = "report.html", attention, layers, title;
  bool compare = false;
  int64_t row = 0, max_tokens = 256;
};

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, sep)) out.push_back(item);
  return out;
}

int64_t parse_int(const std::string& s, const std::string& option) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != s.size()) throw dots1::InputError(option + ": '" + s + "' is not an integer");
  return v;
}

void run_report(const ReportCliOptions& o) {
  dots1::ReportOptions ro;
  ro.row = o.row;
  ro.max_tokens = o.max_tokens;
  ro.title = o.title;
  if (!o.attention.empty())
    for (const auto& item : split(o.attention, ',')) {
      const auto parts = split(item, ':');
      if (parts.size() != 2) throw dots1::InputError("--attention: '" + item + "' is not LAYER:HEAD");
      ro.attention.emplace_back(parse_int(parts[0], "--attention"), parse_int(parts[1], "--attention"));
    }
  if (!o.layers.empty())
    for (const auto& item : split(o.layers, ',')) ro.expert_layers.push_back(parse_int(item, "--layers"));
  std::string html;
  if (o.compare) {
    if (o.traces.size() != 2) throw dots1::InputError("dots1 report --compare: give two traces, A and B");
    html = dots1::render_comparison(dots1::read_trace(o.traces[0]), dots1::read_trace(o.traces[1]), ro);
  } else {
    if (o.traces.size() != 1) throw dots1::InputError("dots1 report: give one trace (or --compare A B)");
    html = dots1::render_report(dots1::read_trace(o.traces[0]), ro);
  }
  dots1::io::write_file_atomically(o.out, html);
  std::fprintf(stderr, "dots1 report: %s (%.1f KiB)\n", o.out.c_str(), static_cast<double>(html.size()) / 1024.0);
}

void add_report_command(CLI::App& app) {
  auto o = std::make_shared<ReportCliOptions>();
  auto* cmd = app.add_subcommand("report", "Render a trace (or compare two) as a self-contained HTML page with SVG plots");
  cmd->add_option("traces", o->traces, "TRACE.safetensors (two with --compare)")->required();
  cmd->add_flag("--compare", o->compare, "compare the routing of two traces made on the same tokens");
  cmd->add_option("--out", o->out, "output HTML file")->default_val("report.html");
  cmd->add_option("--attention", o->attention, "attention maps to draw, LAYER:HEAD,... (default: first and last layer, heads 0-3)");
  cmd->add_option("--layers", o->layers, "MoE layers with a token x expert weight map (default: up to 4, evenly spread)");
  cmd->add_option("--row", o->row, "batch row of the per-token plots")->default_val(0);
  cmd->add_option("--max-tokens", o->max_tokens, "per-token plots show at most this many tokens")->default_val(256);
  cmd->add_option("--title", o->title, "page title");
  cmd->callback([o] { run_report(*o); });
}

dots1_cli::RegisterCommand registered(26, add_report_command);

}  // namespace
