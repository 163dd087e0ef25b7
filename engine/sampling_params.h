// What a request asks of sampling and stopping (OpenAI / vLLM semantics).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/structured/structured_output.h"

namespace ferry {

struct SamplingParams {
  float temperature = 1.0f;         // 0: greedy
  int top_k = 0;                    // <= 0: off
  float top_p = 1.0f;               // 1: off; must be in (0, 1]
  float min_p = 0.0f;               // 0: off
  float repetition_penalty = 1.0f;  // 1: off; > 0 (prompt and output tokens)
  float frequency_penalty = 0.0f;   // [-2, 2] (output tokens)
  float presence_penalty = 0.0f;    // [-2, 2] (output tokens)
  std::optional<uint64_t> seed;     // none: a fresh random seed
  std::vector<std::pair<int32_t, float>> logit_bias;  // [-100, 100] each
  int max_tokens = 16;
  int min_tokens = 0;  // EOS and stop tokens are masked until this many
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  int logprobs = -1;  // -1: none; k >= 0: chosen token's logprob and k alternatives
  // -1: none; k >= 0: the logprob of every prompt token after the first
  // (given the ones before it) and k alternatives, in the first event of
  // each sample. The whole prompt is then computed (no prefix-cache hit).
  int prompt_logprobs = -1;
  int n = 1;
  // vLLM's extensions: a matched stop string (or a stop token's text) stays
  // in the output; special tokens' text is left out; only these tokens may
  // be sampled (empty: any).
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  std::vector<int32_t> allowed_token_ids;
  // vLLM's bad_words, tokenized: the last token of each is masked whenever
  // the output ends with the ones before it (always, for one token).
  std::vector<std::vector<int32_t>> bad_words_ids;
  // The text generated must match this grammar (structured output).
  structured::OutputSpec structured;
  // Reasoning models: the thinking runs to `end` ("</think>"), free of
  // `structured`, which applies to the answer after it. With `start`
  // empty the output opens inside the thinking; else it thinks only when
  // it opens with `start`. A budget >= 0 bounds the thinking's tokens
  // (after `start`): at the budget the engine writes `end` itself.
  struct Reasoning {
    std::string start;
    std::string end;  // empty: no thinking is looked for
    int budget_tokens = -1;
    bool active() const { return !end.empty(); }
  } reasoning;

  // InvalidArgument naming the parameter when a value is out of range
  // (token ids are checked against `vocab_size`).
  absl::Status Validate(int vocab_size) const;
};

}  // namespace ferry
