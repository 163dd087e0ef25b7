#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

namespace ferry {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

uint64_t SplitMix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

void Rng::Seed(uint64_t seed) {
  uint64_t x = seed;
  for (auto& v : s_) v = SplitMix64(x);
}

uint64_t Rng::Next() {
  uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

std::string Rng::SaveState() const {
  std::string out(sizeof(s_), '\0');
  std::memcpy(out.data(), s_.data(), sizeof(s_));
  return out;
}

absl::Status Rng::LoadState(std::string_view state) {
  if (state.size() != sizeof(s_)) {
    return absl::InvalidArgumentError("sampler state has the wrong size");
  }
  std::array<uint64_t, 4> s;
  std::memcpy(s.data(), state.data(), sizeof(s));
  if (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0) {
    return absl::InvalidArgumentError("sampler state is all zero");
  }
  s_ = s;
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params, uint64_t seed) : params_(params), rng_(seed) {
  std::vector<int32_t>& allowed = params_.allowed_token_ids;
  std::sort(allowed.begin(), allowed.end());
  allowed.erase(std::unique(allowed.begin(), allowed.end()), allowed.end());
}

int32_t Sampler::Argmax(std::span<const float> logits) {
  // The first index of the largest value; NaN never wins (a NaN first
  // value gives 0, as a plain scan does). Sixteen lanes each keep their own
  // best so the scan is not one long chain of dependent compares.
  constexpr size_t kLanes = 16;
  const size_t n = logits.size();
  if (n == 0 || std::isnan(logits[0])) return 0;
  float lane_value[kLanes];
  int32_t lane_index[kLanes];
  for (size_t l = 0; l < kLanes; ++l) {
    lane_value[l] = -std::numeric_limits<float>::infinity();
    lane_index[l] = -1;
  }
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t l = 0; l < kLanes; ++l) {
      const float v = logits[i + l];
      const bool better = v > lane_value[l];
      lane_value[l] = better ? v : lane_value[l];
      lane_index[l] = better ? static_cast<int32_t>(i + l) : lane_index[l];
    }
  }
  for (size_t l = 0; i + l < n; ++l) {
    const float v = logits[i + l];
    if (v > lane_value[l]) {
      lane_value[l] = v;
      lane_index[l] = static_cast<int32_t>(i + l);
    }
  }
  int32_t best = 0;
  float best_value = logits[0];
  for (size_t l = 0; l < kLanes; ++l) {
    if (lane_index[l] < 0) continue;
    if (lane_value[l] > best_value || (lane_value[l] == best_value && lane_index[l] < best)) {
      best_value = lane_value[l];
      best = lane_index[l];
    }
  }
  return best;
}

std::vector<std::pair<int32_t, float>> Sampler::TopLogprobs(std::span<const float> logits, int k,
                                                            float* log_z) {
  float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - max);
  *log_z = max + static_cast<float>(std::log(sum));
  std::vector<std::pair<int32_t, float>> top;
  if (k <= 0) return top;
  std::vector<int32_t> idx(logits.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<int32_t>(i);
  k = std::min<int>(k, static_cast<int>(idx.size()));
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int i = 0; i < k; ++i) top.emplace_back(idx[i], logits[idx[i]] - *log_z);
  return top;
}

int32_t Sampler::Rank(std::span<const float> logits, int32_t id) {
  const float own = logits[size_t(id)];
  return static_cast<int32_t>(
      std::count_if(logits.begin(), logits.end(), [own](float l) { return l >= own; }));
}

