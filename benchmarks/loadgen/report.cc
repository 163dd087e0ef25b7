#include "benchmarks/loadgen/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ferry::loadgen {
namespace {

using Json = nlohmann::json;

void Row(FILE* out, const char* name, const Distribution& d) {
  std::fprintf(out, "  %-10s %10.2f %10.2f %10.2f %10.2f %10.2f\n", name, d.mean, d.median, d.p90,
               d.p99, d.max);
}

// Rounds up to 1, 2 or 5 times a power of ten, for axis ends.
double NiceCeil(double v) {
  if (!(v > 0)) return 1;
  double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (v <= m * p) return m * p;
  }
  return 10 * p;
}

constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                   "#9467bd", "#8c564b", "#17becf"};

// A plot panel: data coordinates mapped into a box at (x0, y0) of w x h.
struct Panel {
  double x0, y0, w, h, xmax, ymax;
  double X(double x) const { return x0 + w * x / xmax; }
  double Y(double y) const { return y0 + h - h * y / ymax; }
};

void Axes(std::string& svg, const Panel& p, const std::string& title, const std::string& xlabel,
          const std::string& ylabel) {
  absl::StrAppendFormat(
      &svg, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#333'/>\n",
      p.x0, p.y0, p.w, p.h);
  for (int i = 0; i <= 4; ++i) {
    double fx = p.xmax * i / 4, fy = p.ymax * i / 4;
    absl::StrAppendFormat(
        &svg, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%.4g</text>\n", p.X(fx),
        p.y0 + p.h + 15, fx);
    absl::StrAppendFormat(&svg,
                          "<text x='%.1f' y='%.1f' font-size='11' text-anchor='end'>%.4g</text>\n",
                          p.x0 - 4, p.Y(fy) + 4, fy);
    if (i > 0 && i < 4) {
      absl::StrAppendFormat(&svg, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n",
                            p.x0, p.Y(fy), p.x0 + p.w, p.Y(fy));
    }
  }
  absl::StrAppendFormat(&svg,
                        "<text x='%.1f' y='%.1f' font-size='14' text-anchor='middle'>%s</text>\n",
                        p.x0 + p.w / 2, p.y0 - 10, title);
  absl::StrAppendFormat(&svg,
                        "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle'>%s</text>\n",
                        p.x0 + p.w / 2, p.y0 + p.h + 34, xlabel);
  absl::StrAppendFormat(&svg,
                        "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle' "
                        "transform='rotate(-90 %.1f %.1f)'>%s</text>\n",
                        p.x0 - 45, p.y0 + p.h / 2, p.x0 - 45, p.y0 + p.h / 2, ylabel);
}

void Line(std::string& svg, const Panel& p, const std::vector<std::pair<double, double>>& xy,
          const char* color, bool markers) {
  if (xy.empty()) return;
  std::string pts;
  for (const auto& [x, y] : xy) absl::StrAppendFormat(&pts, "%.1f,%.1f ", p.X(x), p.Y(y));
  absl::StrAppendFormat(&svg, "<polyline points='%s' fill='none' stroke='%s' stroke-width='2'/>\n",
                        pts, color);
  if (!markers) return;
  for (const auto& [x, y] : xy) {
    absl::StrAppendFormat(&svg, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n", p.X(x), p.Y(y),
                          color);
  }
}

// Legend entry `index` of `count`: top left, or bottom right (where a CDF,
// rising from the bottom left to the top, leaves room).
void Legend(std::string& svg, const Panel& p, int index, int count, const std::string& label,
            const char* color, bool bottom_right = false) {
  double x = bottom_right ? p.x0 + p.w - 110 : p.x0 + 8;
  double y = bottom_right ? p.y0 + p.h - 10 - 16 * (count - 1 - index) : p.y0 + 14 + 16 * index;
  absl::StrAppendFormat(
      &svg, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%s' stroke-width='2'/>\n", x,
      y - 4, x + 18, y - 4, color);
  absl::StrAppendFormat(&svg, "<text x='%.1f' y='%.1f' font-size='11'>%s</text>\n", x + 22, y,
                        label);
}

}  // namespace

std::string RateLabel(double request_rate) {
  if (std::isnan(request_rate)) return "trace";  // arrivals replayed from a trace
  return std::isinf(request_rate) ? "inf" : absl::StrFormat("%g", request_rate);
}

