// FromGguf on small GGUF files built in memory.
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

// Writes GGUF v3 metadata (no tensors).
class GgufBuilder {
 public:
  GgufBuilder& String(const std::string& key, const std::string& value) {
    Key(key, 8);
    Str(value);
    return *this;
  }
  GgufBuilder& Int(const std::string& key, int32_t value) {
    Key(key, 5);
    Pod(value);
    return *this;
  }
  GgufBuilder& Strings(const std::string& key, const std::vector<std::string>& values) {
    Key(key, 9);
    Pod(uint32_t{8});
    Pod(uint64_t{values.size()});
    for (const auto& v : values) Str(v);
    return *this;
  }
  GgufBuilder& Ints(const std::string& key, const std::vector<int32_t>& values) {
    Key(key, 9);
    Pod(uint32_t{5});
    Pod(uint64_t{values.size()});
    for (int32_t v : values) Pod(v);
    return *this;
  }

  absl::StatusOr<std::unique_ptr<Tokenizer>> Load() {
    std::vector<uint8_t> file;
    const auto put = [&](const void* p, size_t n) {
      file.insert(file.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    };
    const uint32_t magic = 0x46554747, version = 3;
    const uint64_t num_tensors = 0;
    put(&magic, 4);
    put(&version, 4);
    put(&num_tensors, 8);
    put(&num_kv_, 8);
    put(body_.data(), body_.size());
    bytes_ = std::move(file);
    auto gguf = GgufFile::Parse(bytes_, "test.gguf");
    if (!gguf.ok()) return gguf.status();
    gguf_ = *std::move(gguf);
    return Tokenizer::FromGguf(*gguf_);
  }

 private:
  template <typename T>
  void Pod(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    body_.insert(body_.end(), p, p + sizeof(T));
  }
  void Str(const std::string& s) {
    Pod(uint64_t{s.size()});
    body_.insert(body_.end(), s.begin(), s.end());
  }
  void Key(const std::string& key, uint32_t type) {
    ++num_kv_;
    Str(key);
    Pod(type);
  }

  uint64_t num_kv_ = 0;
  std::vector<uint8_t> body_;
  std::vector<uint8_t> bytes_;
  std::unique_ptr<GgufFile> gguf_;
};

// A byte-level vocabulary: the 256 byte characters, "12", then <|im_end|>.
GgufBuilder TinyBpe(const std::string& pre) {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) {
    std::string t;
    AppendByteLevel(std::string(1, static_cast<char>(b)), &t);
    tokens.push_back(t);
  }
  tokens.push_back("12");
  tokens.push_back("<|im_end|>");
  std::vector<int32_t> types(tokens.size(), 1);
  types.back() = 3;
  GgufBuilder b;
  b.String("tokenizer.ggml.model", "gpt2")
      .Strings("tokenizer.ggml.tokens", tokens)
      .Ints("tokenizer.ggml.token_type", types)
      .Strings("tokenizer.ggml.merges", {"1 2"})
      .Int("tokenizer.ggml.eos_token_id", 257)
      .String("tokenizer.chat_template", "{{ messages }}");
  if (!pre.empty()) b.String("tokenizer.ggml.pre", pre);
  return b;
}

TEST(GgufTokenizerTest, ByteLevelWithQwen2PreTokenizer) {
  auto tok = TinyBpe("qwen2").Load();
  ASSERT_TRUE(tok.ok()) << tok.status();
  // Qwen2 takes digits one at a time, so "12" never merges.
  EXPECT_EQ((*tok)->Encode("12", false, false), (std::vector<int32_t>{'1', '2'}));
  EXPECT_EQ((*tok)->chat_template(), "{{ messages }}");
  EXPECT_EQ((*tok)->eos_ids(), (std::vector<int32_t>{257}));
  EXPECT_FALSE((*tok)->add_bos());
  auto gpt2 = TinyBpe("").Load();
  ASSERT_TRUE(gpt2.ok()) << gpt2.status();
  EXPECT_EQ((*gpt2)->Encode("12", false, false), (std::vector<int32_t>{256}));
}

TEST(GgufTokenizerTest, UnknownPreTokenizerIsUnimplemented) {
  auto tok = TinyBpe("made-up").Load();
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(tok.status().message().find("made-up"), std::string_view::npos) << tok.status();
}

TEST(GgufTokenizerTest, Errors) {
  auto no_model = GgufBuilder().Int("x", 1).Load();
  EXPECT_EQ(no_model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_model.status().message().find("tokenizer.ggml.model"), std::string_view::npos);

  auto bert = GgufBuilder().String("tokenizer.ggml.model", "bert").Load();
  EXPECT_EQ(bert.status().code(), absl::StatusCode::kUnimplemented);

  auto no_tokens = GgufBuilder().String("tokenizer.ggml.model", "llama").Load();
  EXPECT_EQ(no_tokens.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_tokens.status().message().find("tokenizer.ggml.tokens"), std::string_view::npos)
      << no_tokens.status();

  auto bad_types = GgufBuilder()
                       .String("tokenizer.ggml.model", "llama")
                       .Strings("tokenizer.ggml.tokens", {"a", "b"})
                       .Ints("tokenizer.ggml.token_type", {1})
                       .Load();
  EXPECT_EQ(bad_types.status().code(), absl::StatusCode::kInvalidArgument);

  auto bad_bos = GgufBuilder()
                     .String("tokenizer.ggml.model", "llama")
                     .Strings("tokenizer.ggml.tokens", {"a", "b"})
                     .Int("tokenizer.ggml.bos_token_id", 7)
                     .Load();
  EXPECT_EQ(bad_bos.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_bos.status().message().find("bos_token_id"), std::string_view::npos);

  auto no_merges = GgufBuilder()
                       .String("tokenizer.ggml.model", "gpt2")
                       .Strings("tokenizer.ggml.tokens", {"a", "b"})
                       .Load();
  EXPECT_EQ(no_merges.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(no_merges.status().message().find("tokenizer.ggml.merges"), std::string_view::npos);
}

TEST(GgufTokenizerTest, SentencePieceWithoutByteTokensUsesUnk) {
  auto tok = GgufBuilder()
                 .String("tokenizer.ggml.model", "llama")
                 .Strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a"})
                 .Ints("tokenizer.ggml.token_type", {2, 3, 3, 1, 1})
                 .Load();
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_TRUE((*tok)->add_bos());
  EXPECT_EQ((*tok)->Encode("a\xC3\xA9", true, false), (std::vector<int32_t>{1, 3, 4, 0}));
}

}  // namespace
}  // namespace ferry
