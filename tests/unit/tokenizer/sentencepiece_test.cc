// SentencePiece tokenizer.model and llama2.c tokenizer.bin vocabularies:
// synthetic files for the parsers' edges, and the real ones of
// ../shared against the GGUF tokenizers and llama.cpp's test vectors.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/sentencepiece_model.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

// A protobuf wire-format writer, just enough for ModelProto.
void PutVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}
void PutBytes(std::string* out, int field, std::string_view bytes) {
  PutVarint(out, static_cast<uint64_t>(field) << 3 | 2);
  PutVarint(out, bytes.size());
  out->append(bytes);
}
void PutInt(std::string* out, int field, int64_t v) {
  PutVarint(out, static_cast<uint64_t>(field) << 3);
  PutVarint(out, static_cast<uint64_t>(v));
}
void PutFloat(std::string* out, int field, float v) {
  PutVarint(out, static_cast<uint64_t>(field) << 3 | 5);
  char b[4];
  std::memcpy(b, &v, 4);
  out->append(b, 4);
}

struct Piece {
  std::string text;
  float score;
  int type;  // 1 normal, 2 unknown, 3 control, 6 byte
};

struct ProtoOptions {
  int model_type = 2;  // BPE
  bool add_dummy_prefix = true;
  int bos_id = 1, eos_id = 2, unk_id = 0;
};

std::string ModelProto(const std::vector<Piece>& pieces, const ProtoOptions& o = {}) {
  std::string out;
  for (const Piece& p : pieces) {
    std::string msg;
    PutBytes(&msg, 1, p.text);
    PutFloat(&msg, 2, p.score);
    if (p.type != 1) PutInt(&msg, 3, p.type);  // NORMAL is the default
    PutBytes(&out, 1, msg);
  }
  std::string trainer;
  PutBytes(&trainer, 1, "corpus.txt");  // a field the reader skips
  PutInt(&trainer, 3, o.model_type);
  PutInt(&trainer, 40, o.unk_id);
  PutInt(&trainer, 41, o.bos_id);
  PutInt(&trainer, 42, o.eos_id);
  PutInt(&trainer, 43, -1);  // pad_id: ten bytes on the wire
  PutBytes(&out, 2, trainer);
  std::string normalizer;
  PutBytes(&normalizer, 1, "identity");
  PutInt(&normalizer, 3, o.add_dummy_prefix ? 1 : 0);
  PutBytes(&out, 3, normalizer);
  return out;
}

