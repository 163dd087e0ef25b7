// The partial-softmax merge of DistAttention against a direct softmax over
// all keys: random data, every split point, several parts, empty parts,
// scores large enough that a naive exp overflows, and -inf (masked) scores.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "engine/partial_attention.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Softmax-weighted sum of `values` ([n][dim]) under `scores`, in double.
std::vector<double> DirectAttention(const std::vector<float>& scores, const std::vector<float>& values, int dim) {
  std::vector<double> out(dim, 0.0);
  double m = -kInf;
  for (float s : scores) m = std::max<double>(m, s);
  if (m == -kInf) return out;
  double l = 0;
  for (size_t j = 0; j < scores.size(); ++j) {
    const double w = std::exp(double(scores[j]) - m);
    l += w;
    for (int d = 0; d < dim; ++d) out[d] += w * values[j * dim + d];
  }
  for (double& x : out) x /= l;
  return out;
}

// The partial of keys [begin, end).
void Partial(const std::vector<float>& scores, const std::vector<float>& values, int dim, size_t begin,
             size_t end, float& m, float& l, std::vector<float>& o) {
  std::vector<float> w(scores.begin() + begin, scores.begin() + end);
  WeightsFromScores(w.data(), static_cast<int64_t>(w.size()), m, l);
  o.assign(dim, 0.0f);
  for (size_t j = 0; j < w.size(); ++j) {
    for (int d = 0; d < dim; ++d) o[d] += w[j] * values[(begin + j) * dim + d];
  }
}

// Splits [0, n) at `cuts`, merges the parts in `order` and normalizes.
std::vector<float> MergedAttention(const std::vector<float>& scores, const std::vector<float>& values, int dim,
                                   std::vector<size_t> cuts, bool reverse_order) {
  cuts.insert(cuts.begin(), 0);
  cuts.push_back(scores.size());
  std::vector<std::pair<size_t, size_t>> parts;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) parts.emplace_back(cuts[i], cuts[i + 1]);
  if (reverse_order) std::reverse(parts.begin(), parts.end());
  float m = kEmptyPartialMax, l = 0;
  std::vector<float> o(dim, 0.0f);
  for (auto [b, e] : parts) {
    float m2, l2;
    std::vector<float> o2;
    Partial(scores, values, dim, b, e, m2, l2, o2);
    MergePartial(m, l, o.data(), m2, l2, o2.data(), dim);
  }
  std::vector<float> out(dim);
  NormalizePartial(l, o.data(), dim, out.data());
  return out;
}

void ExpectClose(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t d = 0; d < got.size(); ++d) {
    ASSERT_TRUE(std::isfinite(got[d])) << "d=" << d;
    EXPECT_NEAR(got[d], want[d], tol * (1 + std::abs(want[d]))) << "d=" << d;
  }
}

struct Data {
  std::vector<float> scores, values;
};

Data Random(std::mt19937& rng, int n, int dim, float score_scale, float score_offset = 0) {
  std::normal_distribution<float> normal(0, 1);
  Data d;
  for (int j = 0; j < n; ++j) d.scores.push_back(score_offset + score_scale * normal(rng));
  for (int j = 0; j < n * dim; ++j) d.values.push_back(normal(rng));
  return d;
}

TEST(PartialSoftmaxTest, EverySplitPointMatchesDirectSoftmax) {
  std::mt19937 rng(1);
  const int dim = 16;
  for (int n : {1, 2, 7, 33}) {
    Data d = Random(rng, n, dim, 3.0f);
    const auto want = DirectAttention(d.scores, d.values, dim);
    for (int cut = 0; cut <= n; ++cut) {
      SCOPED_TRACE(testing::Message() << "n=" << n << " cut=" << cut);
      ExpectClose(MergedAttention(d.scores, d.values, dim, {size_t(cut)}, false), want, 1e-5);
      ExpectClose(MergedAttention(d.scores, d.values, dim, {size_t(cut)}, true), want, 1e-5);
    }
  }
}

