// Runs one greedy request on an in-process Engine and waits for its end: the
// helper of the engine-level tests of the prefix cache (pull, host tier,
// export), where each request's tokens are compared with a recompute.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "gtest/gtest.h"

namespace ferry::testing {

struct GreedyOutcome {
  std::vector<int32_t> tokens;
  int cached_prompt_tokens = -1;  // as the last event reports it
  FinishReason finish = FinishReason::kNone;
};

// Greedy, ignore_eos, `max_tokens` tokens; waits up to 60 s.
inline GreedyOutcome RunGreedy(Engine& engine, const std::string& id, std::vector<int32_t> prompt,
                               int max_tokens = 16) {
  GenerateInput in;
  in.request_id = id;
  in.prompt_ids = std::move(prompt);
  in.params.temperature = 0;
  in.params.max_tokens = max_tokens;
  in.params.ignore_eos = true;
  absl::Mutex mu;
  GreedyOutcome out;
  bool done = false;
  EXPECT_TRUE(engine
                  .Submit(std::move(in),
                          [&](EngineEvent ev) {
                            absl::MutexLock lock(&mu);
                            out.tokens.insert(out.tokens.end(), ev.token_ids.begin(), ev.token_ids.end());
                            if (ev.finish != FinishReason::kNone) {
                              out.finish = ev.finish;
                              out.cached_prompt_tokens = ev.cached_prompt_tokens;
                              done = true;
                            }
                          })
                  .ok());
  absl::MutexLock lock(&mu);
  mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(60));
  return out;
}

}  // namespace ferry::testing
