// Attention over part of a sequence's keys, in a form that merges exactly
// with the other parts (the DistAttention / split-KV decomposition).
//
// For one query head and a subset S of the keys, the partial result is
//   m = max_{j in S} s_j,  l = sum_{j in S} exp(s_j - m),
//   o = sum_{j in S} exp(s_j - m) v_j         (not divided by l)
// and the attention over the union of disjoint subsets is
//   m* = max_i m_i,  l* = sum_i exp(m_i - m*) l_i,  o* = sum_i exp(m_i - m*) o_i,
//   out = o* / l*.
// An empty subset is m = -inf, l = 0, o = 0 and leaves any merge unchanged.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

namespace ferry {

inline constexpr float kEmptyPartialMax = -std::numeric_limits<float>::infinity();

// Partial results of `count` query heads of dimension `head_dim`, flat:
// max[i], sum[i], values[i * head_dim .. + head_dim).
struct AttentionPartials {
  AttentionPartials() = default;
  AttentionPartials(int64_t count, int head_dim) { Reset(count, head_dim); }

  // Every entry becomes the empty partial.
  void Reset(int64_t count, int head_dim);
  int64_t count() const { return static_cast<int64_t>(max.size()); }
  float* values_of(int64_t i) { return values.data() + i * head_dim; }
  const float* values_of(int64_t i) const { return values.data() + i * head_dim; }

  int head_dim = 0;
  std::vector<float> max;
  std::vector<float> sum;
  std::vector<float> values;
};

// Turns `n` scores into the weights exp(s_j - m) in place and returns the
// partial's m and l through `m` and `l`. The caller then forms
// o = sum_j scores[j] * v_j. n == 0 (or all scores -inf) gives the empty
// partial, with every weight 0.
void WeightsFromScores(float* scores, int64_t n, float& m, float& l);

// Merges the partial (m2, l2, o2) into (m, l, o), exactly up to fp32
// rounding. Either side may be empty.
void MergePartial(float& m, float& l, float* o, float m2, float l2, const float* o2, int head_dim);

// Merges every partial of `from` into `into` entry by entry. The two must
// have the same count and head_dim (a programming error aborts otherwise).
void MergePartials(AttentionPartials& into, const AttentionPartials& from);

// Writes o / l of one partial to `out` (zeros for an empty partial: a query
// with no key attends to nothing).
void NormalizePartial(float l, const float* o, int head_dim, float* out);

}  // namespace ferry
