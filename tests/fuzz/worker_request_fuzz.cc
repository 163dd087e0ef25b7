// libFuzzer entry for what a worker takes from its peers: a Generate request
// (from the scheduler or a gateway, possibly resuming a sample) or a paused
// sample's state (the last chunk of a live migration, from another worker).
// Arbitrary bytes must give either a parse failure, an InvalidArgument, or an
// input the engine can run: in range, and the same after a round trip
// through the migration wire form.
//
// Input: the first byte picks the message (even: GenerateRequest, odd:
// RequestState); the rest is its protobuf encoding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "engine/input_validation.h"
#include "engine/sampler.h"
#include "engine/service/request_convert.h"

namespace {

using ferry::GenerateInput;

ferry::InputLimits Limits() {
  ferry::InputLimits l;
  l.vocab_size = 512;
  l.max_model_len = 4096;
  l.block_size = 16;
  l.num_kv_blocks = 1024;
  return l;
}

void Require(bool ok) {
  if (!ok) std::abort();
}

// What the engine relies on once an input passed validation.
void CheckRunnable(const GenerateInput& in) {
  const ferry::InputLimits l = Limits();
  Require(!in.request_id.empty() && !in.prompt_ids.empty());
  for (int32_t id : in.prompt_ids) Require(id >= 0 && id < l.vocab_size);
  Require(in.params.max_tokens >= 1 && in.params.n >= 1 && in.params.n <= 64);
  Require(in.params.reasoning.budget_tokens >= -1);
  Require(in.params.reasoning.budget_tokens < 0 || in.params.reasoning.active());
  Require(static_cast<int64_t>(in.prompt_ids.size()) + in.params.max_tokens <= l.max_model_len);
  if (in.resume) {
    const ferry::ResumeState& r = *in.resume;
    Require(r.sample_index >= 0 && r.emitted_text_bytes >= 0);
    Require(r.cached_prompt_tokens >= 0 && r.cached_prompt_tokens <= static_cast<int64_t>(in.prompt_ids.size()));
    Require(static_cast<int64_t>(r.output_ids.size()) < in.params.max_tokens);
    for (int32_t id : r.output_ids) Require(id >= 0 && id < l.vocab_size);
    if (!r.rng_state.empty()) {
      ferry::Rng rng;
      Require(rng.LoadState(r.rng_state).ok());
    }
  }
}

// A validated input survives the migration wire form unchanged (one sample).
void CheckRoundTrip(const GenerateInput& in) {
  if (!in.resume || in.params.n != 1) return;
  const GenerateInput back = ferry::FromRequestState(ferry::ToRequestState(in));
  Require(back.request_id == in.request_id && back.prompt_ids == in.prompt_ids);
  Require(back.priority == in.priority);
  Require(back.resume->output_ids == in.resume->output_ids);
  Require(back.resume->rng_state == in.resume->rng_state);
  Require(back.resume->sample_index == in.resume->sample_index);
  Require(back.resume->emitted_text_bytes == in.resume->emitted_text_bytes);
  Require(back.resume->cached_prompt_tokens == in.resume->cached_prompt_tokens);
  Require(back.params.max_tokens == in.params.max_tokens && back.params.stop == in.params.stop);
  Require(back.params.stop_token_ids == in.params.stop_token_ids);
  Require(back.params.logit_bias == in.params.logit_bias && back.params.seed == in.params.seed);
  // A reasoning model's bounds go with the sample (the grammar waits for the
  // same end of thinking on the destination).
  const ferry::SamplingParams::Reasoning &a = in.params.reasoning, &b = back.params.reasoning;
  Require(a.active() == b.active());
  if (a.active())
    Require(a.start == b.start && a.end == b.end && a.budget_tokens == b.budget_tokens);
  Require(ferry::ValidateGenerateInput(back, Limits()).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool is_state = (data[0] & 1) != 0;
  const void* body = data + 1;
  const int len = static_cast<int>(size - 1);
  GenerateInput in;
  if (is_state) {
    ferry::v1::RequestState state;
    if (!state.ParseFromArray(body, len)) return 0;
    in = ferry::FromRequestState(state);
  } else {
    ferry::v1::GenerateRequest request;
    if (!request.ParseFromArray(body, len)) return 0;
    // No tokenizer here: a text-only prompt is an InvalidArgument.
    absl::StatusOr<GenerateInput> converted = ferry::ToGenerateInput(request, nullptr);
    if (!converted.ok()) {
      Require(converted.status().code() == absl::StatusCode::kInvalidArgument);
      return 0;
    }
    in = std::move(*converted);
  }
  absl::Status valid = ferry::ValidateGenerateInput(in, Limits());
  if (!valid.ok()) {
    Require(valid.code() == absl::StatusCode::kInvalidArgument && !valid.message().empty());
    return 0;
  }
  CheckRunnable(in);
  CheckRoundTrip(in);
  return 0;
}