void PrintTable(FILE* out, const SweepPoint& point, const Slo& slo) {
  const BenchSummary& s = point.summary;
  std::fprintf(out, "============ ferry bench: request rate %s ============\n",
               RateLabel(point.request_rate).c_str());
  std::fprintf(out, "  requests: %d completed, %d failed, of %d\n", s.completed, s.failed,
               s.num_requests);
  for (const auto& [kind, count] : s.errors) {
    auto example = s.error_examples.find(kind);
    std::fprintf(out, "    error %-20s %d%s%s\n", kind.c_str(), count,
                 example == s.error_examples.end() ? "" : ": ",
                 example == s.error_examples.end() ? "" : example->second.substr(0, 160).c_str());
  }
  if (s.output_token_mismatches > 0) {
    std::fprintf(out, "  output length != max_tokens: %d requests\n", s.output_token_mismatches);
  }
  std::fprintf(out, "  duration:                  %10.2f s\n", s.duration_s);
  std::fprintf(out, "  input tokens:              %10lld\n",
               static_cast<long long>(s.total_input_tokens));
  std::fprintf(out, "  output tokens:             %10lld\n",
               static_cast<long long>(s.total_output_tokens));
  std::fprintf(out, "  request throughput:        %10.2f req/s\n", s.request_throughput);
  std::fprintf(out, "  output token throughput:   %10.2f tok/s\n", s.output_throughput);
  std::fprintf(out, "  total token throughput:    %10.2f tok/s\n", s.total_token_throughput);
  if (slo.ttft_ms || slo.tpot_ms) {
    std::string bounds;
    if (slo.ttft_ms) absl::StrAppendFormat(&bounds, " TTFT <= %g ms", *slo.ttft_ms);
    if (slo.tpot_ms) absl::StrAppendFormat(&bounds, " TPOT <= %g ms", *slo.tpot_ms);
    std::fprintf(out, "  goodput:                   %10.2f req/s (%d of %d met%s)\n", s.goodput,
                 s.good_requests, s.num_requests, bounds.c_str());
  }
  std::fprintf(out, "  %-10s %10s %10s %10s %10s %10s\n", "(ms)", "mean", "median", "p90", "p99",
               "max");
  Row(out, "TTFT", s.ttft_ms);
  Row(out, "TPOT", s.tpot_ms);
  Row(out, "ITL", s.itl_ms);
  Row(out, "E2E", s.e2e_ms);
}

void PrintSweepTable(FILE* out, const std::vector<SweepPoint>& points) {
  std::fprintf(out, "%8s %8s %10s %10s %10s %10s %10s %10s %7s\n", "rate", "req/s", "out tok/s",
               "goodput", "TTFT p50", "TTFT p99", "TPOT mean", "ITL p99", "errors");
  for (const SweepPoint& p : points) {
    const BenchSummary& s = p.summary;
    std::fprintf(out, "%8s %8.2f %10.1f %10.2f %10.1f %10.1f %10.2f %10.2f %7d\n",
                 RateLabel(p.request_rate).c_str(), s.request_throughput, s.output_throughput,
                 s.goodput, s.ttft_ms.median, s.ttft_ms.p99, s.tpot_ms.mean, s.itl_ms.p99,
                 s.failed);
  }
}

Json DistributionJson(const Distribution& d) {
  return {{"count", d.count}, {"mean", d.mean}, {"median", d.median},
          {"p90", d.p90},     {"p99", d.p99},   {"max", d.max}};
}

