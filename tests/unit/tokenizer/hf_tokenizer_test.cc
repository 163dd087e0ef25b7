// Tokenizers loaded from Hugging Face tokenizer.json files built here.
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer/tiny_tokenizers.h"

namespace ferry {
namespace {

using ::ferry::testing::LoadTiny;
using ::ferry::testing::MakeTempDir;
using ::ferry::testing::TinyByteLevelJson;
using ::ferry::testing::TinySpmJson;
using ::ferry::testing::WriteFile;
using Ids = std::vector<int32_t>;

constexpr char kConfig[] = R"({
  "bos_token": null,
  "eos_token": {"content": "<|im_end|>", "special": true},
  "add_bos_token": false,
  "chat_template": [{"name": "default", "template": "T"}, {"name": "tool_use", "template": "X"}]
})";

TEST(HfTokenizerTest, ByteLevelBpe) {
  auto tok = LoadTiny(MakeTempDir("a"), TinyByteLevelJson(), kConfig);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->kind(), TokenizerKind::kByteLevelBpe);
  EXPECT_EQ(tok->vocab_size(), 265);
  EXPECT_EQ(tok->Encode("hello the", true, false), (Ids{261, 260}));
  EXPECT_EQ(tok->Decode(Ids{261, 260}), "hello the");
  EXPECT_EQ(tok->TokenText(260), "\xC4\xA0the");
  EXPECT_EQ(tok->TokenBytes(260), " the");
  EXPECT_EQ(tok->eos_id(), 263);
  EXPECT_EQ(tok->eos_ids(), (Ids{263}));
  EXPECT_FALSE(tok->bos_id().has_value());
  EXPECT_FALSE(tok->add_bos());
  EXPECT_EQ(tok->chat_template(), "T");
}

TEST(HfTokenizerTest, SpecialTokens) {
  auto tok = LoadTiny(MakeTempDir("a"), TinyByteLevelJson(), kConfig);
  ASSERT_NE(tok, nullptr);
  const std::string text = "<|im_start|>hello<|im_end|>";
  EXPECT_EQ(tok->Encode(text, false, true), (Ids{262, 261, 263}));
  const Ids plain = tok->Encode(text, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 262), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 263), 0);
  EXPECT_EQ(tok->Decode(plain), text);
  EXPECT_EQ(tok->Decode(Ids{262, 261, 263}), "hello");
  EXPECT_EQ(tok->Decode(Ids{262, 261, 263}, false), text);
  EXPECT_TRUE(tok->IsControl(262));
  EXPECT_FALSE(tok->IsControl(264));
  // Non-special added tokens always split the text.
  EXPECT_EQ(tok->Encode("<tool>hello", false, false), (Ids{264, 261}));
  EXPECT_EQ(tok->Decode(Ids{264, 261}), "<tool>hello");
}

TEST(HfTokenizerTest, InvalidUtf8IsEncodedAsBytes) {
  auto tok = LoadTiny(MakeTempDir("a"), TinyByteLevelJson());
  ASSERT_NE(tok, nullptr);
  const std::string text = "he\xFF\xC3 \x80llo\xF0\x9F";
  const Ids ids = tok->Encode(text, false, false);
  EXPECT_EQ(tok->Decode(ids), text);
}

