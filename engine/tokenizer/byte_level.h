// GPT-2's reversible map between bytes and printable code points, which
// byte-level BPE vocabularies are written in (a space is "Ġ", U+0120).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ferry {

// The code point that stands for `byte`.
uint32_t ByteToCodepoint(uint8_t byte);
// The byte `codepoint` stands for, or -1 when it stands for none.
int ByteFromCodepoint(uint32_t codepoint);

// Appends the byte-level form of `bytes` (each byte as its code point, UTF-8).
void AppendByteLevel(std::string_view bytes, std::string* out);

}  // namespace ferry
