// Sorted, non-overlapping code point ranges for the classes that the
// pre-tokenizer patterns use. Defined in the generated unicode_tables.cc
// (see gen_unicode_tables.py).
#pragma once

#include <cstdint>
#include <span>

namespace ferry::unicode_tables {

struct CodepointRange {
  uint32_t first;
  uint32_t last;  // inclusive
};

// General categories L* (\p{L}).
std::span<const CodepointRange> Letter();
// General categories N* (\p{N}).
std::span<const CodepointRange> Number();
// The White_Space property (\s).
std::span<const CodepointRange> Whitespace();

}  // namespace ferry::unicode_tables
