// dots1/instrument/report.hpp — a self-contained HTML page with SVG plots from a trace (no network, no
// JavaScript): expert load per layer, load imbalance, chosen experts per token, router score margins,
// attention maps; and a comparison of the routing of two traces made on the same text.
//
//   const auto trace = dots1::read_trace("trace.safetensors");
//   std::string html = dots1::render_report(trace);                 // dots1::ReportOptions to choose plots
//   std::string diff = dots1::render_comparison(read_trace("a.safetensors"), read_trace("b.safetensors"));
//
// Definitions (K experts per token, E experts, T tokens over all rows):
//   load(e)          the number of (token, k) slots routed to expert e; relative load = load / (T*K/E)
//   max/mean         the largest relative load (1 = perfectly balanced)
//   CV               standard deviation / mean of the loads
//   entropy          -sum p log p / log E of the load shares p (1 = uniform)
//   margin           min over chosen experts of their selection score (sigmoid + correction bias) minus the
//                    max over the experts not chosen in the groups kept by group-limited routing: how far
//                    the router was from changing its choice (negative when the choice was forced)
//   changed top-k    |chosen_A \ chosen_B| / K per token (comparison)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "dots1/error.hpp"
#include "dots1/instrument/trace_io.hpp"
#include "dots1/base/memory_check.hpp"

namespace dots1 {

struct ReportOptions {
  std::vector<std::pair<int64_t, int64_t>> attention;  // (layer, head) maps to draw; empty = first and last layer, heads 0..3
  std::vector<int64_t> expert_layers;                  // MoE layers with a token x expert weight map; empty = up to 4, evenly spread
  int64_t row = 0;                                     // the batch row of the per-token plots
  int64_t max_tokens = 256;                            // per-token plots show at most this many tokens
  std::string title;                                   // default: "dots1 routing report"
};

namespace report_detail {

inline std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default: o += c;
    }
  }
  return o;
}

inline std::string num(double x, int digits = 3) {
  if (std::isnan(x)) return "n/a";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, x);
  return b;
}

/// A token's text for a label: newlines and tabs shown, leading/trailing spaces as a middle dot, at most
/// 14 characters (UTF-8 aware).
inline std::string token_label(const std::string& t) {
  std::string s;
  for (size_t i = 0; i < t.size(); ++i) {
    const char c = t[i];
    if (c == '\n') s += "\xE2\x8F\x8E";        // ⏎
    else if (c == '\t') s += "\xE2\x87\xA5";   // ⇥
    else if (c == ' ' && (i == 0 || i + 1 == t.size())) s += "\xC2\xB7";  // ·
    else if (static_cast<unsigned char>(c) < 0x20) s += '?';
    else s += c;
  }
  size_t chars = 0, cut = s.size();
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && ++chars > 14) {
      cut = i;
      break;
    }
  if (cut < s.size()) s = s.substr(0, cut) + "\xE2\x80\xA6";  // …
  return s;
}

inline std::string hex(double r, double g, double b) {
  char out[8];
  auto c = [](double v) { return static_cast<int>(std::lround(std::clamp(v, 0.0, 1.0) * 255)); };
  std::snprintf(out, sizeof out, "#%02x%02x%02x", c(r), c(g), c(b));
  return out;
}

/// A perceptually ordered sequential scale (dark blue -> teal -> yellow, after viridis) for x in [0, 1].
inline std::string sequential(double x) {
  static const double stops[][3] = {{0.267, 0.005, 0.329}, {0.230, 0.322, 0.546}, {0.128, 0.567, 0.551}, {0.369, 0.789, 0.383}, {0.993, 0.906, 0.144}};
  x = std::clamp(std::isnan(x) ? 0.0 : x, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(x));
  const double f = x - i;
  return hex(stops[i][0] + f * (stops[i + 1][0] - stops[i][0]), stops[i][1] + f * (stops[i + 1][1] - stops[i][1]),
             stops[i][2] + f * (stops[i + 1][2] - stops[i][2]));
}

/// A diverging scale for x in [-1, 1]: blue, white at 0, red.
inline std::string diverging(double x) {
  x = std::clamp(std::isnan(x) ? 0.0 : x, -1.0, 1.0);
  if (x < 0) return hex(1 + x * (1 - 0.129), 1 + x * (1 - 0.4), 1 + x * (1 - 0.737));
  return hex(1 - x * (1 - 0.792), 1 - x * (1 - 0.0), 1 - x * (1 - 0.125));
}

/// The width a plot needs for its title (14px semi-bold, about 8px per character).
inline int64_t title_width(const std::string& title) { return 16 + 8 * static_cast<int64_t>(title.size()); }

struct Heatmap {
  std::string title, x_label, y_label;
  int64_t rows = 0, cols = 0;
  std::vector<double> values;                  // row-major; NaN = empty cell
  std::vector<std::string> row_labels, col_labels, cell_text;
  double vmin = 0, vmax = 1;
  bool diverging = false;                      // values in [-vmax, vmax], 0 white
  std::string value_name = "value";
  int64_t max_width = 1000;
};

