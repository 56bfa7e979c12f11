// dots1 report TRACE.safetensors [--out report.html] [--attention L:H,...] [--layers 1,3] [--row R] [--max-tokens N]
// dots1 report --compare A.safetensors B.safetensors [--out report.html]
// A self-contained HTML page with SVG plots (no network, no JavaScript) from a trace made by `dots1 trace`:
// expert load per layer, load imbalance, chosen experts and routing weights per token, router score margins,
// attention maps. With --compare: how the routing of B differs from A's on the same tokens (e.g. two
// checkpoints): the fraction of changed top-k choices per layer and per token, and the load difference.
#include <cstdio>
#include <string>
#include <vector>

#include <dots1/instrument/report.hpp>
#include <dots1/base/atomic_file.hpp>

#include "commands.hpp"
#include "integer_options.hpp"

namespace {

struct ReportCliOptions {
  std::vector<std::string> traces;
  std::string out = "report.html", attention, layers, title;
  bool compare = false;
  int64_t row = 0, max_tokens = 256;
};

void run_report(const ReportCliOptions& o) {
  dots1::ReportOptions ro;
  ro.row = o.row;
  ro.max_tokens = o.max_tokens;
  ro.title = o.title;
  // --attention L:H,L:H,...: each pair through the tool's integer parser; the trace is checked against them.
  if (!o.attention.empty()) {
    size_t start = 0;
    while (true) {
      const size_t comma = o.attention.find(',', start);
      const std::string item = o.attention.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      const size_t colon = item.find(':');
      if (colon == std::string::npos || item.find(':', colon + 1) != std::string::npos)
        throw dots1::InputError("--attention: '" + dots1::shown(item) + "' is not LAYER:HEAD");
      ro.attention.emplace_back(dots1_cli::parse_integer<int64_t>(std::string_view(item).substr(0, colon), "--attention", {.min = 0}),
                                dots1_cli::parse_integer<int64_t>(std::string_view(item).substr(colon + 1), "--attention", {.min = 0}));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  if (!o.layers.empty()) ro.expert_layers = dots1_cli::parse_integer_list<int64_t>(o.layers, "--layers", {.min = 0});
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
  dots1_cli::add_integer_option(cmd, "--row", o->row, "batch row of the per-token plots", {.min = 0});
  dots1_cli::add_integer_option(cmd, "--max-tokens", o->max_tokens, "per-token plots show at most this many tokens", {.min = 1, .max = 1 << 20});
  cmd->add_option("--title", o->title, "page title");
  cmd->callback([o] { run_report(*o); });
}

dots1_cli::RegisterCommand registered(26, add_report_command);

}  // namespace
