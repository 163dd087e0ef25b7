// What killing workers during a load did to the streams: how long the
// streams in flight at each kill waited for their next token, and whether
// any token was lost or repeated. Tokens are checked by running each such
// request again without faults and aligning the two chunk sequences: with
// greedy sampling a recovered stream must carry the reference's chunks, no
// fewer and no more. Pure functions over the measured results.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "benchmarks/loadgen/metrics.h"

namespace ferry::loadgen {

// A worker picked to be killed, from GET /admin/cluster.
struct WorkerPick {
  std::string id;
  std::string address;
  std::vector<std::string> requests;  // the cluster's ids of the requests it ran
};

// A kill the admin API confirmed. Times are seconds of the run.
struct KillRecord {
  WorkerPick worker;
  double sent_s = 0;  // POST /admin/kill sent
  double at_s = 0;    // its answer received (the worker dies about then)
};

struct ChunkAlignment {
  int matched = 0;
  int lost = 0;        // reference chunks the stream did not carry
  int duplicated = 0;  // stream chunks with no place in the reference
};

// A longest-common-subsequence alignment of a stream's output chunks (each
// SSE delta, about a token) against the reference's. Equal concatenated
// texts match fully, however they were split into chunks.
ChunkAlignment AlignChunks(const std::vector<std::string>& reference,
                           const std::vector<std::string>& received);

// When each output chunk of `r` arrived, in run seconds (from its start,
// TTFT and inter-chunk gaps).
std::vector<double> OutputTimes(const RequestResult& r);

// Whether the stream with chat/completion id `response_id` is one of
// `cluster_request_ids` (Ferry names a request's samples "<id>-<index>").
bool IsClusterRequest(const std::string& response_id,
                      const std::vector<std::string>& cluster_request_ids);

struct KillImpact {
  // Streams sent before a kill and still open when it was confirmed (once
  // per kill), of which ran on the killed worker, and the distinct ones
  // that ended in an error.
  int streams_in_flight = 0;
  int streams_on_killed_worker = 0;
  int streams_failed = 0;
  // Streams in flight: from the kill's confirmation to the stream's next
  // output chunk. The worker dies only just after confirming, so a stream
  // on it may still get a chunk first: see recovery_ms.
  Distribution next_token_ms;
  // Streams in flight: the longest wait for an output chunk after the kill
  // was sent, counted from the kill or from the stream's previous chunk,
  // whichever is later. For a stream on a surviving worker, about one
  // inter-token gap (longer while the survivor recomputes the recovered
  // requests); for a stream on the killed worker, the time from its last
  // token before the death to its first after the recovery.
  Distribution recovery_ms;
  // recovery_ms of the streams the cluster ran on the killed worker.
  Distribution recovery_on_killed_worker_ms;
  // Indices into the results of the distinct streams in flight at a kill,
  // ascending: the requests to run again for the token check.
  std::vector<int> to_check;

  // Filled by CompareWithReferences. Only streams that completed are
  // compared (a failed stream is in streams_failed).
  int streams_checked = 0;
  int references_failed = 0;  // the fault-free run failed: not compared
  int64_t tokens_lost = 0;
  int64_t tokens_duplicated = 0;
  int streams_with_lost_tokens = 0;
  int streams_with_duplicated_tokens = 0;
};

// The streams in flight at each kill and how long they waited for output.
KillImpact MeasureKills(const std::vector<RequestResult>& results,
                        const std::vector<KillRecord>& kills);

// Aligns results[impact.to_check[k]] with references[k] (the same request
// run again without faults) for every k, and fills the token counts.
void CompareWithReferences(const std::vector<RequestResult>& results,
                           const std::vector<RequestResult>& references, KillImpact* impact);

}  // namespace ferry::loadgen