TEST(PartialSoftmaxTest, ManyPartsInAnyOrderAndEmptyParts) {
  std::mt19937 rng(2);
  const int dim = 8, n = 100;
  Data d = Random(rng, n, dim, 2.0f);
  const auto want = DirectAttention(d.scores, d.values, dim);
  // Repeated cuts make empty parts, at the start, in the middle and at the end.
  ExpectClose(MergedAttention(d.scores, d.values, dim, {0, 0, 10, 10, 10, 55, 99, 100, 100}, false), want, 1e-5);
  ExpectClose(MergedAttention(d.scores, d.values, dim, {0, 0, 10, 10, 10, 55, 99, 100, 100}, true), want, 1e-5);
  std::uniform_int_distribution<int> pick(0, n);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<size_t> cuts;
    for (int i = 0; i < 5; ++i) cuts.push_back(pick(rng));
    std::sort(cuts.begin(), cuts.end());
    ExpectClose(MergedAttention(d.scores, d.values, dim, cuts, trial % 2 == 1), want, 1e-5);
  }
}

TEST(PartialSoftmaxTest, HugeAndTinyScoresDoNotOverflow) {
  std::mt19937 rng(3);
  const int dim = 4, n = 40;
  // exp(1000) overflows fp32 and exp(-1000) underflows: only max-relative
  // exponentials keep the result.
  for (float offset : {1000.0f, -1000.0f, 3.0e4f}) {
    Data d = Random(rng, n, dim, 50.0f, offset);
    const auto want = DirectAttention(d.scores, d.values, dim);
    for (size_t cut : {size_t(0), size_t(1), size_t(20), size_t(39), size_t(40)}) {
      SCOPED_TRACE(testing::Message() << "offset=" << offset << " cut=" << cut);
      ExpectClose(MergedAttention(d.scores, d.values, dim, {cut}, false), want, 1e-4);
    }
  }
  // One part far above the other: the low part vanishes without NaN.
  Data d = Random(rng, n, dim, 1.0f);
  for (int j = 0; j < 20; ++j) d.scores[j] -= 500.0f;
  ExpectClose(MergedAttention(d.scores, d.values, dim, {20}, false), DirectAttention(d.scores, d.values, dim), 1e-5);
}

TEST(PartialSoftmaxTest, MaskedScoresAndAllEmpty) {
  const int dim = 3;
  std::vector<float> scores = {-kInf, 0.5f, -kInf, 1.5f};
  std::vector<float> values = {100, 100, 100, 1, 2, 3, 100, 100, 100, 4, 5, 6};
  ExpectClose(MergedAttention(scores, values, dim, {1}, false), DirectAttention(scores, values, dim), 1e-6);
  ExpectClose(MergedAttention(scores, values, dim, {2}, true), DirectAttention(scores, values, dim), 1e-6);
  // Nothing to attend to: zeros, not NaN.
  std::vector<float> masked = {-kInf, -kInf};
  std::vector<float> out = MergedAttention(masked, {1, 1, 1, 1, 1, 1}, dim, {1}, false);
  for (float x : out) EXPECT_EQ(x, 0.0f);
  float m, l;
  WeightsFromScores(nullptr, 0, m, l);
  EXPECT_EQ(m, kEmptyPartialMax);
  EXPECT_EQ(l, 0.0f);
}

TEST(PartialSoftmaxTest, MergePartialsMergesEveryHead) {
  std::mt19937 rng(4);
  const int dim = 5, heads = 6, n = 12;
  std::vector<Data> data;
  for (int h = 0; h < heads; ++h) data.push_back(Random(rng, n, dim, 2.0f));
  AttentionPartials a(heads, dim), b(heads, dim);
  for (int h = 0; h < heads; ++h) {
    std::vector<float> o;
    Partial(data[h].scores, data[h].values, dim, 0, 4 + h % 3, a.max[h], a.sum[h], o);
    std::copy(o.begin(), o.end(), a.values_of(h));
    Partial(data[h].scores, data[h].values, dim, 4 + h % 3, n, b.max[h], b.sum[h], o);
    std::copy(o.begin(), o.end(), b.values_of(h));
  }
  MergePartials(a, b);
  for (int h = 0; h < heads; ++h) {
    std::vector<float> out(dim);
    NormalizePartial(a.sum[h], a.values_of(h), dim, out.data());
    ExpectClose(out, DirectAttention(data[h].scores, data[h].values, dim), 1e-5);
  }
}

}  // namespace
}  // namespace ferry
