// Fuzz target: a byte-level BPE tokenizer (GPT-2 style pre-tokenizer, merges,
// special and added tokens) on arbitrary bytes. Encode accepts any bytes and
// Decode(Encode(x)) == x exactly (byte-level BPE loses nothing); Decode and
// the incremental detokenizer take any ids, valid or not, and the
// incremental pieces add up to Decode whenever Decode is valid UTF-8.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace {

std::string TokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) {
    std::string text;
    ferry::AppendByteLevel(std::string(1, static_cast<char>(b)), &text);
    vocab[text] = b;
  }
  const char* merged[] = {"he", "ll", "\xC4\xA0t", "hell", "\xC4\xA0the", "hello", "\xC4\xA0\xC4\xA0"};
  for (int i = 0; i < 7; ++i) vocab[merged[i]] = 256 + i;
  nlohmann::json j;
  j["version"] = "1.0";
  j["model"] = {{"type", "BPE"},
                {"vocab", vocab},
                {"merges", {"h e", "l l", "\xC4\xA0 t", "he ll", "\xC4\xA0t he", "hell o", "\xC4\xA0 \xC4\xA0"}}};
  j["added_tokens"] = {
      {{"id", 263}, {"content", "<|im_start|>"}, {"special", true}},
      {{"id", 264}, {"content", "<|im_end|>"}, {"special", true}},
      {{"id", 265}, {"content", "<tool>"}, {"special", false}},
  };
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                        {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  return j.dump();
}

const ferry::Tokenizer& Tok() {
  static const ferry::Tokenizer* tok = [] {
    std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                ("ferry_tokenizer_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "tokenizer.json").string();
    std::ofstream(path, std::ios::binary) << TokenizerJson();
    auto t = ferry::Tokenizer::FromHuggingFace(path, "");
    std::filesystem::remove_all(dir);
    if (!t.ok()) {
      std::fprintf(stderr, "tokenizer: %s\n", std::string(t.status().message()).c_str());
      std::abort();
    }
    return t->release();
  }();
  return *tok;
}

// Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    int n = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // bounds of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      n = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      n = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (int k = 1; k <= n; ++k) {
      const unsigned char d = s[i + k];
      if (k == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > (1 << 14)) return 0;
  const ferry::Tokenizer& tok = Tok();
  const uint8_t mode = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((mode & 1) == 0) {
    // Text: encode, and plain text must round-trip exactly.
    const bool parse_special = mode & 2;
    std::vector<int32_t> ids = tok.Encode(rest, /*add_special=*/false, parse_special);
    for (int32_t id : ids) {
      if (id < 0 || id >= tok.vocab_size()) std::abort();
    }
    if (!parse_special && tok.Decode(ids, /*skip_special=*/false) != rest) std::abort();
    return 0;
  }
  // Ids (any int32, most of them invalid): decode in one go and piece by piece.
  std::vector<int32_t> ids(rest.size() / 4);
  if (!ids.empty()) std::memcpy(ids.data(), rest.data(), ids.size() * 4);
  for (int32_t& id : ids) {
    if (mode & 2) id = static_cast<int32_t>(static_cast<uint32_t>(id) % 300u);  // mostly valid
  }
  const bool skip = mode & 4;
  const std::string whole = tok.Decode(ids, skip);
  ferry::IncrementalDetokenizer detok(tok, skip);
  std::string pieces;
  for (int32_t id : ids) pieces += detok.Add(id);
  pieces += detok.Flush();
  if (ValidUtf8(whole) && pieces != whole) std::abort();
  return 0;
}
