// Collects a running engine's events per request and sample, for tests.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine.h"

namespace ferry {

// Collects the events of many requests; thread-safe.
class Collector {
 public:
  EventSink Sink() {
    return [this](EngineEvent ev) {
      absl::MutexLock lock(&mu_);
      auto& r = results_[ev.request_id][ev.sample_index];
      r.tokens.insert(r.tokens.end(), ev.token_ids.begin(), ev.token_ids.end());
      r.logprobs.insert(r.logprobs.end(), ev.logprobs.begin(), ev.logprobs.end());
      if (!ev.prompt_logprobs.empty()) {
        r.prompt_logprobs = ev.prompt_logprobs;
        ++r.events_with_prompt_logprobs;
      }
      r.text += ev.text;
      if (ev.finish != FinishReason::kNone) {
        r.finish = ev.finish;
        r.last = ev;
        ++finished_;
      }
    };
  }
  struct Result {
    std::vector<int32_t> tokens;
    std::vector<SampledToken> logprobs;
    std::vector<SampledToken> prompt_logprobs;
    int events_with_prompt_logprobs = 0;
    std::string text;
    FinishReason finish = FinishReason::kNone;
    EngineEvent last;
  };
  // Waits until `n` samples finished (or 60 s).
  bool Wait(int n) {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finished_ >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(60));
  }
  Result Get(const std::string& id, int sample = 0) {
    absl::MutexLock lock(&mu_);
    return results_[id][sample];
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::map<int, Result>> results_ ABSL_GUARDED_BY(mu_);
  int finished_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace ferry
