// Small tokenizer.json / tokenizer_config.json files written by tests.
#pragma once

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"
#include "nlohmann/json.hpp"

namespace ferry::testing {

// A fresh directory under the test temp dir.
inline std::string MakeTempDir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir = std::filesystem::path(
      UniqueTempPath(std::string("tok_") + info->test_suite_name() + "_" + info->name() + "_" + name));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

inline std::string WriteFile(const std::string& dir, const std::string& name,
                             const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// Byte-level BPE: ids 0..255 are the bytes' characters, then merges building
// "he", "ll", "Ġt", "hell", "Ġthe", "hello", then added tokens
// <|im_start|> (262, special), <|im_end|> (263, special), <tool> (264).
inline nlohmann::json TinyByteLevelJson() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    std::string text;
    AppendByteLevel(std::string(1, static_cast<char>(b)), &text);
    vocab[text] = b;
  }
  const char* merged[] = {"he", "ll", "\xC4\xA0t", "hell", "\xC4\xA0the", "hello"};
  for (int i = 0; i < 6; ++i) vocab[merged[i]] = 256 + i;
  nlohmann::json j;
  j["version"] = "1.0";
  j["model"] = {{"type", "BPE"},
                {"vocab", vocab},
                {"merges", {"h e", "l l", "\xC4\xA0 t", "he ll", "\xC4\xA0t he", "hell o"}}};
  j["added_tokens"] = {
      {{"id", 262}, {"content", "<|im_start|>"}, {"special", true}},
      {{"id", 263}, {"content", "<|im_end|>"}, {"special", true}},
      {{"id", 264}, {"content", "<tool>"}, {"special", false}},
  };
  j["pre_tokenizer"] = {{"type", "ByteLevel"},
                        {"add_prefix_space", false},
                        {"trim_offsets", true},
                        {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  return j;
}

// Merges in the newer [left, right] form (a braced list of string pairs
// would read as a JSON object).
inline nlohmann::json MergePairs(std::initializer_list<std::pair<const char*, const char*>> pairs) {
  nlohmann::json merges = nlohmann::json::array();
  for (const auto& [left, right] : pairs) merges.push_back(nlohmann::json::array({left, right}));
  return merges;
}

// SentencePiece-style (Llama 2 layout): <unk> <s> </s>, 256 byte tokens
// (3..258), "▁" h e l o (259..263), then merges "he" "ll" "▁he" "▁hell"
// "▁hello" (264..268).
inline nlohmann::json TinySpmJson() {
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  const char* pieces[] = {
      "\xE2\x96\x81",     "h", "e", "l", "o", "he", "ll", "\xE2\x96\x81he", "\xE2\x96\x81hell",
      "\xE2\x96\x81hello"};
  for (int i = 0; i < 10; ++i) vocab[pieces[i]] = 259 + i;
  nlohmann::json j;
  j["model"] = {{"type", "BPE"},
                {"vocab", vocab},
                {"unk_token", "<unk>"},
                {"byte_fallback", true},
                {"merges", MergePairs({{"h", "e"},
                                       {"l", "l"},
                                       {"\xE2\x96\x81", "he"},
                                       {"\xE2\x96\x81he", "ll"},
                                       {"\xE2\x96\x81hell", "o"}})}};
  j["added_tokens"] = {
      {{"id", 0}, {"content", "<unk>"}, {"special", true}},
      {{"id", 1}, {"content", "<s>"}, {"special", true}},
      {{"id", 2}, {"content", "</s>"}, {"special", true}},
  };
  j["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       {{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
        {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}}}};
  j["pre_tokenizer"] = nullptr;
  j["post_processor"] = {{"type", "TemplateProcessing"},
                         {"single",
                          {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                           {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}}};
  return j;
}

inline std::unique_ptr<Tokenizer> LoadTiny(const std::string& dir, const nlohmann::json& json,
                                           const std::string& config = "") {
  const std::string json_path = WriteFile(dir, "tokenizer.json", json.dump());
  const std::string config_path =
      config.empty() ? "" : WriteFile(dir, "tokenizer_config.json", config);
  auto tokenizer = Tokenizer::FromHuggingFace(json_path, config_path);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

}  // namespace ferry::testing
