// Helpers of the engine-level tests of the prefix cache (pull, host tier,
// export): one greedy request run to its end, whose tokens are compared with
// a recompute, and the block hashes a scheduler would name for a prompt.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/engine.h"
#include "gtest/gtest.h"
#include "kvcache/block_pool.h"

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

// The hash chain of the first `blocks` full blocks of `prompt` on `engine`
// (blocks of `block_size` tokens), as the scheduler sends it.
inline std::vector<uint64_t> ChainHashes(const Engine& engine, const std::vector<int32_t>& prompt, int blocks,
                                         int block_size = 16) {
  std::vector<uint64_t> hashes;
  uint64_t parent = engine.block_hash_root();
  for (int b = 0; b < blocks; ++b) {
    parent = HashBlockTokens(
        parent, std::span<const int32_t>(prompt).subspan(static_cast<size_t>(b) * block_size, block_size), 0);
    hashes.push_back(parent);
  }
  return hashes;
}

}  // namespace ferry::testing
