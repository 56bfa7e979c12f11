// libFuzzer target: `dots1 report` on an arbitrary trace file. The first two bytes choose report options
// (row, max_tokens, one attention map, one expert-layer map), the rest is the trace (a safetensors file) for
// read_trace and render_report, and render_comparison of the trace with itself. Rejections must be the typed
// errors the API documents (SafetensorsError for the file, InputError for options that do not fit the trace,
// ResourceError from the memory preflight); an accepted trace must render a complete page. ASan catches any
// read or write outside a tensor, which is what the trace checks exist to prevent.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include <dots1/instrument/report.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  dots1::ReportOptions opt;
  opt.row = static_cast<int64_t>(data[0] & 3) - 1;           // -1 .. 2
  opt.max_tokens = static_cast<int64_t>(data[0] >> 2 & 7) - 1;  // -1 .. 6
  if (data[1] & 1) opt.attention.emplace_back((data[1] >> 1) & 3, (data[1] >> 3) & 3);
  if (data[1] & 0x20) opt.expert_layers.push_back((data[1] >> 6) & 3);
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data + 2), size - 2);
  dots1::Trace trace;
  try {
    trace = dots1::read_trace(dots1::SafetensorsFile::parse_buffer(bytes, "fuzz.safetensors"));
  } catch (const dots1::SafetensorsError&) {
    return 0;
  } catch (const dots1::ResourceError&) {
    return 0;
  }
  const auto& r = trace.recording;
  FUZZ_CHECK(r.batch > 0 && r.seq > 0, "an accepted trace has a geometry");
  for (const auto& l : r.layers) {
    if (!l.moe) continue;
    FUZZ_CHECK(l.topk_indices.size() == static_cast<size_t>(r.batch * r.seq * l.top_k), "topk_indices shape");
    for (int32_t e : l.topk_indices) FUZZ_CHECK(e >= 0 && e < l.experts, "expert index in range");
  }
  for (int compare = 0; compare < 2; ++compare) {
    try {
      const std::string html = compare ? dots1::render_comparison(trace, trace, opt) : dots1::render_report(trace, opt);
      FUZZ_CHECK(html.size() > 100 && html.find("</html>") != std::string::npos, "a rendered page is complete");
    } catch (const dots1::InputError&) {
    } catch (const dots1::ResourceError&) {
    }
  }
  return 0;
}