// <unk> <s> </s>, the 256 byte tokens, then a few merges.
std::vector<Piece> SmallVocab() {
  std::vector<Piece> v = {{"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    v.push_back({name, 0, 6});
  }
  const char* merges[] = {"\xE2\x96\x81h",
                          "el",
                          "\xE2\x96\x81hel",
                          "lo",
                          "\xE2\x96\x81hello",
                          "\xE2\x96\x81",
                          "h",
                          "e",
                          "l",
                          "o",
                          "w",
                          "r",
                          "d"};
  float score = 0;
  for (const char* m : merges) v.push_back({m, score--, 1});
  return v;
}

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  const std::string path = ::ferry::testing::UniqueTempPath(name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(SentencePieceModelTest, ReadsPiecesTypesScoresAndSpecialIds) {
  auto model = ParseSentencePieceModel(ModelProto(SmallVocab()), "t.model");
  ASSERT_TRUE(model.ok()) << model.status();
  const VocabSpec& spec = model->spec;
  ASSERT_EQ(spec.tokens.size(), SmallVocab().size());
  EXPECT_EQ(spec.tokens[3], "<0x00>");
  EXPECT_EQ(spec.types[3], TokenType::kByte);
  EXPECT_EQ(spec.types[0], TokenType::kUnknown);
  EXPECT_EQ(spec.types[1], TokenType::kControl);
  EXPECT_EQ(spec.types[259], TokenType::kNormal);
  EXPECT_EQ(spec.scores[260], -1.0f);
  EXPECT_EQ(spec.bos_id, 1);
  EXPECT_EQ(spec.eos_id, 2);
  EXPECT_EQ(spec.unk_id, 0);
  EXPECT_TRUE(spec.add_bos);
  EXPECT_TRUE(model->add_dummy_prefix);
}

TEST(SentencePieceModelTest, EncodesWithMergesByScoreAndByteFallback) {
  const std::string path = WriteTemp("tokenizer.model", ModelProto(SmallVocab()));
  auto tok = Tokenizer::FromSentencePiece(path, "");
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::vector<int32_t> ids = (*tok)->Encode("hello world\n", true, false);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 1);  // BOS
  EXPECT_EQ((*tok)->TokenText(ids[1]), "\xE2\x96\x81hello");
  EXPECT_EQ(ids.back(), 3 + '\n');  // no piece: the byte token
  EXPECT_EQ((*tok)->Decode(ids), "hello world\n");
  std::filesystem::remove(path);
}

TEST(SentencePieceModelTest, NoDummyPrefixAndAbsentSpecialIds) {
  ProtoOptions o;
  o.add_dummy_prefix = false;
  o.bos_id = -1;
  const std::string path = WriteTemp("tokenizer.model", ModelProto(SmallVocab(), o));
  auto tok = Tokenizer::FromSentencePiece(path, "");
  ASSERT_TRUE(tok.ok()) << tok.status();
  // No BOS id in the trainer spec: the "<s>" piece stands in, as for tokenizer.json.
  const std::vector<int32_t> ids = (*tok)->Encode("hello", false, false);
  ASSERT_FALSE(ids.empty());
  EXPECT_NE((*tok)->TokenText(ids[0]), "\xE2\x96\x81hello");  // no space was put first
  EXPECT_EQ((*tok)->Decode(ids), "hello");
  std::filesystem::remove(path);
}

TEST(SentencePieceModelTest, MalformedModelsAreClearErrors) {
  const std::string good = ModelProto(SmallVocab());
  struct Case {
    std::string name, bytes, expect;
    absl::StatusCode code = absl::StatusCode::kInvalidArgument;
  };
  std::string wrong_wire;  // pieces as a varint
  PutInt(&wrong_wire, 1, 7);
  std::string empty_piece;
  {
    std::string msg;
    PutFloat(&msg, 2, 0);
    PutBytes(&empty_piece, 1, msg);
  }
  std::string bad_type;
  {
    std::string msg;
    PutBytes(&msg, 1, "a");
    PutInt(&msg, 3, 9);
    PutBytes(&bad_type, 1, msg);
  }
  std::string group = "\x0b";  // field 1, wire type 3
  std::string overlong = "\x08";
  overlong.append(11, '\xff');
  ProtoOptions unigram;
  unigram.model_type = 1;
  const std::vector<Case> cases = {
      {"truncated", good.substr(0, good.size() - 3), "runs past the end"},
      {"wrong wire type", wrong_wire, "wire type 0 where 2 belongs"},
      {"empty piece", empty_piece, "the piece is empty"},
      {"bad piece type", bad_type, "9 is not a piece type"},
      {"group", group, "wire type 3"},
      {"overlong varint", overlong, "overlong varint"},
      {"no pieces", "", "there are none"},
      {"unigram", ModelProto(SmallVocab(), unigram), "model_type UNIGRAM",
       absl::StatusCode::kUnimplemented},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto model = ParseSentencePieceModel(c.bytes, "bad.model");
    ASSERT_FALSE(model.ok());
    EXPECT_EQ(model.status().code(), c.code) << model.status();
    EXPECT_NE(model.status().message().find("bad.model"), std::string_view::npos) << model.status();
    EXPECT_NE(model.status().message().find(c.expect), std::string_view::npos) << model.status();
  }
}

TEST(SentencePieceModelTest, HfDirectoryFallsBackToTokenizerModelWithItsConfig) {
  const std::string dir = ::ferry::testing::UniqueTempPath("hf-spm");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer.model", std::ios::binary) << ModelProto(SmallVocab());
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"add_bos_token": false, "chat_template": "{{ messages[0]['content'] }}"})";
  auto tok = Tokenizer::FromHfDirectory(dir);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_FALSE((*tok)->add_bos());
  EXPECT_EQ((*tok)->chat_template(), "{{ messages[0]['content'] }}");
  EXPECT_EQ((*tok)->TokenText((*tok)->Encode("hello", true, false).front()), "\xE2\x96\x81hello");
  std::filesystem::remove(dir + "/tokenizer.model");
  auto none = Tokenizer::FromHfDirectory(dir);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find("tokenizer.model"), std::string_view::npos);
  std::filesystem::remove_all(dir);
}