void PrintFaults(FILE* out, const FaultReport& r, const FaultOptions& options) {
  if (options.migrate_every_s > 0) {
    std::fprintf(out,
                 "  migrations: %d of %d attempted succeeded (%d ticks found nothing to move), "
                 "downtime p50 %.2f ms, max %.2f ms\n",
                 r.migrations_ok, r.migrations_attempted, r.idle_ticks, r.downtime_ms.median,
                 r.downtime_ms.max);
    for (const auto& [kind, count] : r.failures) {
      auto example = r.failure_examples.find(kind);
      std::fprintf(
          out, "    migration failure %-16s %d: %s\n", kind.c_str(), count,
          example == r.failure_examples.end() ? "" : example->second.substr(0, 160).c_str());
    }
  }
  if (options.kill_worker_at_s.empty()) return;
  std::fprintf(out, "  worker kills: %d of %d attempted succeeded\n", r.kills_ok,
               r.kills_attempted);
  for (const KillRecord& k : r.kills) {
    std::fprintf(out, "    killed %s (%s) at %.3f s, running %zu requests\n", k.worker.id.c_str(),
                 k.worker.address.c_str(), k.at_s, k.worker.requests.size());
  }
  for (const auto& [kind, count] : r.kill_failures) {
    auto example = r.kill_failure_examples.find(kind);
    std::fprintf(
        out, "    kill failure %-16s %d: %s\n", kind.c_str(), count,
        example == r.kill_failure_examples.end() ? "" : example->second.substr(0, 160).c_str());
  }
  if (r.kills_ok == 0) return;
  const KillImpact& k = r.kill_impact;
  std::fprintf(out,
               "  streams in flight at a kill: %d (%d on the killed worker), %d of them failed\n",
               k.streams_in_flight, k.streams_on_killed_worker, k.streams_failed);
  std::fprintf(out, "  %-32s %7s %10s %10s %10s\n", "(ms)", "count", "median", "p99", "max");
  auto row = [out](const char* name, const Distribution& d) {
    std::fprintf(out, "  %-32s %7d %10.2f %10.2f %10.2f\n", name, d.count, d.median, d.p99, d.max);
  };
  row("kill -> next token", k.next_token_ms);
  row("recovery: longest token wait", k.recovery_ms);
  row("  streams on the killed worker", k.recovery_on_killed_worker_ms);
  const std::string reruns_failed =
      k.references_failed > 0 ? absl::StrFormat("; %d reruns failed", k.references_failed) : "";
  std::fprintf(
      out,
      "  tokens against a fault-free rerun of %d completed streams: %lld lost (%d streams), "
      "%lld duplicated (%d streams)%s\n",
      k.streams_checked, static_cast<long long>(k.tokens_lost), k.streams_with_lost_tokens,
      static_cast<long long>(k.tokens_duplicated), k.streams_with_duplicated_tokens,
      reruns_failed.c_str());
}

Json SummaryJson(const BenchSummary& s) {
  Json errors = Json::object();
  for (const auto& [kind, count] : s.errors) errors[kind] = count;
  Json examples = Json::object();
  for (const auto& [kind, detail] : s.error_examples) examples[kind] = detail;
  return {{"num_requests", s.num_requests},
          {"completed", s.completed},
          {"failed", s.failed},
          {"errors", errors},
          {"error_examples", examples},
          {"duration_s", s.duration_s},
          {"total_input_tokens", s.total_input_tokens},
          {"total_output_tokens", s.total_output_tokens},
          {"request_throughput", s.request_throughput},
          {"output_throughput", s.output_throughput},
          {"total_token_throughput", s.total_token_throughput},
          {"goodput", s.goodput},
          {"good_requests", s.good_requests},
          {"output_token_mismatches", s.output_token_mismatches},
          {"ttft_ms", DistributionJson(s.ttft_ms)},
          {"tpot_ms", DistributionJson(s.tpot_ms)},
          {"itl_ms", DistributionJson(s.itl_ms)},
          {"e2e_ms", DistributionJson(s.e2e_ms)}};
}

std::string SvgPlot(const std::vector<SweepPoint>& points) {
  const double width = 1000, height = 420;
  std::string svg = absl::StrFormat(
      "<svg xmlns='http://www.w3.org/2000/svg' width='%g' height='%g' font-family='sans-serif'>\n"
      "<rect width='100%%' height='100%%' fill='white'/>\n",
      width, height);
  // Left: latency against output throughput, one point per rate.
  std::vector<std::pair<double, double>> p50, p99, tpot;
  double xmax = 0, ymax = 0, cdf_xmax = 0;
  for (const SweepPoint& p : points) {
    const BenchSummary& s = p.summary;
    p50.emplace_back(s.output_throughput, s.ttft_ms.median);
    p99.emplace_back(s.output_throughput, s.ttft_ms.p99);
    tpot.emplace_back(s.output_throughput, s.tpot_ms.mean);
    xmax = std::max(xmax, s.output_throughput);
    ymax = std::max({ymax, s.ttft_ms.p99, s.tpot_ms.mean});
    if (!s.ttft_values_ms.empty()) cdf_xmax = std::max(cdf_xmax, s.ttft_values_ms.back());
  }
  Panel left{70, 40, 380, 320, NiceCeil(xmax), NiceCeil(ymax)};
  Axes(svg, left, "Latency vs throughput", "output tokens/s", "ms");
  Line(svg, left, p50, kColors[0], true);
  Line(svg, left, p99, kColors[1], true);
  Line(svg, left, tpot, kColors[2], true);
  Legend(svg, left, 0, 3, "TTFT p50", kColors[0]);
  Legend(svg, left, 1, 3, "TTFT p99", kColors[1]);
  Legend(svg, left, 2, 3, "TPOT mean", kColors[2]);
  // Right: TTFT CDF for each rate.
  Panel right{580, 40, 380, 320, NiceCeil(cdf_xmax), 1.0};
  Axes(svg, right, "TTFT CDF", "TTFT (ms)", "fraction of requests");
  for (size_t i = 0; i < points.size(); ++i) {
    const std::vector<double>& v = points[i].summary.ttft_values_ms;
    std::vector<std::pair<double, double>> cdf;
    for (size_t k = 0; k < v.size(); ++k) {
      cdf.emplace_back(v[k], static_cast<double>(k) / v.size());
      cdf.emplace_back(v[k], static_cast<double>(k + 1) / v.size());
    }
    const char* color = kColors[i % std::size(kColors)];
    Line(svg, right, cdf, color, false);
    Legend(svg, right, static_cast<int>(i), static_cast<int>(points.size()),
           "rate " + RateLabel(points[i].request_rate), color, /*bottom_right=*/true);
  }
  svg += "</svg>\n";
  return svg;
}

