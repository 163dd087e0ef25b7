#include "engine/tokenizer/pre_tokenizer.h"

#include <string>
#include <vector>

#include "engine/tokenizer/unicode.h"
#include "gtest/gtest.h"

namespace ferry {
namespace {

using Words = std::vector<std::string>;

Words Split(std::string_view text, PreTokenizerKind kind) {
  std::vector<std::string_view> views;
  SplitWords(text, kind, &views);
  return Words(views.begin(), views.end());
}

TEST(PreTokenizerTest, Gpt2) {
  EXPECT_EQ(Split("Hello world 123456 it's\n\n  x", PreTokenizerKind::kGpt2),
            (Words{"Hello", " world", " 123456", " it", "'s", "\n\n ", " x"}));
  EXPECT_EQ(Split("I'VE  ", PreTokenizerKind::kGpt2), (Words{"I", "'", "VE", "  "}));
  EXPECT_EQ(Split("a\xFF"
                  "b",
                  PreTokenizerKind::kGpt2),
            (Words{"a", "\xFF", "b"}));
  EXPECT_EQ(Split("", PreTokenizerKind::kGpt2), Words{});
}

TEST(PreTokenizerTest, Llama3) {
  EXPECT_EQ(Split("Hello world 123456 it's\n\n  x", PreTokenizerKind::kLlama3),
            (Words{"Hello", " world", " ", "123", "456", " it", "'s", "\n\n", " ", " x"}));
  EXPECT_EQ(Split("I'VE (ok)!!\n\nz", PreTokenizerKind::kLlama3),
            (Words{"I", "'VE", " (", "ok", ")!!\n\n", "z"}));
  EXPECT_EQ(Split("a\xFF"
                  "b",
                  PreTokenizerKind::kLlama3),
            (Words{"a",
                   "\xFF"
                   "b"}));
  EXPECT_EQ(Split("нещо 你好", PreTokenizerKind::kLlama3), (Words{"нещо", " 你好"}));
}

TEST(PreTokenizerTest, Qwen2SplitsDigitsOneByOne) {
  EXPECT_EQ(Split("x 1234", PreTokenizerKind::kQwen2), (Words{"x", " ", "1", "2", "3", "4"}));
}

TEST(PreTokenizerTest, NamesAndPatterns) {
  EXPECT_EQ(*PreTokenizerFromGgufName("llama-bpe"), PreTokenizerKind::kLlama3);
  EXPECT_EQ(*PreTokenizerFromGgufName("qwen2"), PreTokenizerKind::kQwen2);
  EXPECT_EQ(*PreTokenizerFromGgufName(""), PreTokenizerKind::kGpt2);
  EXPECT_FALSE(PreTokenizerFromGgufName("made-up").ok());
  EXPECT_EQ(PreTokenizerFromRegex("[a-z]+"), std::nullopt);
}

TEST(UnicodeTest, Classes) {
  EXPECT_EQ(ClassifyCodepoint('a'), kCodepointLetter);
  EXPECT_EQ(ClassifyCodepoint(0x4F60), kCodepointLetter);  // 你
  EXPECT_EQ(ClassifyCodepoint(0x0663), kCodepointNumber);  // Arabic-Indic 3
  EXPECT_EQ(ClassifyCodepoint(0x2167), kCodepointNumber);  // Roman numeral VIII
  EXPECT_EQ(ClassifyCodepoint(0x3000), kCodepointWhitespace);
  EXPECT_EQ(ClassifyCodepoint(0x1F999), 0);  // 🦙
  EXPECT_EQ(ClassifyCodepoint(kInvalidCodepoint), 0);
}

TEST(UnicodeTest, DecodeRejectsInvalidSequences) {
  for (std::string bad : {"\x80", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xE2\x82"}) {
    EXPECT_EQ(DecodeUtf8(bad, 0).codepoint, kInvalidCodepoint) << bad.size();
    EXPECT_EQ(DecodeUtf8(bad, 0).num_bytes, 1u);
  }
  EXPECT_EQ(DecodeUtf8("\xF0\x9F\xA6\x99", 0).codepoint, 0x1F999u);
  EXPECT_EQ(CompleteUtf8Prefix("ab\xF0\x9F\xA6"), 2u);
  EXPECT_EQ(CompleteUtf8Prefix("ab\xF0\x9F\xA6\x99"), 6u);
  EXPECT_EQ(CompleteUtf8Prefix("ab\x80"), 3u);
}

}  // namespace
}  // namespace ferry
