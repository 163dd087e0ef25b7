#include "engine/input_validation.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/sampler.h"
#include "kvcache/kv_cache.h"

namespace ferry {

absl::Status ValidateGenerateInput(const GenerateInput& input, const InputLimits& limits) {
  const int64_t n = static_cast<int64_t>(input.prompt_ids.size());
  if (input.request_id.empty()) return absl::InvalidArgumentError("request id is empty");
  if (n == 0) return absl::InvalidArgumentError("the prompt is empty");
  auto check_ids = [&](const std::vector<int32_t>& ids, const char* what) -> absl::Status {
    for (int32_t id : ids) {
      if (id < 0 || id >= limits.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(what, " token id ", id, " is outside the vocabulary (0..",
                                                       limits.vocab_size - 1, ")"));
      }
    }
    return absl::OkStatus();
  };
  FERRY_RETURN_IF_ERROR(check_ids(input.prompt_ids, "prompt"));
  FERRY_RETURN_IF_ERROR(input.params.Validate(limits.vocab_size));
  if (input.resume) {
    const ResumeState& r = *input.resume;
    FERRY_RETURN_IF_ERROR(check_ids(r.output_ids, "output"));
    if (static_cast<int64_t>(r.output_ids.size()) >= input.params.max_tokens) {
      return absl::InvalidArgumentError("the resumed sample has already reached max_tokens");
    }
    if (r.sample_index < 0 || r.sample_index >= 64) {
      return absl::InvalidArgumentError(absl::StrCat("bad resume state: sample index ", r.sample_index));
    }
    if (r.emitted_text_bytes < 0) {
      return absl::InvalidArgumentError("bad resume state: negative emitted text length");
    }
    if (r.cached_prompt_tokens < 0 || r.cached_prompt_tokens > n) {
      return absl::InvalidArgumentError(absl::StrCat("bad resume state: ", r.cached_prompt_tokens,
                                                     " cached tokens of a ", n, "-token prompt"));
    }
    if (!r.rng_state.empty()) {
      Rng probe;
      absl::Status s = probe.LoadState(r.rng_state);
      if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("bad resume state: ", s.message()));
    }
  }
  const int64_t total = n + input.params.max_tokens;
  if (total > limits.max_model_len) {
    return absl::InvalidArgumentError(absl::StrCat("this model's maximum context length is ", limits.max_model_len,
                                                   " tokens, but ", total, " were requested (", n,
                                                   " in the prompt, ", input.params.max_tokens,
                                                   " for the completion)"));
  }
  if (input.remote_kv == nullptr && limits.num_kv_blocks > 0 &&
      NumBlocksForTokens(total, limits.block_size) > limits.num_kv_blocks) {
    return absl::InvalidArgumentError(absl::StrCat("the request needs ", NumBlocksForTokens(total, limits.block_size),
                                                   " KV blocks (", total, " tokens) but this worker's KV cache holds ",
                                                   limits.num_kv_blocks));
  }
  return absl::OkStatus();
}

}  // namespace ferry