void Sampler::ApplyPenalties(std::span<float> logits, std::span<const int32_t> prompt,
                             std::span<const int32_t> output) {
  const int vocab = static_cast<int>(logits.size());
  if (params_.repetition_penalty != 1.0f) {
    const float p = params_.repetition_penalty;
    auto penalize = [&](int32_t id) {
      if (id < 0 || id >= vocab) return;
      // Each token once, however often it occurs.
      if (counts_.try_emplace(id, 0).second) {
        logits[id] = logits[id] > 0 ? logits[id] / p : logits[id] * p;
      }
    };
    counts_.clear();
    for (int32_t id : prompt) penalize(id);
    for (int32_t id : output) penalize(id);
  }
  if (params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f) {
    counts_.clear();
    for (int32_t id : output) {
      if (id >= 0 && id < vocab) counts_[id]++;
    }
    for (const auto& [id, count] : counts_) {
      logits[id] -= params_.frequency_penalty * count + params_.presence_penalty;
    }
  }
  for (const auto& [id, bias] : params_.logit_bias) {
    if (id >= 0 && id < vocab) logits[id] += bias;
  }
  for (const std::vector<int32_t>& word : params_.bad_words_ids) {
    // The word's last token is banned where the output ends with the rest.
    const size_t prefix = word.size() - 1;
    if (word.empty() || output.size() < prefix) continue;
    if (!std::equal(word.begin(), word.end() - 1, output.end() - static_cast<ptrdiff_t>(prefix))) {
      continue;
    }
    if (word.back() >= 0 && word.back() < vocab) logits[word.back()] = kNegInf;
  }
  if (!params_.allowed_token_ids.empty()) {
    // Sorted and unique: everything between two allowed ids is masked.
    int32_t next = 0;
    for (int32_t id : params_.allowed_token_ids) {
      if (id < next || id >= vocab) continue;
      std::fill(logits.begin() + next, logits.begin() + id, kNegInf);
      next = id + 1;
    }
    std::fill(logits.begin() + std::min(next, vocab), logits.end(), kNegInf);
  }
}

SampledToken Sampler::Sample(std::span<float> logits, std::span<const int32_t> prompt,
                             std::span<const int32_t> output, std::span<const int32_t> eos_ids,
                             const TokenMask* mask) {
  SampledToken result;
  float log_z = 0;
  if (params_.logprobs >= 0) result.top = TopLogprobs(logits, params_.logprobs, &log_z);
  const float chosen_raw_base = log_z;
  std::vector<float> raw;
  if (params_.logprobs >= 0) raw.assign(logits.begin(), logits.end());

  ApplyPenalties(logits, prompt, output);
  if (static_cast<int>(output.size()) < params_.min_tokens) {
    const int vocab = static_cast<int>(logits.size());
    for (int32_t id : eos_ids) {
      if (id >= 0 && id < vocab) logits[id] = kNegInf;
    }
    for (int32_t id : params_.stop_token_ids) {
      if (id >= 0 && id < vocab) logits[id] = kNegInf;
    }
  }
  if (mask != nullptr && !ApplyMask(logits, *mask, eos_ids) && !eos_ids.empty()) {
    result.id = eos_ids.front();
  } else {
    result.id = Draw(logits);
  }
  if (params_.logprobs >= 0) result.logprob = raw[result.id] - chosen_raw_base;
  return result;
}

bool Sampler::ApplyMask(std::span<float> logits, const TokenMask& mask,
                        std::span<const int32_t> eos_ids) {
  const size_t vocab = logits.size();
  std::vector<float> eos_logits;
  for (int32_t id : eos_ids) {
    if (id >= 0 && static_cast<size_t>(id) < vocab)
      eos_logits.push_back(logits[static_cast<size_t>(id)]);
  }
  const std::vector<uint64_t>& bits = *mask.allowed;
  bool any = false;
  for (size_t t = 0; t < vocab; ++t) {
    const bool ok = t / 64 < bits.size() && ((bits[t / 64] >> (t % 64)) & 1);
    if (!ok) {
      logits[t] = kNegInf;
    } else {
      any = any || logits[t] > kNegInf;
    }
  }
  if (mask.end_allowed) {
    size_t k = 0;
    for (int32_t id : eos_ids) {
      if (id >= 0 && static_cast<size_t>(id) < vocab) {
        logits[static_cast<size_t>(id)] = eos_logits[k++];
        any = any || logits[static_cast<size_t>(id)] > kNegInf;
      }
    }
  }
  return any;
}