// llama2.c's export: spaces as ' ', BOS/EOS wrapped in newlines.
std::string Llama2cVocab(const std::vector<std::pair<std::string, float>>& tokens) {
  std::string out;
  int32_t max_len = 0;
  for (const auto& t : tokens)
    max_len = std::max<int32_t>(max_len, static_cast<int32_t>(t.first.size()));
  out.append(reinterpret_cast<const char*>(&max_len), 4);
  for (const auto& [text, score] : tokens) {
    const auto len = static_cast<int32_t>(text.size());
    out.append(reinterpret_cast<const char*>(&score), 4);
    out.append(reinterpret_cast<const char*>(&len), 4);
    out.append(text);
  }
  return out;
}

TEST(Llama2cVocabTest, RecoversTypesSpacesAndSpecialIds) {
  const std::string bytes = Llama2cVocab(
      {{"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}, {"<0x0A>", 0}, {" t", -1}, {"he", -2}});
  auto spec = ParseLlama2cVocab(bytes, 0, "tok.bin");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->tokens,
            (std::vector<std::string>{"<unk>", "<s>", "</s>", "<0x0A>", "\xE2\x96\x81t", "he"}));
  EXPECT_EQ(spec->types[0], TokenType::kUnknown);
  EXPECT_EQ(spec->types[1], TokenType::kControl);
  EXPECT_EQ(spec->types[3], TokenType::kByte);
  EXPECT_EQ(spec->types[4], TokenType::kNormal);
  EXPECT_EQ(spec->scores[5], -2.0f);
  EXPECT_EQ(spec->bos_id, 1);
  EXPECT_EQ(spec->eos_id, 2);
  EXPECT_EQ(spec->unk_id, 0);
  // A vocabulary size reads that many and no more.
  auto first4 = ParseLlama2cVocab(bytes, 4, "tok.bin");
  ASSERT_TRUE(first4.ok());
  EXPECT_EQ(first4->tokens.size(), 4u);
  auto too_many = ParseLlama2cVocab(bytes, 7, "tok.bin");
  ASSERT_FALSE(too_many.ok());
  EXPECT_NE(too_many.status().message().find("token 6 is truncated"), std::string_view::npos)
      << too_many.status();
}

TEST(Llama2cVocabTest, MalformedFilesAreClearErrors) {
  const std::string good = Llama2cVocab({{"<unk>", 0}, {"\n<s>\n", 0}, {"ab", 0}});
  std::string long_token = good;
  const int32_t huge = 1000;
  std::memcpy(long_token.data() + 4 + 8 + 5 + 4, &huge, 4);  // the second token's length
  for (const auto& [bytes, expect] : std::vector<std::pair<std::string, std::string>>{
           {"", "no header"},
           {good.substr(0, 4), "no tokens"},
           {std::string("\0\0\0\0", 4), "max_token_length 0"},
           {good.substr(0, good.size() - 1), "token 2 has length 2"},
           {long_token, "token 1 has length 1000"}}) {
    auto spec = ParseLlama2cVocab(bytes, 0, "tok.bin");
    ASSERT_FALSE(spec.ok()) << expect;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(spec.status().message().find(expect), std::string_view::npos) << spec.status();
  }
}

std::vector<std::string> SampleTexts() {
  return {"Once upon a time",
          "Lily and Ben went to the park. They saw a big, red ball!",
          "  two leading spaces and\ttabs\nand new lines\n\n",
          "numbers 12345 and 3.14, symbols #@$%^&*()",
          "unicode: caf\xC3\xA9 na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80",
          "",
          " "};
}

// stories260K's vocabulary three ways: GGUF, tokenizer.model and tokenizer.bin.
TEST(SentencePieceModelTest, Stories260KVocabulariesAgreeWithTheGguf) {
  FERRY_REQUIRE_SHARED(gguf_path, "models/stories260K.gguf");
  FERRY_REQUIRE_SHARED(model_path, "models/llama2c-stories260K/tok512.model");
  FERRY_REQUIRE_SHARED(bin_path, "models/llama2c-stories260K/tok512.bin");
  auto gguf = GgufFile::Open(gguf_path);
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto reference = Tokenizer::FromGguf(**gguf);
  ASSERT_TRUE(reference.ok()) << reference.status();
  auto from_model = Tokenizer::FromSentencePiece(model_path, "");
  ASSERT_TRUE(from_model.ok()) << from_model.status();
  auto from_bin = Tokenizer::FromLlama2c(bin_path, 512);
  ASSERT_TRUE(from_bin.ok()) << from_bin.status();
  for (const Tokenizer* tok : {from_model->get(), from_bin->get()}) {
    ASSERT_EQ(tok->vocab_size(), (*reference)->vocab_size());
    EXPECT_EQ(tok->bos_id(), (*reference)->bos_id());
    EXPECT_EQ(tok->eos_id(), (*reference)->eos_id());
    EXPECT_EQ(tok->add_bos(), (*reference)->add_bos());
    for (int32_t id = 0; id < tok->vocab_size(); ++id) {
      ASSERT_EQ(tok->TokenText(id), (*reference)->TokenText(id)) << id;
      ASSERT_EQ(tok->IsControl(id), (*reference)->IsControl(id)) << id;
    }
    for (const std::string& text : SampleTexts()) {
      const std::vector<int32_t> ids = tok->Encode(text, true, false);
      EXPECT_EQ(ids, (*reference)->Encode(text, true, false)) << text;
      EXPECT_EQ(tok->Decode(ids), text);
    }
  }
  EXPECT_EQ((*from_model)->Encode("Once upon a time", true, false),
            (std::vector<int32_t>{1, 403, 407, 261, 378}));
}

// llama.cpp's Llama-2 vectors through a tokenizer.model written from the
// same vocabulary: all 46 inputs must encode to llama.cpp's ids.
TEST(SentencePieceModelTest, LlamaSpmVectorsThroughTokenizerModel) {
  FERRY_REQUIRE_SHARED(gguf_path, "testdata/tokenizer/ggml-vocab-llama-spm.gguf");
  auto gguf = GgufFile::Open(gguf_path);
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto tokens = (*gguf)->GetStringArray("tokenizer.ggml.tokens");
  auto scores = (*gguf)->GetFloatArray("tokenizer.ggml.scores");
  auto types = (*gguf)->GetIntArray("tokenizer.ggml.token_type");
  ASSERT_TRUE(tokens.ok() && scores.ok() && types.ok());
  std::vector<Piece> pieces;
  for (size_t i = 0; i < tokens->size(); ++i) {
    pieces.push_back({std::string((*tokens)[i]), (*scores)[i], static_cast<int>((*types)[i])});
  }
  const std::string path = WriteTemp("tokenizer.model", ModelProto(pieces));
  auto tok = Tokenizer::FromSentencePiece(path, "");
  std::filesystem::remove(path);
  ASSERT_TRUE(tok.ok()) << tok.status();
  std::vector<std::string> inputs =
      absl::StrSplit(ReadFile(gguf_path + ".inp"), "\n__ggml_vocab_test__\n");
  std::vector<std::string> outputs = absl::StrSplit(ReadFile(gguf_path + ".out"), "\n");
  inputs.pop_back();
  ASSERT_EQ(inputs.size(), 46u);
  ASSERT_GE(outputs.size(), inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<int32_t> want;
    for (absl::string_view part : absl::StrSplit(outputs[i], ' ', absl::SkipEmpty())) {
      want.push_back(std::stoi(std::string(part)));
    }
    EXPECT_EQ((*tok)->Encode(inputs[i], false, false), want) << "input " << i << ": " << inputs[i];
  }
}

}  // namespace
}  // namespace ferry
