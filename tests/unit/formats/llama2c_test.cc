// llama2.c checkpoints: both versions' layouts, the shared classifier, and
// headers or sizes that do not fit.
#include "engine/formats/llama2c.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

struct Dims {
  int32_t dim = 8, hidden = 12, layers = 2, heads = 2, kv_heads = 1, vocab = 5, seq_len = 4;
  bool shared = true;
};

void PutI32(std::vector<uint8_t>* out, int32_t v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  out->insert(out->end(), p, p + 4);
}

// Appends `n` floats, each `tag` * 1000 + its index, so that a test can tell
// which tensor a pointer lands in.
void PutTensor(std::vector<uint8_t>* out, uint64_t n, int tag) {
  for (uint64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(tag * 1000 + static_cast<int>(i % 1000));
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out->insert(out->end(), p, p + 4);
  }
}

// Tags: 1 embeddings, 2 attention norms, 3 wq, 4 wk, 5 wv, 6 wo, 7 ffn
// norms, 8 w1, 9 w2, 10 w3, 11 final norm, 12 rope tables, 13 output.
std::vector<uint8_t> Legacy(const Dims& d) {
  std::vector<uint8_t> out;
  for (int32_t v :
       {d.dim, d.hidden, d.layers, d.heads, d.kv_heads, d.shared ? d.vocab : -d.vocab, d.seq_len})
    PutI32(&out, v);
  const uint64_t L = d.layers, dim = d.dim, kv = d.kv_heads * (d.dim / d.heads), h = d.hidden;
  PutTensor(&out, d.vocab * dim, 1);
  PutTensor(&out, L * dim, 2);
  PutTensor(&out, L * dim * dim, 3);
  PutTensor(&out, L * kv * dim, 4);
  PutTensor(&out, L * kv * dim, 5);
  PutTensor(&out, L * dim * dim, 6);
  PutTensor(&out, L * dim, 7);
  PutTensor(&out, L * h * dim, 8);
  PutTensor(&out, L * dim * h, 9);
  PutTensor(&out, L * h * dim, 10);
  PutTensor(&out, dim, 11);
  PutTensor(&out, 2 * d.seq_len * (d.dim / d.heads / 2), 12);
  if (!d.shared) PutTensor(&out, d.vocab * dim, 13);
  return out;
}

std::vector<uint8_t> Version1(const Dims& d) {
  std::vector<uint8_t> out;
  PutI32(&out, static_cast<int32_t>(Llama2cCheckpoint::kMagic));
  PutI32(&out, 1);
  for (int32_t v : {d.dim, d.hidden, d.layers, d.heads, d.kv_heads, d.vocab, d.seq_len})
    PutI32(&out, v);
  out.push_back(d.shared ? 1 : 0);
  out.resize(256, 0);
  const uint64_t L = d.layers, dim = d.dim, kv = d.kv_heads * (d.dim / d.heads), h = d.hidden;
  PutTensor(&out, L * dim, 2);
  PutTensor(&out, L * dim, 7);
  PutTensor(&out, dim, 11);
  PutTensor(&out, d.vocab * dim, 1);
  PutTensor(&out, L * dim * dim, 3);
  PutTensor(&out, L * kv * dim, 4);
  PutTensor(&out, L * kv * dim, 5);
  PutTensor(&out, L * dim * dim, 6);
  PutTensor(&out, L * h * dim, 8);
  PutTensor(&out, L * dim * h, 9);
  PutTensor(&out, L * h * dim, 10);
  if (!d.shared) PutTensor(&out, d.vocab * dim, 13);
  return out;
}

float First(const Llama2cTensor* t) {
  float v;
  std::memcpy(&v, t->data, 4);
  return v;
}

void CheckLayout(const Llama2cCheckpoint& c, const Dims& d) {
  EXPECT_EQ(c.config().dim, d.dim);
  EXPECT_EQ(c.config().hidden_dim, d.hidden);
  EXPECT_EQ(c.config().num_layers, d.layers);
  EXPECT_EQ(c.config().num_kv_heads, d.kv_heads);
  EXPECT_EQ(c.config().vocab_size, d.vocab);
  EXPECT_EQ(c.config().seq_len, d.seq_len);
  EXPECT_EQ(c.config().shared_classifier, d.shared);
  const uint64_t dim = d.dim, kv = d.kv_heads * (d.dim / d.heads), h = d.hidden;
  const auto f = [](uint64_t v) { return static_cast<float>(v); };
  struct Want {
    const char* name;
    std::vector<uint64_t> shape;
    float first;
  } wants[] = {
      {"tok_embeddings.weight", {static_cast<uint64_t>(d.vocab), dim}, 1000},
      {"layers.0.attention_norm.weight", {dim}, 2000},
      {"layers.1.attention_norm.weight", {dim}, f(2000 + dim)},
      {"layers.1.attention.wq.weight", {dim, dim}, f(3000 + dim * dim)},
      {"layers.1.attention.wk.weight", {kv, dim}, f(4000 + kv * dim)},
      {"layers.0.attention.wv.weight", {kv, dim}, 5000},
      {"layers.0.attention.wo.weight", {dim, dim}, 6000},
      {"layers.1.ffn_norm.weight", {dim}, f(7000 + dim)},
      {"layers.1.feed_forward.w1.weight", {h, dim}, f(8000 + h * dim)},
      {"layers.0.feed_forward.w2.weight", {dim, h}, 9000},
      {"layers.1.feed_forward.w3.weight", {h, dim}, f(10000 + h * dim)},
      {"norm.weight", {dim}, 11000},
  };
  for (const Want& w : wants) {
    const Llama2cTensor* t = c.Find(w.name);
    ASSERT_NE(t, nullptr) << w.name;
    EXPECT_EQ(t->shape, w.shape) << w.name;
    EXPECT_EQ(First(t), w.first) << w.name;
  }
  const Llama2cTensor* output = c.Find("output.weight");
  if (d.shared) {
    EXPECT_EQ(output, nullptr);
  } else {
    ASSERT_NE(output, nullptr);
    EXPECT_EQ(First(output), 13000);
  }
}