/// An SVG heatmap: one <rect> per non-empty cell with a <title> tooltip, axis labels, a colour bar.
inline std::string svg_heatmap(const Heatmap& h) {
  const bool text = !h.cell_text.empty();
  int64_t cw = std::clamp<int64_t>((h.max_width - 140) / std::max<int64_t>(h.cols, 1), 4, text ? 64 : 26);
  if (text) cw = std::max<int64_t>(cw, 44);
  const int64_t ch = text ? 16 : std::clamp<int64_t>(cw, 6, 18);
  const int64_t left = 120, top = 34, bottom = 70, right = 70;
  const int64_t width = std::max(left + cw * h.cols + right, title_width(h.title)), height = top + ch * h.rows + bottom;
  const int64_t label_every_col = std::max<int64_t>(1, 12 / cw), label_every_row = std::max<int64_t>(1, 11 / ch);
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"" << width << "\" height=\"" << height << "\" viewBox=\"0 0 " << width
    << ' ' << height << "\">\n";
  o << "<text x=\"8\" y=\"18\" class=\"t\">" << escape(h.title) << "</text>\n";
  for (int64_t r = 0; r < h.rows; ++r)
    for (int64_t c = 0; c < h.cols; ++c) {
      const double v = h.values[static_cast<size_t>(r * h.cols + c)];
      if (std::isnan(v)) continue;
      const double x = h.diverging ? v / (h.vmax > 0 ? h.vmax : 1) : (v - h.vmin) / (h.vmax > h.vmin ? h.vmax - h.vmin : 1);
      const std::string fill = h.diverging ? diverging(x) : sequential(x);
      o << "<rect x=\"" << left + c * cw << "\" y=\"" << top + r * ch << "\" width=\"" << cw << "\" height=\"" << ch << "\" fill=\"" << fill
        << "\"><title>" << escape(r < static_cast<int64_t>(h.row_labels.size()) ? h.row_labels[static_cast<size_t>(r)] : std::to_string(r)) << " / "
        << escape(c < static_cast<int64_t>(h.col_labels.size()) ? h.col_labels[static_cast<size_t>(c)] : std::to_string(c)) << ": " << h.value_name
        << ' ' << num(v) << "</title></rect>";
      if (text && !h.cell_text[static_cast<size_t>(r * h.cols + c)].empty())
        o << "<text x=\"" << left + c * cw + cw / 2 << "\" y=\"" << top + r * ch + ch - 4 << "\" class=\"c" << (x > 0.6 && !h.diverging ? " dk" : "")
          << "\">" << escape(h.cell_text[static_cast<size_t>(r * h.cols + c)]) << "</text>";
      o << '\n';
    }
  o << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << cw * h.cols << "\" height=\"" << ch * h.rows << "\" class=\"frame\"/>\n";
  for (int64_t r = 0; r < h.rows; r += label_every_row)
    o << "<text x=\"" << left - 4 << "\" y=\"" << top + r * ch + ch / 2 + 4 << "\" class=\"yl\">"
      << escape(r < static_cast<int64_t>(h.row_labels.size()) ? h.row_labels[static_cast<size_t>(r)] : std::to_string(r)) << "</text>\n";
  for (int64_t c = 0; c < h.cols; c += label_every_col) {
    const int64_t x = left + c * cw + cw / 2, y = top + h.rows * ch + 8;
    o << "<text x=\"" << x << "\" y=\"" << y << "\" class=\"xl\" transform=\"rotate(45 " << x << ' ' << y << ")\">"
      << escape(c < static_cast<int64_t>(h.col_labels.size()) ? h.col_labels[static_cast<size_t>(c)] : std::to_string(c)) << "</text>\n";
  }
  if (!h.x_label.empty())
    o << "<text x=\"" << left + cw * h.cols / 2 << "\" y=\"" << height - 4 << "\" class=\"al\">" << escape(h.x_label) << "</text>\n";
  if (!h.y_label.empty())
    o << "<text x=\"12\" y=\"" << top + ch * h.rows / 2 << "\" class=\"al\" transform=\"rotate(-90 12 " << top + ch * h.rows / 2 << ")\">"
      << escape(h.y_label) << "</text>\n";
  // colour bar
  const int64_t bx = left + cw * h.cols + 14, bh = std::max<int64_t>(ch * h.rows, 40);
  for (int i = 0; i < 20; ++i) {
    const double x = 1.0 - (i + 0.5) / 20;
    o << "<rect x=\"" << bx << "\" y=\"" << top + i * bh / 20 << "\" width=\"12\" height=\"" << bh / 20 + 1 << "\" fill=\""
      << (h.diverging ? diverging(2 * x - 1) : sequential(x)) << "\"/>";
  }
  o << "\n<text x=\"" << bx + 15 << "\" y=\"" << top + 8 << "\" class=\"cb\">" << num(h.vmax, 2) << "</text><text x=\"" << bx + 15 << "\" y=\""
    << top + bh << "\" class=\"cb\">" << num(h.diverging ? -h.vmax : h.vmin, 2) << "</text>\n</svg>\n";
  return o.str();
}

struct Bars {
  std::string title, y_label;
  std::vector<std::string> labels;
  std::vector<double> values;
  double vmax = 0;  // 0 = the largest value
  bool signed_values = false;
};

