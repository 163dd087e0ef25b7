// Per-request token sampling: penalties, logit bias, min_tokens masking,
// then greedy or temperature / top-k / top-p / min-p sampling, with a random
// generator whose state can be saved and restored (so a request moves
// between workers and continues identically), and logprobs.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "engine/sampling_params.h"

namespace ferry {

// xoshiro256** seeded through splitmix64: small state, fast, good quality.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { Seed(seed); }
  void Seed(uint64_t seed);
  uint64_t Next();
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

  std::string SaveState() const;
  // InvalidArgument when `state` is not a saved state.
  absl::Status LoadState(std::string_view state);

 private:
  std::array<uint64_t, 4> s_{};
};

// The tokens structured output allows at a step: bit t of `allowed` for
// token t; end-of-sequence ids only when `end_allowed`.
struct TokenMask {
  const std::vector<uint64_t>* allowed = nullptr;
  bool end_allowed = true;
};

struct SampledToken {
  int32_t id = 0;
  float logprob = 0;  // log-softmax of the model's logits (when asked for)
  std::vector<std::pair<int32_t, float>> top;  // most likely alternatives
  int32_t rank = 0;  // 1 + tokens with a larger logit, ties counted (0: not computed)
};

// Sampling as a backend does it on the device (the cuda backend's kernel),
// on the host: greedy (lowest index among equal maxima) when temperature
// <= 0; else the tokens at or above two thresholds (the top_k-th largest
// logit, ties kept, for 0 < top_k < vocabulary; then the largest logit whose
// tokens at or above it hold at least top_p of the mass) and the pick by
// inverse CDF of softmax(logits / temperature) over them in index order at
// `uniform` in [0, 1). No sort of the vocabulary on the device; the
// distribution equals Sampler's, the token for a given draw may differ.
int32_t SampleByThresholds(std::span<const float> logits, float temperature, int32_t top_k, float top_p,
                           float uniform);

class Sampler {
 public:
  // `seed` starts the random generator (callers derive it from params.seed).
  Sampler(const SamplingParams& params, uint64_t seed);

  // Picks the next token. `logits` (one row over the vocabulary) is modified
  // in place. `prompt` and `output` are the request's tokens so far (for
  // penalties and min_tokens); `eos_ids` are masked until min_tokens.
  // With a `mask`, tokens it does not allow are never picked (logprobs stay
  // those of the model's distribution); when it allows nothing, the first
  // of `eos_ids` is the pick.
  SampledToken Sample(std::span<float> logits, std::span<const int32_t> prompt,
                      std::span<const int32_t> output, std::span<const int32_t> eos_ids,
                      const TokenMask* mask = nullptr);

  // True when Sample would only pick a token from the logits as they come
  // (greedy, or temperature / top-k / top-p) with no penalty, bias, min-p,
  // masking (min_tokens, given the tokens generated so far) or logprobs: a
  // backend can then sample the row itself, with DrawForBackend's number.
  bool PicksOnly(int num_output_tokens) const;
  // The one uniform draw Sample takes for a non-greedy pick (0 without a
  // draw when greedy), so the generator moves as if Sample had run.
  float DrawForBackend();

  Rng& rng() { return rng_; }
  const SamplingParams& params() const { return params_; }

  // Index of the largest logit (the lowest index among ties).
  static int32_t Argmax(std::span<const float> logits);
  // The `k` largest entries of log_softmax(logits), best first.
  static std::vector<std::pair<int32_t, float>> TopLogprobs(std::span<const float> logits, int k,
                                                            float* log_z);
  // vLLM's rank of token `id`: the number of tokens whose logit is at least
  // its own (1 for the most likely token without ties).
  static int32_t Rank(std::span<const float> logits, int32_t id);

 private:
  // False when the mask leaves no token.
  static bool ApplyMask(std::span<float> logits, const TokenMask& mask,
                        std::span<const int32_t> eos_ids);
  void ApplyPenalties(std::span<float> logits, std::span<const int32_t> prompt,
                      std::span<const int32_t> output);
  int32_t Draw(std::span<const float> logits);

  SamplingParams params_;
  Rng rng_;
  std::vector<std::pair<float, int32_t>> candidates_;
  absl::flat_hash_map<int32_t, int> counts_;
};

}  // namespace ferry
