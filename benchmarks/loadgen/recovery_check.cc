#include "benchmarks/loadgen/recovery_check.h"

#include <algorithm>
#include <set>

namespace ferry::loadgen {
namespace {

std::string Concat(const std::vector<std::string>& chunks) {
  std::string out;
  for (const std::string& c : chunks) out += c;
  return out;
}

}  // namespace

ChunkAlignment AlignChunks(const std::vector<std::string>& reference,
                           const std::vector<std::string>& received) {
  const int n = static_cast<int>(reference.size()), m = static_cast<int>(received.size());
  ChunkAlignment a;
  if (Concat(reference) == Concat(received)) {
    a.matched = n;
    return a;
  }
  // Two rows of the LCS table: prev[j] = LCS(reference[..i-1], received[..j]).
  std::vector<int> prev(m + 1, 0), row(m + 1, 0);
  for (int i = 1; i <= n; ++i) {
    for (int j = 1; j <= m; ++j) {
      row[j] =
          reference[i - 1] == received[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], row[j - 1]);
    }
    std::swap(prev, row);
  }
  a.matched = prev[m];
  a.lost = n - a.matched;
  a.duplicated = m - a.matched;
  return a;
}

std::vector<double> OutputTimes(const RequestResult& r) {
  std::vector<double> times;
  if (r.ttft_s <= 0 && r.itl_s.empty()) return times;  // no output at all
  double t = r.start_s + r.ttft_s;
  times.push_back(t);
  for (double gap : r.itl_s) times.push_back(t += gap);
  return times;
}

bool IsClusterRequest(const std::string& response_id,
                      const std::vector<std::string>& cluster_request_ids) {
  if (response_id.empty()) return false;
  for (const std::string& id : cluster_request_ids) {
    if (id == response_id) return true;
    if (id.size() > response_id.size() + 1 && id.compare(0, response_id.size(), response_id) == 0 &&
        id[response_id.size()] == '-') {
      return true;
    }
  }
  return false;
}

KillImpact MeasureKills(const std::vector<RequestResult>& results,
                        const std::vector<KillRecord>& kills) {
  KillImpact impact;
  std::vector<double> next_token_ms, recovery_ms, killed_worker_ms;
  std::set<int> in_flight;
  for (const KillRecord& k : kills) {
    for (size_t i = 0; i < results.size(); ++i) {
      const RequestResult& r = results[i];
      if (!(r.start_s < k.at_s && r.start_s + r.e2e_s > k.at_s)) continue;
      ++impact.streams_in_flight;
      in_flight.insert(static_cast<int>(i));
      const bool on_killed_worker = IsClusterRequest(r.response_id, k.worker.requests);
      if (on_killed_worker) ++impact.streams_on_killed_worker;
      const std::vector<double> times = OutputTimes(r);
      auto next = std::upper_bound(times.begin(), times.end(), k.at_s);
      if (next != times.end()) next_token_ms.push_back((*next - k.at_s) * 1e3);
      double longest = -1, previous = r.start_s;
      for (double t : times) {
        if (t > k.sent_s) longest = std::max(longest, t - std::max(previous, k.sent_s));
        previous = t;
      }
      if (longest < 0) continue;  // no output after the kill: it failed
      recovery_ms.push_back(longest * 1e3);
      if (on_killed_worker) killed_worker_ms.push_back(longest * 1e3);
    }
  }
  for (int i : in_flight) {
    if (!results[i].ok) ++impact.streams_failed;
  }
  impact.to_check.assign(in_flight.begin(), in_flight.end());
  impact.next_token_ms = Summarize(std::move(next_token_ms));
  impact.recovery_ms = Summarize(std::move(recovery_ms));
  impact.recovery_on_killed_worker_ms = Summarize(std::move(killed_worker_ms));
  return impact;
}

void CompareWithReferences(const std::vector<RequestResult>& results,
                           const std::vector<RequestResult>& references, KillImpact* impact) {
  for (size_t k = 0; k < impact->to_check.size() && k < references.size(); ++k) {
    const RequestResult& got = results[impact->to_check[k]];
    const RequestResult& want = references[k];
    if (!want.ok) {
      ++impact->references_failed;
      continue;
    }
    if (!got.ok) continue;
    ++impact->streams_checked;
    const ChunkAlignment a = AlignChunks(want.output_chunks, got.output_chunks);
    impact->tokens_lost += a.lost;
    impact->tokens_duplicated += a.duplicated;
    if (a.lost > 0) ++impact->streams_with_lost_tokens;
    if (a.duplicated > 0) ++impact->streams_with_duplicated_tokens;
  }
}

}  // namespace ferry::loadgen