/// An SVG bar chart (negative bars drawn below the zero line when signed_values).
inline std::string svg_bars(const Bars& b) {
  const auto n = static_cast<int64_t>(b.values.size());
  const int64_t bw = std::clamp<int64_t>(800 / std::max<int64_t>(n, 1), 8, 48), left = 70, top = 34, plot_h = 180, bottom = 60;
  const int64_t width = std::max(left + bw * n + 30, title_width(b.title)), height = top + plot_h + bottom;
  double vmax = b.vmax;
  for (double v : b.values)
    if (!std::isnan(v)) vmax = std::max(vmax, std::fabs(v));
  if (vmax <= 0) vmax = 1;
  const double zero_y = b.signed_values ? top + plot_h / 2.0 : top + static_cast<double>(plot_h);
  const double scale = b.signed_values ? plot_h / 2.0 / vmax : plot_h / vmax;
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"" << width << "\" height=\"" << height << "\" viewBox=\"0 0 " << width
    << ' ' << height << "\">\n<text x=\"8\" y=\"18\" class=\"t\">" << escape(b.title) << "</text>\n";
  for (int64_t i = 0; i < n; ++i) {
    const double v = b.values[static_cast<size_t>(i)];
    if (std::isnan(v)) continue;
    const double hgt = std::fabs(v) * scale, y = v >= 0 ? zero_y - hgt : zero_y;
    o << "<rect x=\"" << left + i * bw + 2 << "\" y=\"" << num(y, 1) << "\" width=\"" << bw - 4 << "\" height=\"" << num(std::max(hgt, 0.5), 1)
      << "\" fill=\"" << (v >= 0 ? "#3b6fb6" : "#c0504d") << "\"><title>" << escape(b.labels[static_cast<size_t>(i)]) << ": " << num(v, 4)
      << "</title></rect>\n";
    const int64_t x = left + i * bw + bw / 2, ly = top + plot_h + 12;
    o << "<text x=\"" << x << "\" y=\"" << ly << "\" class=\"xl\" transform=\"rotate(45 " << x << ' ' << ly << ")\">"
      << escape(b.labels[static_cast<size_t>(i)]) << "</text>\n";
  }
  o << "<line x1=\"" << left << "\" x2=\"" << left + bw * n << "\" y1=\"" << num(zero_y, 1) << "\" y2=\"" << num(zero_y, 1) << "\" class=\"axis\"/>\n";
  o << "<line x1=\"" << left << "\" x2=\"" << left << "\" y1=\"" << top << "\" y2=\"" << top + plot_h << "\" class=\"axis\"/>\n";
  o << "<text x=\"" << left - 4 << "\" y=\"" << top + 8 << "\" class=\"yl\">" << num(vmax, 3) << "</text>\n";
  o << "<text x=\"" << left - 4 << "\" y=\"" << num(zero_y + 4, 1) << "\" class=\"yl\">0</text>\n";
  if (b.signed_values) o << "<text x=\"" << left - 4 << "\" y=\"" << top + plot_h << "\" class=\"yl\">" << num(-vmax, 3) << "</text>\n";
  o << "<text x=\"14\" y=\"" << top + plot_h / 2 << "\" class=\"al\" transform=\"rotate(-90 14 " << top + plot_h / 2 << ")\">" << escape(b.y_label)
    << "</text>\n</svg>\n";
  return o.str();
}

