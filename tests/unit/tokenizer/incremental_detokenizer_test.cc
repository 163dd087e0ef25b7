#include <string>
#include <vector>

#include "engine/formats/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"
#include "tests/unit/tokenizer/tiny_tokenizers.h"

namespace ferry {
namespace {

using ::ferry::testing::LoadTiny;
using ::ferry::testing::MakeTempDir;
using ::ferry::testing::TinyByteLevelJson;
using ::ferry::testing::TinySpmJson;
using Ids = std::vector<int32_t>;

bool IsValidUtf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const Utf8Char c = DecodeUtf8(s, pos);
    if (c.codepoint == kInvalidCodepoint) return false;
    pos += c.num_bytes;
  }
  return true;
}

// Streams `ids` one at a time; every piece must be whole characters and all
// of them together the full decode.
void CheckStream(const Tokenizer& tok, const Ids& ids, const std::string& expected) {
  ASSERT_EQ(tok.Decode(ids), expected);
  IncrementalDetokenizer detok(tok);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string piece = detok.Add(id);
    EXPECT_TRUE(IsValidUtf8(piece)) << "piece after id " << id;
    streamed += piece;
  }
  streamed += detok.Flush();
  EXPECT_EQ(streamed, expected);
}

TEST(IncrementalDetokenizerTest, ByteLevelMultiByteCharacters) {
  auto tok = LoadTiny(MakeTempDir("a"), TinyByteLevelJson());
  ASSERT_NE(tok, nullptr);
  const std::string text = "hello 🦙 the 你好 Führer 😶‍🌫️";
  const Ids ids = tok->Encode(text, false, false);
  ASSERT_GT(ids.size(), 20u);  // the emoji and CJK are single-byte tokens here
  CheckStream(*tok, ids, text);
}

TEST(IncrementalDetokenizerTest, SentencePieceByteFallbackAndLeadingSpace) {
  auto tok = LoadTiny(MakeTempDir("a"), TinySpmJson());
  ASSERT_NE(tok, nullptr);
  const std::string text = "hello 🦙 hello 你";
  const Ids ids = tok->Encode(text, true, false);
  EXPECT_EQ(ids.front(), 1);
  CheckStream(*tok, ids, text);
  CheckStream(*tok, tok->Encode(text, false, false), text);
}

TEST(IncrementalDetokenizerTest, SpecialTokens) {
  auto tok = LoadTiny(MakeTempDir("a"), TinyByteLevelJson());
  ASSERT_NE(tok, nullptr);
  IncrementalDetokenizer skipping(*tok);
  EXPECT_EQ(skipping.Add(262), "");
  EXPECT_EQ(skipping.Add(261), "hello");
  IncrementalDetokenizer keeping(*tok, /*skip_special=*/false);
  EXPECT_EQ(keeping.Add(262), "<|im_start|>");
  EXPECT_EQ(keeping.Add(261), "hello");
}

TEST(IncrementalDetokenizerTest, FlushReplacesIncompleteCharacter) {
  auto tok = LoadTiny(MakeTempDir("a"), TinyByteLevelJson());
  ASSERT_NE(tok, nullptr);
  IncrementalDetokenizer detok(*tok);
  EXPECT_EQ(detok.Add('h'), "h");
  EXPECT_EQ(detok.Add(0xF0), "");
  EXPECT_EQ(detok.Add(0x9F), "");
  EXPECT_EQ(detok.Flush(), "\xEF\xBF\xBD\xEF\xBF\xBD");
  // A stray continuation byte can never complete: replaced at once.
  IncrementalDetokenizer stray(*tok);
  EXPECT_EQ(stray.Add(0x80), "\xEF\xBF\xBD");
}

TEST(IncrementalDetokenizerTest, LlamaSpmVocab) {
  FERRY_REQUIRE_SHARED(path, "testdata/tokenizer/ggml-vocab-llama-spm.gguf");
  auto gguf = GgufFile::Open(path);
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto tok = Tokenizer::FromGguf(**gguf);
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::string text = " this is 🦙.cpp កាន់តែ 😶‍🌫️ Cửa Việt";
  CheckStream(**tok, (*tok)->Encode(text, true, false), text);
}

}  // namespace
}  // namespace ferry
