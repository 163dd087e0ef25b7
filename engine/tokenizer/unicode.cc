#include "engine/tokenizer/unicode.h"

#include <algorithm>
#include <array>
#include <span>

#include "engine/tokenizer/unicode_tables.h"

namespace ferry {
namespace {

bool InRanges(std::span<const unicode_tables::CodepointRange> ranges, uint32_t cp) {
  auto it = std::upper_bound(
      ranges.begin(), ranges.end(), cp,
      [](uint32_t v, const unicode_tables::CodepointRange& r) { return v < r.first; });
  return it != ranges.begin() && cp <= std::prev(it)->last;
}

uint8_t ClassifySlow(uint32_t cp) {
  uint8_t flags = 0;
  if (InRanges(unicode_tables::Letter(), cp)) flags |= kCodepointLetter;
  if (InRanges(unicode_tables::Number(), cp)) flags |= kCodepointNumber;
  if (InRanges(unicode_tables::Whitespace(), cp)) flags |= kCodepointWhitespace;
  return flags;
}

// Most text is ASCII or Latin-1 supplement; a table avoids the binary search.
const std::array<uint8_t, 256>& Latin1Flags() {
  static const std::array<uint8_t, 256> table = [] {
    std::array<uint8_t, 256> t{};
    for (uint32_t cp = 0; cp < 256; ++cp) t[cp] = ClassifySlow(cp);
    return t;
  }();
  return table;
}

}  // namespace

Utf8Char DecodeUtf8(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  const uint8_t lead = s[pos];
  if (lead < 0x80) return {lead, 1};
  uint32_t num_bytes;
  uint32_t cp;
  uint32_t min_value;
  if ((lead & 0xE0) == 0xC0) {
    num_bytes = 2, cp = lead & 0x1F, min_value = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    num_bytes = 3, cp = lead & 0x0F, min_value = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    num_bytes = 4, cp = lead & 0x07, min_value = 0x10000;
  } else {
    return {kInvalidCodepoint, 1};
  }
  if (pos + num_bytes > n) return {kInvalidCodepoint, 1};
  for (uint32_t i = 1; i < num_bytes; ++i) {
    const uint8_t c = s[pos + i];
    if ((c & 0xC0) != 0x80) return {kInvalidCodepoint, 1};
    cp = (cp << 6) | (c & 0x3F);
  }
  if (cp < min_value || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    return {kInvalidCodepoint, 1};
  }
  return {cp, num_bytes};
}

size_t CompleteUtf8Prefix(std::string_view text) {
  // An incomplete character is at most 3 bytes long: look back that far for
  // a lead byte whose sequence runs past the end.
  const size_t n = text.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<uint8_t>(text[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking
    size_t needed = 0;
    if ((c & 0xE0) == 0xC0)
      needed = 2;
    else if ((c & 0xF0) == 0xE0)
      needed = 3;
    else if ((c & 0xF8) == 0xF0)
      needed = 4;
    if (needed > back) {
      // Hold back only if what is there could still become a valid character.
      std::string_view tail = text.substr(n - back);
      bool continuations_ok = true;
      for (size_t i = 1; i < tail.size(); ++i) {
        continuations_ok &= (static_cast<uint8_t>(tail[i]) & 0xC0) == 0x80;
      }
      if (continuations_ok) return n - back;
    }
    return n;
  }
  return n;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

uint8_t ClassifyCodepoint(uint32_t cp) {
  if (cp < 256) return Latin1Flags()[cp];
  if (cp == kInvalidCodepoint) return 0;
  return ClassifySlow(cp);
}

}  // namespace ferry
