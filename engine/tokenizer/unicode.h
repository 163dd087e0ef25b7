// UTF-8 decoding and the code point classes used by tokenizers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ferry {

// Stands for a byte that does not start a valid UTF-8 sequence. It is in no
// class (not a letter, number or space), like U+FFFD would be, but keeps the
// original byte so that it still encodes as a byte token.
inline constexpr uint32_t kInvalidCodepoint = 0xFFFFFFFF;

struct Utf8Char {
  uint32_t codepoint;  // kInvalidCodepoint for an invalid byte
  uint32_t num_bytes;  // 1 for an invalid byte
};

// Decodes the character starting at `pos` (< text.size()). Overlong forms,
// surrogates, values past U+10FFFF and truncated sequences are invalid.
Utf8Char DecodeUtf8(std::string_view text, size_t pos);

// Length of the longest prefix of `text` that does not end inside an
// incomplete (but so far valid) UTF-8 sequence.
size_t CompleteUtf8Prefix(std::string_view text);

void AppendUtf8(uint32_t codepoint, std::string* out);

// Bit set of the classes below.
enum CodepointFlags : uint8_t {
  kCodepointLetter = 1,
  kCodepointNumber = 2,
  kCodepointWhitespace = 4,
};

uint8_t ClassifyCodepoint(uint32_t codepoint);

}  // namespace ferry
