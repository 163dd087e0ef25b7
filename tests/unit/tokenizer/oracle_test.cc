// Checks the GGUF tokenizers against llama.cpp's test vectors and models.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::unique_ptr<Tokenizer> LoadGguf(const std::string& path) {
  auto gguf = GgufFile::Open(path);
  EXPECT_TRUE(gguf.ok()) << gguf.status();
  if (!gguf.ok()) return nullptr;
  auto tokenizer = Tokenizer::FromGguf(**gguf);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

std::vector<int32_t> ParseIds(const std::string& line) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    ids.push_back(std::stoi(std::string(part)));
  }
  return ids;
}

// Every input of <vocab>.inp must encode to its line of <vocab>.out and
// decode back to itself.
void CheckVectors(const std::string& gguf_path) {
  auto tokenizer = LoadGguf(gguf_path);
  ASSERT_NE(tokenizer, nullptr);
  std::vector<std::string> inputs =
      absl::StrSplit(ReadFile(gguf_path + ".inp"), "\n__ggml_vocab_test__\n");
  ASSERT_FALSE(inputs.empty());
  ASSERT_EQ(inputs.back(), "");
  inputs.pop_back();
  std::vector<std::string> outputs = absl::StrSplit(ReadFile(gguf_path + ".out"), '\n');
  ASSERT_GE(outputs.size(), inputs.size());
  ASSERT_EQ(inputs.size(), 46u);
  for (size_t i = 0; i < inputs.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "input " << i << ": '" << inputs[i] << "'");
    const std::vector<int32_t> ids = tokenizer->Encode(inputs[i], false, false);
    EXPECT_EQ(ids, ParseIds(outputs[i]));
    EXPECT_EQ(tokenizer->Decode(ids), inputs[i]);
  }
}

TEST(OracleTest, LlamaSpmVectors) {
  FERRY_REQUIRE_SHARED(path, "testdata/tokenizer/ggml-vocab-llama-spm.gguf");
  CheckVectors(path);
}

TEST(OracleTest, Gpt2Vectors) {
  FERRY_REQUIRE_SHARED(path, "testdata/tokenizer/ggml-vocab-gpt-2.gguf");
  CheckVectors(path);
}

TEST(OracleTest, Stories260K) {
  FERRY_REQUIRE_SHARED(path, "models/stories260K.gguf");
  auto tokenizer = LoadGguf(path);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->kind(), TokenizerKind::kSentencePiece);
  EXPECT_TRUE(tokenizer->add_bos());
  const auto ids = tokenizer->Encode("Once upon a time", true, false);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 403, 407, 261, 378}));
  EXPECT_EQ(tokenizer->Decode(ids), "Once upon a time");
  EXPECT_EQ(tokenizer->Decode(ids, /*skip_special=*/false), "<s> Once upon a time");
}

TEST(OracleTest, Llama2TinyRandom) {
  FERRY_REQUIRE_SHARED(path, "models/llama-2-tiny-random.gguf");
  auto tokenizer = LoadGguf(path);
  ASSERT_NE(tokenizer, nullptr);
  const auto ids = tokenizer->Encode("Once upon a time", true, false);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 9038, 2501, 263, 931}));
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_id(), 2);
  EXPECT_EQ(tokenizer->eos_ids(), (std::vector<int32_t>{2}));
  EXPECT_TRUE(tokenizer->IsControl(1));
  EXPECT_FALSE(tokenizer->IsControl(9038));
  EXPECT_EQ(tokenizer->TokenText(9038), "\xE2\x96\x81Once");
  EXPECT_EQ(tokenizer->TokenBytes(9038), " Once");
  EXPECT_EQ(tokenizer->TokenId("\xE2\x96\x81Once"), 9038);
}

