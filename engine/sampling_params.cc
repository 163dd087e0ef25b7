#include "engine/sampling_params.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace ferry {

absl::Status SamplingParams::Validate(int vocab_size) const {
  auto bad = [](const char* name, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat("'", name, "' ", why));
  };
  if (!std::isfinite(temperature) || temperature < 0) return bad("temperature", "must be >= 0");
  if (!std::isfinite(top_p) || top_p <= 0 || top_p > 1) return bad("top_p", "must be in (0, 1]");
  if (top_k < -1) return bad("top_k", "must be -1, 0 (off) or positive");
  if (!std::isfinite(min_p) || min_p < 0 || min_p > 1) return bad("min_p", "must be in [0, 1]");
  if (!std::isfinite(repetition_penalty) || repetition_penalty <= 0) {
    return bad("repetition_penalty", "must be > 0");
  }
  if (!std::isfinite(frequency_penalty) || frequency_penalty < -2 || frequency_penalty > 2) {
    return bad("frequency_penalty", "must be in [-2, 2]");
  }
  if (!std::isfinite(presence_penalty) || presence_penalty < -2 || presence_penalty > 2) {
    return bad("presence_penalty", "must be in [-2, 2]");
  }
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0 || id >= vocab_size) {
      return bad("logit_bias", absl::StrCat("token id ", id, " is outside the vocabulary (0..",
                                            vocab_size - 1, ")"));
    }
    if (!std::isfinite(bias) || bias < -100 || bias > 100) {
      return bad("logit_bias", "values must be in [-100, 100]");
    }
  }
  if (max_tokens < 1) return bad("max_tokens", "must be >= 1");
  if (min_tokens < 0 || min_tokens > max_tokens) {
    return bad("min_tokens", "must be in [0, max_tokens]");
  }
  for (int32_t id : stop_token_ids) {
    if (id < 0 || id >= vocab_size) return bad("stop_token_ids", "holds an id outside the vocabulary");
  }
  for (int32_t id : allowed_token_ids) {
    if (id < 0 || id >= vocab_size) {
      return bad("allowed_token_ids",
                 absl::StrCat("holds token id ", id, ", outside the vocabulary (0..",
                              vocab_size - 1, ")"));
    }
  }
  for (const std::vector<int32_t>& word : bad_words_ids) {
    if (word.empty()) return bad("bad_words", "holds an empty word");
    for (int32_t id : word) {
      if (id < 0 || id >= vocab_size) return bad("bad_words", "holds an id outside the vocabulary");
    }
  }
  for (const std::string& s : stop) {
    if (s.empty()) return bad("stop", "must not hold an empty string");
  }
  if (stop.size() > 16) return bad("stop", "holds more than 16 strings");
  if (logprobs < -1 || logprobs > 20) return bad("logprobs", "must be between 0 and 20");
  if (prompt_logprobs < -1 || prompt_logprobs > 20) return bad("prompt_logprobs", "must be between 0 and 20");
  if (n < 1 || n > 64) return bad("n", "must be between 1 and 64");
  if (reasoning.budget_tokens < -1) return bad("thinking_token_budget", "must be >= 0");
  if (reasoning.budget_tokens >= 0 && reasoning.end.empty()) {
    return bad("thinking_token_budget",
               "needs a reasoning model's end of thinking (a reasoning parser)");
  }
  return absl::OkStatus();
}

}  // namespace ferry
