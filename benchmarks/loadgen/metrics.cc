#include "benchmarks/loadgen/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <numeric>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ferry::loadgen {

std::optional<double> Tpot(const RequestResult& r) {
  if (!r.ok || r.output_tokens < 2) return std::nullopt;
  return (r.e2e_s - r.ttft_s) / (r.output_tokens - 1);
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(rank));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  double frac = rank - static_cast<double>(lo);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * frac;
}

Distribution Summarize(std::vector<double> values) {
  Distribution d;
  if (values.empty()) return d;
  std::sort(values.begin(), values.end());
  d.count = static_cast<int>(values.size());
  d.mean = std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
  d.median = Percentile(values, 50);
  d.p90 = Percentile(values, 90);
  d.p99 = Percentile(values, 99);
  d.max = values.back();
  return d;
}

absl::StatusOr<Slo> ParseSlo(const std::string& text) {
  Slo slo;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::vector<absl::string_view> kv = absl::StrSplit(part, absl::MaxSplits(':', 1));
    double ms = 0;
    if (kv.size() != 2 || !absl::SimpleAtod(kv[1], &ms) || !(ms >= 0) || std::isinf(ms)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--slo: expected ttft:MS,tpot:MS with milliseconds >= 0, got '", part, "'"));
    }
    absl::string_view key = absl::StripAsciiWhitespace(kv[0]);
    if (key == "ttft") {
      slo.ttft_ms = ms;
    } else if (key == "tpot") {
      slo.tpot_ms = ms;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--slo: unknown metric '", key, "' (ttft or tpot)"));
    }
  }
  return slo;
}

bool MeetsSlo(const RequestResult& r, const Slo& slo) {
  if (!r.ok) return false;
  if (slo.ttft_ms && r.ttft_s * 1e3 > *slo.ttft_ms) return false;
  if (slo.tpot_ms) {
    std::optional<double> tpot = Tpot(r);
    if (tpot && *tpot * 1e3 > *slo.tpot_ms) return false;
  }
  return true;
}

BenchSummary Summarize(const std::vector<RequestResult>& results, double duration_s,
                       const Slo& slo) {
  BenchSummary s;
  s.num_requests = static_cast<int>(results.size());
  s.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  for (const RequestResult& r : results) {
    if (!r.ok) {
      ++s.failed;
      const std::string kind = r.error.empty() ? "unknown" : r.error;
      if (++s.errors[kind] == 1 && !r.error_detail.empty()) s.error_examples[kind] = r.error_detail;
      continue;
    }
    ++s.completed;
    s.total_input_tokens += r.prompt_tokens;
    s.total_output_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s * 1e3);
    e2e.push_back(r.e2e_s * 1e3);
    if (std::optional<double> t = Tpot(r)) tpot.push_back(*t * 1e3);
    for (double gap : r.itl_s) itl.push_back(gap * 1e3);
    if (MeetsSlo(r, slo)) ++s.good_requests;
    if (r.requested_output_tokens > 0 && r.output_tokens != r.requested_output_tokens)
      ++s.output_token_mismatches;
  }
  if (duration_s > 0) {
    s.request_throughput = s.completed / duration_s;
    s.output_throughput = static_cast<double>(s.total_output_tokens) / duration_s;
    s.total_token_throughput =
        static_cast<double>(s.total_input_tokens + s.total_output_tokens) / duration_s;
    s.goodput = s.good_requests / duration_s;
  }
  s.ttft_ms = Summarize(ttft);
  s.tpot_ms = Summarize(tpot);
  s.itl_ms = Summarize(itl);
  s.e2e_ms = Summarize(e2e);
  std::sort(ttft.begin(), ttft.end());
  s.ttft_values_ms = std::move(ttft);
  return s;
}

}  // namespace ferry::loadgen