absl::Status WriteSvgPlot(const std::string& path, const std::vector<SweepPoint>& points) {
  std::ofstream out(path);
  out << SvgPlot(points);
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

namespace {

bool HaveGnuplot() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

// Quotes a path for a gnuplot string literal.
std::string GnuplotQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "''";
    else out += c;
  }
  return out + "'";
}

absl::Status WriteGnuplotPng(const std::string& path, const std::vector<SweepPoint>& points) {
  const std::string base = path + ".gp";
  std::ofstream curve(base + ".curve.dat");
  for (const SweepPoint& p : points) {
    curve << p.summary.output_throughput << " " << p.summary.ttft_ms.median << " " << p.summary.ttft_ms.p99 << " "
          << p.summary.tpot_ms.mean << "\n";
  }
  curve.close();
  std::string script = absl::StrCat("set terminal pngcairo size 1200,480\nset output ", GnuplotQuote(path),
                                    "\nset multiplot layout 1,2\nset grid\n",
                                    "set xlabel 'output tokens/s'\nset ylabel 'ms'\nset title 'latency vs throughput'\n",
                                    "plot ", GnuplotQuote(base + ".curve.dat"),
                                    " using 1:2 with linespoints title 'TTFT p50', '' using 1:3 with linespoints "
                                    "title 'TTFT p99', '' using 1:4 with linespoints title 'TPOT mean'\n",
                                    "set xlabel 'TTFT ms'\nset ylabel 'fraction'\nset title 'TTFT CDF'\nplot ");
  for (size_t i = 0; i < points.size(); ++i) {
    const std::string dat = absl::StrCat(base, ".cdf", i, ".dat");
    std::ofstream cdf(dat);
    const std::vector<double>& v = points[i].summary.ttft_values_ms;
    for (size_t k = 0; k < v.size(); ++k) cdf << v[k] << " " << static_cast<double>(k + 1) / v.size() << "\n";
    absl::StrAppend(&script, i ? ", " : "", GnuplotQuote(dat), " using 1:2 with lines title ",
                    GnuplotQuote("rate " + RateLabel(points[i].request_rate)));
  }
  script += "\nunset multiplot\n";
  std::ofstream(base) << script;
  std::string shell_path = "'";
  for (char c : base) shell_path += c == '\'' ? std::string("'\\''") : std::string(1, c);
  shell_path += "'";
  const int rc = std::system(("gnuplot " + shell_path + " >/dev/null 2>&1").c_str());
  std::remove(base.c_str());
  std::remove((base + ".curve.dat").c_str());
  for (size_t i = 0; i < points.size(); ++i) std::remove(absl::StrCat(base, ".cdf", i, ".dat").c_str());
  if (rc != 0) return absl::InternalError(absl::StrCat("gnuplot failed writing ", path));
  return absl::OkStatus();
}

}  // namespace

absl::Status WritePlot(const std::string& path, const std::vector<SweepPoint>& points) {
  const bool png = path.size() >= 4 && path.compare(path.size() - 4, 4, ".png") == 0;
  if (!png) return WriteSvgPlot(path, points);
  if (HaveGnuplot()) return WriteGnuplotPng(path, points);
  const std::string svg = path.substr(0, path.size() - 4) + ".svg";
  std::fprintf(stderr, "note: gnuplot is not installed; wrote the plot as SVG to %s instead of PNG\n", svg.c_str());
  return WriteSvgPlot(svg, points);
}

}  // namespace ferry::loadgen
