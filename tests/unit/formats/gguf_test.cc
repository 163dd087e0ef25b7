#include "engine/formats/gguf.h"

#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"
#include "tests/unit/formats/test_files.h"

namespace ferry {
namespace {

using ::testing::HasSubstr;

TEST(GgufReaderTest, ReadsStories260K) {
  FERRY_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->version(), 3u);
  EXPECT_EQ((*f)->tensors().size(), 48u);
  for (const GgufTensorInfo& t : (*f)->tensors()) {
    EXPECT_EQ(t.dtype, DType::kF32) << t.name;
    EXPECT_EQ(t.num_bytes, t.NumElements() * 4) << t.name;
  }
  EXPECT_EQ(*(*f)->GetString("general.architecture"), "llama");
  EXPECT_EQ(*(*f)->GetInt("llama.embedding_length"), 64);
  EXPECT_EQ(*(*f)->GetInt("llama.block_count"), 5);
  EXPECT_EQ(*(*f)->GetInt("llama.attention.head_count_kv"), 4);
  auto tokens = (*f)->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->size(), 512u);
  const GgufTensorInfo* embd = (*f)->FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->Shape(), (std::vector<uint64_t>{512, 64}));
  // Typed getters report a wrong type and a missing key.
  EXPECT_EQ((*f)->GetString("llama.embedding_length").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*f)->GetInt("no.such.key").status().code(), absl::StatusCode::kNotFound);
}

class GgufBadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_SHARED(path, "models/stories260K.gguf");
    bytes_ = testing::ReadBytes(path);
  }
  absl::Status ParseBytes(const std::vector<uint8_t>& bytes) {
    return GgufFile::Parse(bytes, "bad.gguf").status();
  }
  std::vector<uint8_t> bytes_;
};

TEST_F(GgufBadInputTest, TruncatedFileNamesTheFile) {
  for (size_t size : {size_t{0}, size_t{3}, size_t{20}, size_t{1000}, bytes_.size() / 2,
                      bytes_.size() - 1}) {
    std::vector<uint8_t> cut(bytes_.begin(), bytes_.begin() + size);
    absl::Status s = ParseBytes(cut);
    EXPECT_FALSE(s.ok()) << size;
    EXPECT_THAT(s.message(), HasSubstr("bad.gguf")) << size;
  }
}

TEST_F(GgufBadInputTest, TruncatedDataNamesTheTensor) {
  std::vector<uint8_t> cut(bytes_.begin(), bytes_.end() - 4);
  absl::Status s = ParseBytes(cut);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("tensor '"));
  EXPECT_THAT(s.message(), HasSubstr("outside the file"));
}

TEST_F(GgufBadInputTest, WrongMagic) {
  std::vector<uint8_t> bad = bytes_;
  std::memcpy(bad.data(), "GGUX", 4);
  absl::Status s = ParseBytes(bad);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("bad.gguf: not a GGUF file"));
}

TEST(GgufReaderTest, MissingFileNamesThePath) {
  auto f = GgufFile::Open("/nonexistent/dir/model.gguf");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("/nonexistent/dir/model.gguf"));
}

}  // namespace
}  // namespace ferry
