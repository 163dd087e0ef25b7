// The scheduler's per-request bookkeeping, shared by its source files.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "scheduler/service/peer_messages.h"
#include "scheduler/service/scheduler.h"

namespace ferry {

struct Scheduler::Sample {
  int index = 0;
  SampleProgress progress;
  bool finished = false;
  uint64_t call_id = 0;          // the stream it arrives on; 0: not placed
  std::string worker_id;         // where it runs (or ran last)
  int recoveries = 0;
  bool hand_off_pending = false; // PD: move to a decode worker after token 1
  bool migrating = false;
  absl::Time last_migrated = absl::InfinitePast();
  absl::Time unplaced_since = absl::InfinitePast();
  std::string last_failed_worker;
};

struct Scheduler::Request {
  std::string id;
  v1::GenerateRequest request;   // as the client sent it, with a seed
  std::shared_ptr<ClientStream> client;
  std::vector<Sample> samples;
  bool dispatched = false;       // sent to a worker at least once
  absl::Time arrived;
  int num_samples() const { return static_cast<int>(samples.size()); }
};

struct Scheduler::Call {
  uint64_t id = 0;
  std::string request_id;
  // The id the worker knows it by: the request's, or for one sample of an
  // n > 1 request resumed on its own, "<id>/<sample>" (a worker holds one
  // request per id).
  std::string upstream_id;
  std::vector<int> samples;      // the samples this stream carries
  std::string worker_id;
  std::string address;
  std::shared_ptr<UpstreamCall> call;
  std::map<int, int64_t> next_pos;  // per sample: position of its next token
};


}  // namespace ferry
