// One sample of a request inside the engine: its tokens, how many of them
// have keys and values in the KV cache, its blocks, and its sampling and
// detokenization state. Owned by the step loop's thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/dist_attention.h"
#include "engine/engine_types.h"
#include "engine/reasoning_tracker.h"
#include "engine/sampler.h"
#include "engine/stop_checker.h"
#include "engine/structured/grammar.h"
#include "engine/tokenizer/tokenizer.h"
#include "kvcache/block_table.h"

namespace ferry {

// What the n samples of one request share.
struct RequestGroup {
  GenerateInput input;
  EventSink sink;
  uint64_t arrival = 0;           // submission order
  int samples_pending = 0;        // samples still to be forked off sample 0
  int samples_unfinished = 0;     // samples that have not finished
  // params.prompt_logprobs: entry i is for prompt token i + 1, from the
  // logits at position i (filled as the prefill goes).
  std::vector<SampledToken> prompt_logprobs;
};

struct Sequence {
  Sequence(std::shared_ptr<RequestGroup> g, int sample, BlockTable t, uint64_t seed,
           const Tokenizer& tokenizer)
      : group(std::move(g)),
        sample_index(sample),
        tokens(group->input.prompt_ids),
        num_prompt_tokens(static_cast<int>(tokens.size())),
        table(std::move(t)),
        sampler(group->input.params, seed),
        detokenizer(tokenizer, group->input.params.skip_special_tokens, tokens.back()),
        stop(group->input.params.stop, group->input.params.include_stop_str_in_output) {
    if (group->input.grammar) matcher.emplace(group->input.grammar);
    if (group->input.params.reasoning.active()) {
      reasoning.emplace(group->input.params.reasoning, group->input.reasoning_start_ids,
                        group->input.reasoning_end_ids, group->input.grammar != nullptr);
    }
  }

  const std::string& id() const { return group->input.request_id; }
  RemoteKv* remote_kv() const { return group->input.remote_kv.get(); }
  // Tokens whose K/V this worker stores for a context of `num_tokens`: all
  // of them, or the local part when the rest lives on lenders.
  int LocalTokens(int num_tokens) const;
  int priority() const { return group->input.priority; }
  uint64_t arrival() const { return group->arrival; }
  int num_tokens() const { return static_cast<int>(tokens.size()); }
  int num_output_tokens() const { return num_tokens() - num_prompt_tokens; }
  bool in_prefill() const { return num_computed < num_prompt_tokens; }
  std::span<const int32_t> prompt() const { return {tokens.data(), size_t(num_prompt_tokens)}; }
  std::span<const int32_t> output() const {
    return {tokens.data() + num_prompt_tokens, size_t(num_output_tokens())};
  }

  std::shared_ptr<RequestGroup> group;
  int sample_index;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int num_prompt_tokens;
  int num_computed = 0;         // tokens whose K/V are in the cache
  int num_cached_prompt = 0;    // prompt tokens found in the prefix cache
  BlockTable table;
  Sampler sampler;
  IncrementalDetokenizer detokenizer;
  StopChecker stop;
  int64_t emitted_bytes = 0;    // text delivered to the client so far
  bool finished = false;
  bool prompt_logprobs_sent = false;
  // Structured output: the grammar's state after the first `matched_tokens`
  // output tokens (it catches up lazily, so resumed and forked samples need
  // nothing else).
  std::optional<structured::Matcher> matcher;
  int matched_tokens = 0;
  // Reasoning models: where the thinking is, after the first
  // reasoning->tokens() output tokens (it catches up lazily too). The
  // grammar applies from its answer on.
  std::optional<ReasoningTracker> reasoning;
  // Speculative decoding, within one step only: the last num_drafted
  // entries of `tokens` are proposed, not generated.
  int num_drafted = 0;
  // Removes the drafts from `tokens` and returns them.
  std::vector<int32_t> TakeDrafts() {
    const auto from = tokens.end() - num_drafted;
    std::vector<int32_t> drafts(from, tokens.end());
    tokens.erase(from, tokens.end());
    num_drafted = 0;
    return drafts;
  }
  // How many drafts the next step may propose (0: the engine's maximum):
  // after a rejection, one more than were accepted; after a full
  // acceptance, one more than before. Rejected drafts cost compute, which a
  // CPU step pays for.
  int draft_limit = 0;
};

inline int Sequence::LocalTokens(int num_tokens) const {
  const RemoteKv* r = remote_kv();
  return r == nullptr ? num_tokens : std::min(num_tokens, r->local_tokens());
}

}  // namespace ferry