inline const char* kStyle = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px 32px;color:#222;background:#fff;max-width:1400px}
h1{font-size:22px;margin:0 0 6px} h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #ddd;padding-bottom:3px}
p.note{color:#555;font-size:13px;margin:4px 0 10px;max-width:980px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} th{background:#f1f3f6}
td:first-child,th:first-child{text-align:left}
.tokens span{display:inline-block;border:1px solid #ccd;border-radius:3px;margin:1px;padding:0 3px;font:12px monospace;background:#f7f8fb}
.tokens span sub{color:#889;font-size:9px;margin-left:2px}
svg.plot{display:block;margin:6px 0 14px} svg text{font-family:system-ui,sans-serif}
.t{font-size:14px;font-weight:600} .xl{font-size:10px} .yl{font-size:10px;text-anchor:end} .al{font-size:11px;text-anchor:middle;fill:#444}
.cb{font-size:10px} .c{font-size:10px;text-anchor:middle;fill:#fff;font-family:monospace} .c.dk{fill:#111}
.frame{fill:none;stroke:#999;stroke-width:0.5} .axis{stroke:#333;stroke-width:1}
.grid{display:flex;flex-wrap:wrap;gap:8px 28px}
)";

/// HF's group-limited selection scores of one token: sigmoid(logit) + bias, -inf outside the kept groups.
inline std::vector<double> selection_scores(const float* logits, const std::vector<float>& bias, const RouterShape& r) {
  const int64_t E = r.experts;
  std::vector<double> s(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e)
    s[static_cast<size_t>(e)] = 1.0 / (1.0 + std::exp(-static_cast<double>(logits[e]))) + (bias.empty() ? 0.0 : bias[static_cast<size_t>(e)]);
  const int64_t G = std::max<int64_t>(r.n_group, 1), per = E / G;
  if (G > 1 && per > 0) {
    std::vector<std::pair<double, int64_t>> group(static_cast<size_t>(G));
    for (int64_t g = 0; g < G; ++g) {
      std::vector<double> v(s.begin() + g * per, s.begin() + (g + 1) * per);
      std::sort(v.rbegin(), v.rend());
      group[static_cast<size_t>(g)] = {v[0] + (v.size() > 1 ? v[1] : 0.0), g};
    }
    std::stable_sort(group.begin(), group.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    for (int64_t i = std::min(r.topk_group, G); i < G; ++i)
      for (int64_t e = group[static_cast<size_t>(i)].second * per; e < (group[static_cast<size_t>(i)].second + 1) * per; ++e)
        s[static_cast<size_t>(e)] = -INFINITY;
  }
  return s;
}

/// Per-layer routing statistics.
struct LayerStats {
  int64_t layer = 0, tokens = 0, used = 0;
  std::vector<double> relative_load;  // [E], 1 = uniform
  double max_over_mean = 0, cv = 0, entropy = 0, mean_margin = NAN, near_ties = 0;
  int64_t busiest = 0;
  double busiest_share = 0;
  std::vector<double> margins;  // [B*S]
};

inline LayerStats layer_stats(const LayerRecord& l) {
  LayerStats st;
  st.layer = l.layer;
  const int64_t E = l.experts, K = l.top_k;
  st.tokens = K ? static_cast<int64_t>(l.topk_indices.size()) / K : 0;
  std::vector<double> load(static_cast<size_t>(E), 0.0);
  for (int32_t e : l.topk_indices) load[static_cast<size_t>(e)] += 1;
  const double slots = static_cast<double>(st.tokens * K), mean = slots / static_cast<double>(std::max<int64_t>(E, 1));
  st.relative_load.resize(static_cast<size_t>(E));
  double var = 0, ent = 0;
  for (int64_t e = 0; e < E; ++e) {
    const double x = load[static_cast<size_t>(e)];
    st.relative_load[static_cast<size_t>(e)] = mean > 0 ? x / mean : 0;
    st.used += x > 0;
    var += (x - mean) * (x - mean);
    if (x > 0) ent -= (x / slots) * std::log(x / slots);
    if (x > load[static_cast<size_t>(st.busiest)]) st.busiest = e;
  }
  st.max_over_mean = mean > 0 ? *std::max_element(load.begin(), load.end()) / mean : 0;
  st.cv = mean > 0 ? std::sqrt(var / static_cast<double>(E)) / mean : 0;
  st.entropy = E > 1 ? ent / std::log(static_cast<double>(E)) : 1;
  st.busiest_share = slots > 0 ? load[static_cast<size_t>(st.busiest)] / slots : 0;
  if (!l.router_logits.empty()) {
    double sum = 0;
    int64_t n = 0, ties = 0;
    st.margins.assign(static_cast<size_t>(st.tokens), NAN);
    for (int64_t t = 0; t < st.tokens; ++t) {
      const auto s = selection_scores(l.router_logits.data() + t * E, l.router_bias, l.router);
      std::vector<bool> chosen(static_cast<size_t>(E), false);
      double lo = INFINITY, hi = -INFINITY;
      for (int64_t k = 0; k < K; ++k) {
        const auto e = static_cast<size_t>(l.topk_indices[static_cast<size_t>(t * K + k)]);
        chosen[e] = true;
        const double raw = 1.0 / (1.0 + std::exp(-static_cast<double>(l.router_logits[static_cast<size_t>(t * E) + e]))) +
                           (l.router_bias.empty() ? 0.0 : l.router_bias[e]);  // also for a (forced) expert of a dropped group
        lo = std::min(lo, raw);
      }
      for (int64_t e = 0; e < E; ++e)
        if (!chosen[static_cast<size_t>(e)] && s[static_cast<size_t>(e)] != -INFINITY) hi = std::max(hi, s[static_cast<size_t>(e)]);
      if (hi == -INFINITY) continue;
      const double m = lo - hi;
      st.margins[static_cast<size_t>(t)] = m;
      sum += m;
      ++n;
      ties += m < 0.01;
    }
    if (n) {
      st.mean_margin = sum / static_cast<double>(n);
      st.near_ties = static_cast<double>(ties) / static_cast<double>(n);
    }
  }
  return st;
}

inline std::string token_text(const Trace& tr, int64_t s) {
  if (s < static_cast<int64_t>(tr.info.tokens.size())) return token_label(tr.info.tokens[static_cast<size_t>(s)]);
  if (!tr.recording.input_ids.empty()) return std::string("#").append(std::to_string(tr.recording.input_ids[static_cast<size_t>(s)]));
  return std::to_string(s);
}

inline std::vector<std::string> token_labels(const Trace& tr, int64_t count) {
  std::vector<std::string> out;
  for (int64_t s = 0; s < count; ++s) out.push_back(std::to_string(tr.recording.past + s) + " " + token_text(tr, s));
  return out;
}

inline std::string page_head(const std::string& title, int64_t svg_count) {
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta name=\"generator\" content=\"dots1 report\">\n"
         "<meta name=\"dots1-svg-count\" content=\"" + std::to_string(svg_count) + "\">\n<title>" + escape(title) + "</title>\n<style>" + kStyle +
         "</style></head>\n<body>\n";
}

inline std::string count_svgs_and_wrap(const std::string& title, const std::string& body) {
  int64_t n = 0;
  for (size_t p = body.find("<svg "); p != std::string::npos; p = body.find("<svg ", p + 1)) ++n;
  return page_head(title, n) + body + "</body></html>\n";
}

inline void require_routing(const Trace& tr) {
  if (tr.recording.moe_layers().empty())
    throw InputError(tr.path + ": the trace holds no routing (a model without MoE layers, or traced with routing off)");
}

/// The options against the trace, and the trace's own consistency where the plots index with it (a trace read
/// by read_trace is checked there; a Recording built in memory is checked here): InputError, never an access
/// outside a tensor. Also the memory preflight of the page, whose plots grow with tokens x experts x layers.
inline void check_report_request(const Trace& tr, const ReportOptions& opt, const std::string& what) {
  const Recording& r = tr.recording;
  if (opt.row < 0 || opt.row >= std::max<int64_t>(r.batch, 1))
    throw InputError(what + ": row " + std::to_string(opt.row) + " is outside the trace's batch of " + std::to_string(r.batch));
  if (opt.max_tokens < 1) throw InputError(what + ": max_tokens = " + std::to_string(opt.max_tokens) + " must be at least 1");
  const int64_t T = r.batch * r.seq;
  int64_t E = -1, K = -1;
  for (const auto& l : r.layers) {
    if (!l.attn_weights.empty() &&
        (l.attention.heads < 1 || l.attention.kv_len < r.seq ||
         static_cast<int64_t>(l.attn_weights.size()) != r.batch * l.attention.heads * r.seq * l.attention.kv_len))
      throw InputError(what + ": layer " + std::to_string(l.layer) + "'s attention weights do not have the trace's shape");
    if (!l.moe) continue;
    if (l.topk_indices.empty())
      throw InputError(what + ": layer " + std::to_string(l.layer) + " has a router but no recorded routing (recorded with routing off?)");
    if (E < 0) E = l.experts, K = l.top_k;
    if (l.experts != E || l.top_k != K || K < 1 || K > E)
      throw InputError(what + ": the MoE layers route different numbers of experts (" + std::to_string(l.experts) + " and " + std::to_string(E) + ")");
    const auto n = static_cast<size_t>(T * K);
    if (l.topk_indices.size() != n || l.topk_weights.size() != n || (!l.router_logits.empty() && l.router_logits.size() != static_cast<size_t>(T * E)) ||
        (!l.router_bias.empty() && static_cast<int64_t>(l.router_bias.size()) != E))
      throw InputError(what + ": layer " + std::to_string(l.layer) + "'s routing tensors do not have the trace's shape");
    for (int32_t e : l.topk_indices)
      if (e < 0 || e >= E) throw InputError(what + ": layer " + std::to_string(l.layer) + " chose expert " + std::to_string(e) + " of " + std::to_string(E));
  }
  // About 200 bytes of SVG per plotted cell.
  const int64_t shown = std::min(r.seq, opt.max_tokens), moe = static_cast<int64_t>(r.moe_layers().size());
  uint64_t cells = checked_bytes({moe, std::max<int64_t>(E, 0), 2 + 4 * shown});
  cells = saturating_add(cells, checked_bytes({static_cast<int64_t>(opt.attention.size()) + 8, shown, r.past + shown}));
  check_allocation(checked_bytes({static_cast<int64_t>(std::min<uint64_t>(cells, INT64_MAX)), 200}), what + ": the HTML page");
}

}  // namespace report_detail

/// The report page for one trace.
inline std::string render_report(const Trace& tr, const ReportOptions& opt = {}) {
  using namespace report_detail;
  const Recording& r = tr.recording;
  const auto moe = r.moe_layers();
  const std::string title = opt.title.empty() ? "dots1 routing report" : opt.title;
  check_report_request(tr, opt, "report");
  const int64_t S = r.seq, shown = std::min(S, opt.max_tokens), row0 = opt.row * S;
  std::ostringstream o;
  o << "<h1>" << escape(title) << "</h1>\n<p class=\"note\">Trace <code>" << escape(tr.path) << "</code>";
  if (!tr.info.model.empty()) o << " of model <code>" << escape(tr.info.model) << "</code>";
  o << ": " << r.batch << " row(s) of " << S << " tokens" << (r.past ? " after " + std::to_string(r.past) + " cached" : "") << ", "
    << r.layers.size() << " layers, " << moe.size() << " with a router";
  if (!moe.empty()) {
    const auto& l = tr.layer(moe.front());
    o << " (" << l.experts << " routed experts, " << l.top_k << " per token";
    if (l.router.n_group > 1) o << ", " << l.router.n_group << " groups of which " << l.router.topk_group << " kept";
    o << ")";
  }
  o << ".</p>\n";
  // the text
  o << "<h2>Tokens</h2>\n<div class=\"tokens\">";
  for (int64_t s = 0; s < shown; ++s) o << "<span>" << escape(token_text(tr, s)) << "<sub>" << r.past + s << "</sub></span>";
  if (shown < S) o << " &hellip; (" << S - shown << " more)";
  o << "</div>\n";

  std::vector<LayerStats> stats;
  for (auto l : moe) stats.push_back(layer_stats(tr.layer(l)));
  if (!moe.empty()) {
    const int64_t E = tr.layer(moe.front()).experts, K = tr.layer(moe.front()).top_k;
    // expert load heatmap
    Heatmap h;
    h.title = "Expert load per layer (relative to uniform; all rows)";
    h.x_label = "expert";
    h.y_label = "layer";
    h.rows = static_cast<int64_t>(moe.size());
    h.cols = E;
    h.value_name = "relative load";
    for (const auto& st : stats) {
      h.row_labels.push_back("layer " + std::to_string(st.layer));
      h.values.insert(h.values.end(), st.relative_load.begin(), st.relative_load.end());
      h.vmax = std::max(h.vmax, *std::max_element(st.relative_load.begin(), st.relative_load.end()));
    }
    for (int64_t e = 0; e < E; ++e) h.col_labels.push_back(std::to_string(e));
    o << "<h2>Expert load</h2>\n<p class=\"note\">Cell = the number of (token, k) slots routed to the expert divided by the uniform share "
         "T&middot;K/E; 1 is perfectly balanced, 0 an unused expert.</p>\n"
      << svg_heatmap(h);
    // imbalance table
    o << "<h2>Load imbalance per layer</h2>\n<table><tr><th>layer</th><th>tokens</th><th>experts used</th><th>max/mean</th><th>CV</th>"
         "<th>entropy</th><th>busiest expert (share)</th><th>mean margin</th><th>near ties (&lt;0.01)</th></tr>\n";
    for (const auto& st : stats)
      o << "<tr><td>" << st.layer << "</td><td>" << st.tokens << "</td><td>" << st.used << " / " << E << "</td><td>" << num(st.max_over_mean, 2)
        << "</td><td>" << num(st.cv, 3) << "</td><td>" << num(st.entropy, 3) << "</td><td>" << st.busiest << " (" << num(100 * st.busiest_share, 1)
        << "%)</td><td>" << num(st.mean_margin, 4) << "</td><td>" << num(100 * st.near_ties, 1) << "%</td></tr>\n";
    o << "</table>\n<p class=\"note\">max/mean: the busiest expert's load over the mean (1 = balanced). CV: standard deviation / mean of "
         "the loads. entropy: of the load shares, over log E (1 = uniform). margin: lowest selection score (sigmoid + correction bias) "
         "among the chosen experts minus the highest among the others in the kept groups.</p>\n";
    // chosen experts per token (token x layer grid)
    Heatmap g;
    g.title = "Chosen experts per token (row " + std::to_string(opt.row) + "), by descending selection score";
    g.x_label = "layer";
    g.y_label = "token";
    g.rows = shown;
    g.cols = static_cast<int64_t>(moe.size());
    g.value_name = "top-1 weight share";
    g.row_labels = token_labels(tr, shown);
    for (auto l : moe) g.col_labels.push_back("layer " + std::to_string(l));
    g.values.assign(static_cast<size_t>(g.rows * g.cols), NAN);
    g.cell_text.assign(g.values.size(), "");
    for (size_t c = 0; c < moe.size(); ++c) {
      const auto& l = tr.layer(moe[c]);
      for (int64_t s = 0; s < shown; ++s) {
        std::string txt;
        double sum = 0, top = 0;
        for (int64_t k = 0; k < K; ++k) {
          const auto i = static_cast<size_t>((row0 + s) * K + k);
          if (k) txt += ' ';
          txt += std::to_string(l.topk_indices[i]);
          sum += l.topk_weights[i];
          if (k == 0) top = l.topk_weights[i];
        }
        g.values[static_cast<size_t>(s * g.cols + static_cast<int64_t>(c))] = sum > 0 ? top / sum : 0;
        g.cell_text[static_cast<size_t>(s * g.cols + static_cast<int64_t>(c))] = txt;
      }
    }
    g.vmin = 1.0 / static_cast<double>(K);
    g.vmax = 1;
    o << "<h2>Chosen experts per token</h2>\n<p class=\"note\">Each cell lists the token's experts in the layer; its colour is the "
         "first expert's share of the token's routing weights (" << num(1.0 / static_cast<double>(K), 2) << " = even).</p>\n"
      << svg_heatmap(g);
    // token x expert weight maps for some layers
    std::vector<int64_t> detail = opt.expert_layers;
    if (detail.empty()) {
      const size_t n = std::min<size_t>(4, moe.size());
      for (size_t i = 0; i < n; ++i) detail.push_back(moe[n == 1 ? 0 : i * (moe.size() - 1) / (n - 1)]);
      detail.erase(std::unique(detail.begin(), detail.end()), detail.end());
    }
    o << "<h2>Routing weights per token</h2>\n<div class=\"grid\">\n";
    for (auto li : detail) {
      if (li < 0 || li >= static_cast<int64_t>(r.layers.size()) || !tr.layer(li).moe)
        throw InputError("report: layer " + std::to_string(li) + " has no recorded routing");
      const auto& l = tr.layer(li);
      Heatmap w;
      w.title = "Layer " + std::to_string(li) + ": routing weight of each expert";
      w.x_label = "expert";
      w.y_label = "token";
      w.rows = shown;
      w.cols = E;
      w.value_name = "weight";
      w.row_labels = token_labels(tr, shown);
      for (int64_t e = 0; e < E; ++e) w.col_labels.push_back(std::to_string(e));
      w.values.assign(static_cast<size_t>(shown * E), NAN);
      w.max_width = 560;
      for (int64_t s = 0; s < shown; ++s)
        for (int64_t k = 0; k < K; ++k) {
          const auto i = static_cast<size_t>((row0 + s) * K + k);
          const double v = l.topk_weights[i];
          w.values[static_cast<size_t>(s * E + l.topk_indices[i])] = v;
          w.vmax = std::max(w.vmax, v);
        }
      o << svg_heatmap(w);
    }
    o << "</div>\n";
    // margins
    if (!stats.front().margins.empty()) {
      Heatmap m;
      m.title = "Router score margin per token (row " + std::to_string(opt.row) + ")";
      m.x_label = "token";
      m.y_label = "layer";
      m.rows = static_cast<int64_t>(moe.size());
      m.cols = shown;
      m.diverging = true;
      m.value_name = "margin";
      m.vmax = 0;
      for (int64_t s = 0; s < shown; ++s) m.col_labels.push_back(token_text(tr, s));
      for (const auto& st : stats) {
        m.row_labels.push_back("layer " + std::to_string(st.layer));
        for (int64_t s = 0; s < shown; ++s) {
          const double v = st.margins.empty() ? NAN : st.margins[static_cast<size_t>(row0 + s)];
          m.values.push_back(v);
          if (!std::isnan(v)) m.vmax = std::max(m.vmax, std::fabs(v));
        }
      }
      Bars b;
      b.title = "Mean router score margin per layer (all rows)";
      b.y_label = "margin";
      b.signed_values = true;
      for (const auto& st : stats) {
        b.labels.push_back("layer " + std::to_string(st.layer));
        b.values.push_back(st.mean_margin);
      }
      o << "<h2>Router score margins</h2>\n<p class=\"note\">How far each routing decision was from flipping: red = a clear choice, "
           "white = a near tie between the last chosen expert and the best expert left out, blue = the choice went against the scores "
           "(forced).</p>\n"
        << svg_heatmap(m) << svg_bars(b);
    }
  }
  // attention maps
  std::vector<std::pair<int64_t, int64_t>> maps = opt.attention;
  std::vector<int64_t> with_attention;
  for (const auto& l : r.layers)
    if (!l.attn_weights.empty()) with_attention.push_back(l.layer);
  if (maps.empty() && !with_attention.empty()) {
    std::vector<int64_t> layers{with_attention.front()};
    if (with_attention.back() != with_attention.front()) layers.push_back(with_attention.back());
    for (auto l : layers)
      for (int64_t hd = 0; hd < std::min<int64_t>(4, tr.layer(l).attention.heads); ++hd) maps.emplace_back(l, hd);
  }
  if (!maps.empty()) {
    o << "<h2>Attention maps</h2>\n<p class=\"note\">Post-softmax attention weights of row " << opt.row
      << ": query tokens down, key positions across (cached keys first).</p>\n<div class=\"grid\">\n";
    for (auto [li, hd] : maps) {
      if (li < 0 || li >= static_cast<int64_t>(r.layers.size()) || tr.layer(li).attn_weights.empty())
        throw InputError("report: layer " + std::to_string(li) + " has no recorded attention weights");
      const auto& l = tr.layer(li);
      const int64_t nh = l.attention.heads, kv = l.attention.kv_len;
      if (hd < 0 || hd >= nh) throw InputError("report: head " + std::to_string(hd) + " of layer " + std::to_string(li) + " (the layer has " + std::to_string(nh) + ")");
      const int64_t q_shown = shown, kv_shown = std::min(kv, r.past + shown);
      Heatmap a;
      a.title = "Layer " + std::to_string(li) + ", head " + std::to_string(hd);
      a.x_label = "key";
      a.y_label = "query";
      a.rows = q_shown;
      a.cols = kv_shown;
      a.value_name = "weight";
      a.max_width = 560;
      a.row_labels = token_labels(tr, q_shown);
      for (int64_t k = 0; k < kv_shown; ++k) a.col_labels.push_back(k >= r.past ? token_text(tr, k - r.past) : std::string("#").append(std::to_string(k)));
      for (int64_t q = 0; q < q_shown; ++q)
        for (int64_t k = 0; k < kv_shown; ++k) {
          const double v = l.attn_weights[static_cast<size_t>(((opt.row * nh + hd) * S + q) * kv + k)];
          a.values.push_back(v == 0 ? NAN : v);
          a.vmax = std::max(a.vmax, v);
        }
      o << svg_heatmap(a);
    }
    o << "</div>\n";
  }
  return count_svgs_and_wrap(title, o.str());
}

/// The comparison page: how the routing of trace B differs from trace A on the same tokens (e.g. two
/// checkpoints, or a model and its ablation).
inline std::string render_comparison(const Trace& a, const Trace& b, const ReportOptions& opt = {}) {
  using namespace report_detail;
  require_routing(a);
  require_routing(b);
  check_report_request(a, opt, "report --compare (A)");
  check_report_request(b, opt, "report --compare (B)");
  const Recording &ra = a.recording, &rb = b.recording;
  if (ra.batch != rb.batch || ra.seq != rb.seq || ra.input_ids != rb.input_ids)
    throw InputError("report --compare: the traces were made on different tokens (" + a.path + ": " + std::to_string(ra.batch) + " x " +
                     std::to_string(ra.seq) + ", " + b.path + ": " + std::to_string(rb.batch) + " x " + std::to_string(rb.seq) +
                     "); trace both checkpoints with the same --prompt or --ids");
  std::vector<int64_t> layers;
  for (auto l : ra.moe_layers())
    if (l < static_cast<int64_t>(rb.layers.size()) && rb.layers[static_cast<size_t>(l)].moe) layers.push_back(l);
  if (layers.empty()) throw InputError("report --compare: the traces have no MoE layer in common");
  const std::string title = opt.title.empty() ? "dots1 routing comparison" : opt.title;
  const int64_t S = ra.seq, T = ra.batch * S, shown = std::min(S, opt.max_tokens), row0 = opt.row * S;
  std::ostringstream o;
  o << "<h1>" << escape(title) << "</h1>\n<p class=\"note\">A = <code>" << escape(a.path) << "</code>" << (a.info.model.empty() ? "" : " (" + escape(a.info.model) + ")")
    << "<br>B = <code>" << escape(b.path) << "</code>" << (b.info.model.empty() ? "" : " (" + escape(b.info.model) + ")") << "<br>" << ra.batch
    << " row(s) of " << S << " tokens, " << layers.size() << " MoE layers compared.</p>\n";
  Bars bars;
  bars.title = "Fraction of changed top-k choices per layer";
  bars.y_label = "changed";
  bars.vmax = 1;
  Heatmap h;
  h.title = "Changed experts per token (row " + std::to_string(opt.row) + "): |A \\ B| / K";
  h.x_label = "token";
  h.y_label = "layer";
  h.rows = static_cast<int64_t>(layers.size());
  h.cols = shown;
  h.value_name = "changed fraction";
  for (int64_t s = 0; s < shown; ++s) h.col_labels.push_back(token_text(a, s));
  std::ostringstream table;
  table << "<table><tr><th>layer</th><th>changed top-k choices</th><th>tokens with any change</th><th>top-1 changed</th>"
           "<th>load L1 distance</th><th>max/mean A</th><th>max/mean B</th></tr>\n";
  for (auto li : layers) {
    const auto &la = ra.layers[static_cast<size_t>(li)], &lb = rb.layers[static_cast<size_t>(li)];
    if (la.top_k != lb.top_k || la.experts != lb.experts)
      throw InputError("report --compare: layer " + std::to_string(li) + " routes " + std::to_string(la.top_k) + " of " + std::to_string(la.experts) +
                       " experts in A and " + std::to_string(lb.top_k) + " of " + std::to_string(lb.experts) + " in B");
    const int64_t K = la.top_k;
    double changed = 0, any = 0, top1 = 0;
    std::vector<double> per_token(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      std::set<int32_t> sa(la.topk_indices.begin() + t * K, la.topk_indices.begin() + (t + 1) * K);
      int64_t diff = 0;
      for (int64_t k = 0; k < K; ++k) diff += sa.count(lb.topk_indices[static_cast<size_t>(t * K + k)]) == 0;
      per_token[static_cast<size_t>(t)] = static_cast<double>(diff) / static_cast<double>(K);
      changed += per_token[static_cast<size_t>(t)];
      any += diff > 0;
      top1 += la.topk_indices[static_cast<size_t>(t * K)] != lb.topk_indices[static_cast<size_t>(t * K)];
    }
    const auto sa = layer_stats(la), sb = layer_stats(lb);
    double l1 = 0;
    for (int64_t e = 0; e < la.experts; ++e) l1 += std::fabs(sa.relative_load[static_cast<size_t>(e)] - sb.relative_load[static_cast<size_t>(e)]);
    l1 /= static_cast<double>(la.experts);  // mean |relative load difference| per expert
    const double frac = changed / static_cast<double>(T);
    bars.labels.push_back("layer " + std::to_string(li));
    bars.values.push_back(frac);
    h.row_labels.push_back("layer " + std::to_string(li));
    for (int64_t s = 0; s < shown; ++s) h.values.push_back(per_token[static_cast<size_t>(row0 + s)]);
    table << "<tr><td>" << li << "</td><td>" << num(100 * frac, 1) << "%</td><td>" << num(100 * any / static_cast<double>(T), 1) << "%</td><td>"
          << num(100 * top1 / static_cast<double>(T), 1) << "%</td><td>" << num(l1, 3) << "</td><td>" << num(sa.max_over_mean, 2) << "</td><td>"
          << num(sb.max_over_mean, 2) << "</td></tr>\n";
  }
  table << "</table>\n<p class=\"note\">changed top-k choices: the mean over tokens of the fraction of B's experts that A did not "
           "choose. top-1 changed: the highest-scoring expert differs. load L1 distance: the mean over experts of |relative load A - "
           "relative load B|.</p>\n";
  h.vmin = 0;
  h.vmax = 1;
  o << "<h2>Changed routing per layer</h2>\n" << svg_bars(bars) << table.str() << "<h2>Changed routing per token</h2>\n" << svg_heatmap(h);
  // load side by side
  const int64_t E = ra.layers[static_cast<size_t>(layers.front())].experts;
  Heatmap d;
  d.title = "Relative expert load, B minus A";
  d.x_label = "expert";
  d.y_label = "layer";
  d.rows = static_cast<int64_t>(layers.size());
  d.cols = E;
  d.diverging = true;
  d.vmax = 0;
  d.value_name = "load B - load A";
  for (int64_t e = 0; e < E; ++e) d.col_labels.push_back(std::to_string(e));
  for (auto li : layers) {
    const auto sa = layer_stats(ra.layers[static_cast<size_t>(li)]), sb = layer_stats(rb.layers[static_cast<size_t>(li)]);
    d.row_labels.push_back("layer " + std::to_string(li));
    for (int64_t e = 0; e < E; ++e) {
      const double v = sb.relative_load[static_cast<size_t>(e)] - sa.relative_load[static_cast<size_t>(e)];
      d.values.push_back(v);
      d.vmax = std::max(d.vmax, std::fabs(v));
    }
  }
  if (d.vmax == 0) d.vmax = 1;
  o << "<h2>Expert load difference</h2>\n" << svg_heatmap(d);
  return count_svgs_and_wrap(title, o.str());
}

}  // namespace dots1
