#include "engine/tokenizer/byte_level.h"

#include <array>
#include <string_view>

#include "engine/tokenizer/unicode.h"

namespace ferry {
namespace {

struct ByteMaps {
  std::array<uint32_t, 256> to_codepoint{};
  std::array<int16_t, 512> from_codepoint{};  // every mapped code point is < 512
};

const ByteMaps& Maps() {
  static const ByteMaps maps = [] {
    ByteMaps m;
    m.from_codepoint.fill(-1);
    // Printable Latin-1 bytes stand for themselves; the rest (controls,
    // space, DEL, NBSP, soft hyphen) take 256, 257, ... in byte order.
    const auto printable = [](uint32_t b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const uint32_t cp = printable(b) ? b : next++;
      m.to_codepoint[b] = cp;
      m.from_codepoint[cp] = static_cast<int16_t>(b);
    }
    return m;
  }();
  return maps;
}

}  // namespace

uint32_t ByteToCodepoint(uint8_t byte) { return Maps().to_codepoint[byte]; }

int ByteFromCodepoint(uint32_t codepoint) {
  return codepoint < 512 ? Maps().from_codepoint[codepoint] : -1;
}

void AppendByteLevel(std::string_view bytes, std::string* out) {
  for (char c : bytes) AppendUtf8(ByteToCodepoint(static_cast<uint8_t>(c)), out);
}

}  // namespace ferry