TEST(Llama2cTest, LegacyLayoutSharedAndUnshared) {
  for (bool shared : {true, false}) {
    Dims d;
    d.shared = shared;
    const std::vector<uint8_t> bytes = Legacy(d);
    EXPECT_TRUE(Llama2cCheckpoint::Sniff(bytes, bytes.size()));
    auto c = Llama2cCheckpoint::Parse(bytes, "m.bin");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ((*c)->config().version, 0);
    CheckLayout(**c, d);
  }
}

TEST(Llama2cTest, Version1LayoutSharedAndUnshared) {
  for (bool shared : {true, false}) {
    Dims d;
    d.shared = shared;
    const std::vector<uint8_t> bytes = Version1(d);
    EXPECT_TRUE(Llama2cCheckpoint::Sniff(bytes, bytes.size()));
    auto c = Llama2cCheckpoint::Parse(bytes, "m.bin");
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ((*c)->config().version, 1);
    CheckLayout(**c, d);
  }
}

TEST(Llama2cTest, SniffRejectsOtherFiles) {
  const std::vector<uint8_t> gguf = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                     0,   0,   0,   0,   0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_FALSE(Llama2cCheckpoint::Sniff(gguf, 1 << 20));
  const std::string text = "this is not a model at all, just text";
  EXPECT_FALSE(Llama2cCheckpoint::Sniff(
      {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, text.size()));
  // A plausible legacy header whose size does not match is not taken for one.
  const std::vector<uint8_t> legacy = Legacy(Dims{});
  EXPECT_FALSE(Llama2cCheckpoint::Sniff(legacy, legacy.size() + 4));
  EXPECT_FALSE(Llama2cCheckpoint::Sniff({legacy.data(), 8}, legacy.size()));
}

TEST(Llama2cTest, BadHeadersAndSizesAreClearErrors) {
  const auto parse_error = [](std::vector<uint8_t> bytes) {
    auto c = Llama2cCheckpoint::Parse(bytes, "bad.bin");
    EXPECT_FALSE(c.ok());
    return c.ok() ? absl::OkStatus() : c.status();
  };
  Dims d;
  std::vector<uint8_t> legacy = Legacy(d);

  absl::Status s = parse_error({legacy.begin(), legacy.end() - 4});
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("bad.bin"));
  EXPECT_THAT(s.message(), HasSubstr("(truncated)"));

  std::vector<uint8_t> longer = legacy;
  longer.push_back(0);
  s = parse_error(longer);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("trailing bytes"));

  Dims odd = d;
  odd.heads = 3;  // 8 is not a multiple of 3
  s = parse_error(Legacy(odd));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("not a multiple of n_heads"));

  Dims groups = d;
  groups.kv_heads = 3;
  s = parse_error(Legacy(groups));
  EXPECT_THAT(s.message(), HasSubstr("n_kv_heads = 3 does not divide n_heads"));

  std::vector<uint8_t> zero_layers = legacy;
  std::memset(zero_layers.data() + 8, 0, 4);
  s = parse_error(zero_layers);
  EXPECT_THAT(s.message(), HasSubstr("n_layers = 0 is outside"));

  std::vector<uint8_t> huge = legacy;
  const int32_t big = 1 << 30;
  std::memcpy(huge.data(), &big, 4);
  s = parse_error(huge);
  EXPECT_THAT(s.message(), HasSubstr("dim = 1073741824 is outside"));

  std::vector<uint8_t> v2 = Version1(d);
  v2[4] = 2;
  s = parse_error(v2);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("version 2"));

  std::vector<uint8_t> flag = Version1(d);
  flag[36] = 7;
  s = parse_error(flag);
  EXPECT_THAT(s.message(), HasSubstr("shared_classifier = 7"));

  s = parse_error({1, 2, 3});
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("truncated llama2.c header"));

  std::vector<uint8_t> v1_short = Version1(d);
  v1_short.resize(100);
  s = parse_error(v1_short);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
}

TEST(Llama2cTest, OpenMissingFileIsNotFound) {
  auto c = Llama2cCheckpoint::Open("/nonexistent/model.bin");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(Llama2cCheckpoint::SniffFile("/nonexistent/model.bin"));
}

}  // namespace
}  // namespace ferry