TEST(HfTokenizerTest, SplitPatternSelectsPreTokenizer) {
  nlohmann::json json = TinyByteLevelJson();
  json["model"]["ignore_merges"] = true;
  json["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern",
          {{"Regex",
            R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  // A merge that only applies if "12345" stays one word.
  json["model"]["vocab"]["34"] = 265;
  json["model"]["merges"].push_back("3 4");
  auto tok = LoadTiny(MakeTempDir("a"), json);
  ASSERT_NE(tok, nullptr);
  // Llama 3 splits digits in threes ("123" "45") and leaves the space alone;
  // GPT-2 would give " 12345" and merge "34".
  EXPECT_EQ(tok->Encode("hello 12345", false, false), (Ids{261, ' ', '1', '2', '3', '4', '5'}));
  EXPECT_EQ(tok->Encode("x 1234", false, false), (Ids{'x', ' ', '1', '2', '3', '4'}));
}

TEST(HfTokenizerTest, UnknownSplitPatternIsUnimplemented) {
  nlohmann::json json = TinyByteLevelJson();
  json["pre_tokenizer"] = {{"type", "Sequence"},
                           {"pretokenizers",
                            {{{"type", "Split"}, {"pattern", {{"Regex", "[a-z]+"}}}},
                             {{"type", "ByteLevel"}, {"use_regex", false}}}}};
  const std::string dir = MakeTempDir("a");
  auto tok = Tokenizer::FromHuggingFace(WriteFile(dir, "tokenizer.json", json.dump()), "");
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(tok.status().message().find("[a-z]+"), std::string_view::npos) << tok.status();
}

TEST(HfTokenizerTest, SentencePieceStyle) {
  auto tok = LoadTiny(MakeTempDir("a"), TinySpmJson());
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->kind(), TokenizerKind::kSentencePiece);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->Encode("hello", true, false), (Ids{1, 268}));
  // "é" has no token: its two bytes fall back to <0xC3> <0xA9>.
  const Ids ids = tok->Encode("hello hé", false, false);
  EXPECT_EQ(ids, (Ids{268, 259, 260, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tok->Decode(ids), "hello hé");
  EXPECT_EQ(tok->Encode("<s>hello", false, true), (Ids{1, 268}));
  EXPECT_EQ(tok->Decode(Ids{1, 268, 268}), "hello hello");
}

struct MalformedCase {
  std::string name;
  std::string json;    // tokenizer.json, or empty for the tiny byte-level one
  std::string config;  // tokenizer_config.json, or empty for none
  std::string field;   // expected in the message
};

// Names the case in test listings instead of dumping its bytes.
void PrintTo(const MalformedCase& c, std::ostream* os) { *os << c.name; }

class MalformedTest : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(MalformedTest, GivesInvalidArgumentNamingFileAndField) {
  const MalformedCase& c = GetParam();
  const std::string dir = MakeTempDir(c.name);
  const std::string json_path =
      WriteFile(dir, "tokenizer.json", c.json.empty() ? TinyByteLevelJson().dump() : c.json);
  const std::string config_path =
      c.config.empty() ? "" : WriteFile(dir, "tokenizer_config.json", c.config);
  auto tok = Tokenizer::FromHuggingFace(json_path, config_path);
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kInvalidArgument) << tok.status();
  const std::string file = c.config.empty() ? "tokenizer.json" : "tokenizer_config.json";
  EXPECT_NE(tok.status().message().find(file), std::string_view::npos) << tok.status();
  EXPECT_NE(tok.status().message().find(c.field), std::string_view::npos) << tok.status();
}

nlohmann::json With(const std::string& pointer, nlohmann::json value) {
  nlohmann::json j = TinyByteLevelJson();
  j[nlohmann::json::json_pointer(pointer)] = std::move(value);
  return j;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedTest,
    ::testing::Values(
        MalformedCase{"truncated", "{\"model\": {", "", "JSON"},
        MalformedCase{"not_object", "[1, 2]", "", "top level"},
        MalformedCase{"no_model", R"({"version": "1.0"})", "", "model"},
        MalformedCase{"vocab_array", With("/model/vocab", {1, 2}).dump(), "", "model.vocab"},
        MalformedCase{"vocab_id_string", With("/model/vocab/a", "x").dump(), "", "model.vocab.a"},
        MalformedCase{"merge_number", With("/model/merges/1", 5).dump(), "", "model.merges[1]"},
        MalformedCase{"merge_no_space", With("/model/merges/0", "he").dump(), "",
                      "model.merges[0]"},
        MalformedCase{"added_id", With("/added_tokens/0/id", "7").dump(), "", "added_tokens[0].id"},
        MalformedCase{"added_id_huge", With("/added_tokens/0/id", 1000000000).dump(), "",
                      "added_tokens[0].id"},
        MalformedCase{"added_special", With("/added_tokens/1/special", "yes").dump(), "",
                      "added_tokens[1].special"},
        MalformedCase{"byte_fallback", With("/model/byte_fallback", 1).dump(), "",
                      "model.byte_fallback"},
        MalformedCase{"config_truncated", "", "{", "JSON"},
        MalformedCase{"config_add_bos", "", R"({"add_bos_token": "yes"})", "add_bos_token"},
        MalformedCase{"config_eos", "", R"({"eos_token": 5})", "eos_token"},
        MalformedCase{"config_template", "", R"({"chat_template": 5})", "chat_template"},
        MalformedCase{"config_template_entry", "", R"({"chat_template": [{"name": "default"}]})",
                      "chat_template[0].template"}),
    [](const ::testing::TestParamInfo<MalformedCase>& info) { return info.param.name; });

TEST(HfTokenizerTest, MissingFileIsNotFound) {
  auto tok = Tokenizer::FromHuggingFace("/nonexistent/tokenizer.json", "");
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kNotFound);
}

TEST(HfTokenizerTest, UnsupportedModelType) {
  const std::string dir = MakeTempDir("a");
  auto tok = Tokenizer::FromHuggingFace(
      WriteFile(dir, "tokenizer.json", With("/model/type", "Unigram").dump()), "");
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace ferry