TEST(OracleTest, SpmSpecialTokensAndInvalidUtf8) {
  FERRY_REQUIRE_SHARED(path, "testdata/tokenizer/ggml-vocab-llama-spm.gguf");
  auto tokenizer = LoadGguf(path);
  ASSERT_NE(tokenizer, nullptr);
  // Parsed: "<s>" is BOS and the text after it gets its own dummy prefix.
  EXPECT_EQ(tokenizer->Encode("<s>Hello", false, true), (std::vector<int32_t>{1, 15043}));
  // Not parsed: plain text never becomes a control or byte token.
  for (int32_t id : tokenizer->Encode("<s></s><0x0A>", false, false)) {
    EXPECT_FALSE(tokenizer->IsControl(id));
    EXPECT_NE(tokenizer->TokenText(id), "<0x0A>");
  }
  const std::string invalid = "a\xFF\xC3(b\xE2\x82";
  const auto ids = tokenizer->Encode(invalid, false, false);
  EXPECT_EQ(tokenizer->Decode(ids), invalid);
  // With BOS and EOS as the vocabulary asks (BOS only for Llama 2).
  EXPECT_EQ(tokenizer->Encode("Hello", true, false), (std::vector<int32_t>{1, 15043}));
  EXPECT_EQ(tokenizer->Encode("", true, false), (std::vector<int32_t>{1}));
}

TEST(OracleTest, Gpt2SpecialTokensAndInvalidUtf8) {
  FERRY_REQUIRE_SHARED(path, "testdata/tokenizer/ggml-vocab-gpt-2.gguf");
  auto tokenizer = LoadGguf(path);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->kind(), TokenizerKind::kByteLevelBpe);
  EXPECT_FALSE(tokenizer->add_bos());
  EXPECT_EQ(tokenizer->Encode("Hello<|endoftext|>", false, true),
            (std::vector<int32_t>{15496, 50256}));
  const auto plain = tokenizer->Encode("Hello<|endoftext|>", false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 50256), 0);
  EXPECT_EQ(tokenizer->Decode(plain), "Hello<|endoftext|>");
  EXPECT_EQ(tokenizer->eos_ids(), (std::vector<int32_t>{50256}));
  EXPECT_EQ(tokenizer->Decode(std::vector<int32_t>{15496, 50256}), "Hello");
  EXPECT_EQ(tokenizer->Decode(std::vector<int32_t>{15496, 50256}, false), "Hello<|endoftext|>");
  const std::string invalid = "a\xFF\xC3(b\xE2\x82 \x80\x80x";
  const auto ids = tokenizer->Encode(invalid, false, false);
  EXPECT_EQ(tokenizer->Decode(ids), invalid);
  EXPECT_EQ(tokenizer->Decode(std::vector<int32_t>{-1, 1 << 30}), "");
}

TEST(OracleTest, LongPromptIsFast) {
  FERRY_REQUIRE_SHARED(spm_path, "testdata/tokenizer/ggml-vocab-llama-spm.gguf");
  FERRY_REQUIRE_SHARED(gpt2_path, "testdata/tokenizer/ggml-vocab-gpt-2.gguf");
  std::string text;
  while (text.size() < 5000) {
    text += "The quick brown fox jumps over the lazy dog, 1234 times; naïve café ünïcödé 你好. ";
  }
  for (const std::string& path : {spm_path, gpt2_path}) {
    auto tokenizer = LoadGguf(path);
    ASSERT_NE(tokenizer, nullptr);
    const auto start = std::chrono::steady_clock::now();
    constexpr int kRounds = 20;
    size_t num_tokens = 0;
    for (int i = 0; i < kRounds; ++i) num_tokens = tokenizer->Encode(text, true, true).size();
    const auto per_round = (std::chrono::steady_clock::now() - start) / kRounds;
    EXPECT_GT(num_tokens, 1000u);
    // Generous for sanitizer and debug builds; release takes well under 1 ms.
    EXPECT_LT(per_round, std::chrono::milliseconds(20)) << path;
    std::printf("%s: %zu tokens in %.3f ms\n", path.c_str(), num_tokens,
                std::chrono::duration<double, std::milli>(per_round).count());
  }
}

}  // namespace
}  // namespace ferry
