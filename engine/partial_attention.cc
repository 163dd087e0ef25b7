#include "engine/partial_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace ferry {

void AttentionPartials::Reset(int64_t count, int dim) {
  head_dim = dim;
  max.assign(count, kEmptyPartialMax);
  sum.assign(count, 0.0f);
  values.assign(count * dim, 0.0f);
}

void WeightsFromScores(float* scores, int64_t n, float& m, float& l) {
  m = kEmptyPartialMax;
  l = 0;
  for (int64_t j = 0; j < n; ++j) m = std::max(m, scores[j]);
  if (m == kEmptyPartialMax) {
    std::fill(scores, scores + n, 0.0f);
    return;
  }
  for (int64_t j = 0; j < n; ++j) {
    scores[j] = std::exp(scores[j] - m);
    l += scores[j];
  }
}

void MergePartial(float& m, float& l, float* o, float m2, float l2, const float* o2, int head_dim) {
  // An empty side contributes nothing; testing for it also keeps
  // exp(-inf - -inf) = NaN out of the arithmetic.
  if (l2 == 0 || m2 == kEmptyPartialMax) return;
  if (l == 0 || m == kEmptyPartialMax) {
    m = m2;
    l = l2;
    std::copy(o2, o2 + head_dim, o);
    return;
  }
  const float m_new = std::max(m, m2);
  const float a = std::exp(m - m_new);
  const float b = std::exp(m2 - m_new);
  l = l * a + l2 * b;
  for (int d = 0; d < head_dim; ++d) o[d] = o[d] * a + o2[d] * b;
  m = m_new;
}

void MergePartials(AttentionPartials& into, const AttentionPartials& from) {
  if (into.count() != from.count() || into.head_dim != from.head_dim) std::abort();
  for (int64_t i = 0; i < into.count(); ++i) {
    MergePartial(into.max[i], into.sum[i], into.values_of(i), from.max[i], from.sum[i], from.values_of(i),
                 into.head_dim);
  }
}

void NormalizePartial(float l, const float* o, int head_dim, float* out) {
  if (l == 0) {
    std::fill(out, out + head_dim, 0.0f);
    return;
  }
  const float inv = 1.0f / l;
  for (int d = 0; d < head_dim; ++d) out[d] = o[d] * inv;
}

}  // namespace ferry