int32_t SampleByThresholds(std::span<const float> logits, float temperature, int32_t top_k, float top_p,
                           float uniform) {
  const int32_t best = Sampler::Argmax(logits);
  if (temperature <= 0.0f || logits.empty()) return best;
  const float max = logits[static_cast<size_t>(best)];
  const int vocab = static_cast<int>(logits.size());
  float threshold = -std::numeric_limits<float>::infinity();
  if (top_k > 0 && top_k < vocab) {
    std::vector<float> values(logits.begin(), logits.end());
    std::nth_element(values.begin(), values.begin() + (top_k - 1), values.end(), std::greater<float>());
    threshold = values[static_cast<size_t>(top_k - 1)];
  }
  const float inv_t = 1.0f / temperature;
  auto weight = [&](float x) { return std::exp((static_cast<double>(x) - max) * inv_t); };
  auto mass_from = [&](float t) {
    double m = 0;
    for (float x : logits) {
      if (x >= t) m += weight(x);
    }
    return m;
  };
  double z = mass_from(threshold);
  if (top_p < 1.0f) {
    // Walk down the kept logits: the first value whose tokens at or above
    // it reach the mass is the threshold (all its ties are kept).
    std::vector<float> kept;
    for (float x : logits) {
      if (x >= threshold) kept.push_back(x);
    }
    std::sort(kept.begin(), kept.end(), std::greater<float>());
    double mass = 0;
    for (size_t i = 0; i < kept.size(); ++i) {
      mass += weight(kept[i]);
      const bool last_of_value = i + 1 == kept.size() || kept[i + 1] != kept[i];
      if (last_of_value && mass >= top_p * z) {
        threshold = std::max(threshold, kept[i]);
        break;
      }
    }
    z = mass_from(threshold);
  }
  const double target = static_cast<double>(uniform) * z;
  double acc = 0;
  int32_t pick = best;
  for (int i = 0; i < vocab; ++i) {
    if (!(logits[static_cast<size_t>(i)] >= threshold)) continue;
    acc += weight(logits[static_cast<size_t>(i)]);
    pick = i;
    if (acc > target) break;
  }
  return pick;
}

bool Sampler::PicksOnly(int num_output_tokens) const {
  const SamplingParams& p = params_;
  return p.logprobs < 0 && p.structured.empty() && p.reasoning.budget_tokens < 0 &&
         p.repetition_penalty == 1.0f && p.frequency_penalty == 0.0f &&
         p.presence_penalty == 0.0f && p.logit_bias.empty() && p.allowed_token_ids.empty() &&
         p.bad_words_ids.empty() && p.min_p <= 0.0f && num_output_tokens >= p.min_tokens;
}

float Sampler::DrawForBackend() {
  if (params_.temperature <= 0.0f || params_.top_k == 1) return 0;
  // Below 1 also after rounding to float.
  return std::min(static_cast<float>(rng_.Uniform()), 0x1.fffffep-1f);
}

int32_t Sampler::Draw(std::span<const float> logits) {
  if (params_.temperature <= 0.0f || params_.top_k == 1) return Argmax(logits);
  const float inv_t = 1.0f / params_.temperature;
  candidates_.clear();
  candidates_.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] > kNegInf) {  // drops -inf (masked) and NaN
      candidates_.emplace_back(logits[i] * inv_t, static_cast<int32_t>(i));
    }
  }
  if (candidates_.empty()) return Argmax(logits);
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < candidates_.size()) {
    std::partial_sort(candidates_.begin(), candidates_.begin() + params_.top_k, candidates_.end(),
                      by_logit);
    candidates_.resize(params_.top_k);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  // Softmax over the kept candidates (sorted, so the first is the max).
  const float max_logit = candidates_[0].first;
  double sum = 0;
  for (auto& c : candidates_) {
    c.first = std::exp(c.first - max_logit);
    sum += c.first;
  }
  for (auto& c : candidates_) c.first = static_cast<float>(c.first / sum);
  if (params_.min_p > 0.0f) {
    const float floor = params_.min_p * candidates_[0].first;
    size_t n = 1;
    while (n < candidates_.size() && candidates_[n].first >= floor) ++n;
    candidates_.resize(n);
  }
  if (params_.top_p < 1.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < candidates_.size()) {
      cum += candidates_[n].first;
      ++n;
      if (cum >= params_.top_p) break;
    }
    candidates_.resize(std::max<size_t>(n, 1));
  }
  double total = 0;
  for (const auto& c : candidates_) total += c.first;
  double r = rng_.Uniform() * total;
  for (const auto& c : candidates_) {
    r -= c.first;
    if (r < 0) return c.second;
  }
  return candidates_.back().second;
}

}  // namespace ferry
