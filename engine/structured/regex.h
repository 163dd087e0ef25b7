// Regular expressions as grammar rules, for `guided_regex` and JSON-schema
// `pattern`s. The match is of the whole text (as outlines and xgrammar
// treat a pattern for generation), over Unicode code points encoded as
// UTF-8.
//
// Supported: literals (any UTF-8), `.`, classes `[a-z\d_]` and `[^...]`,
// escapes \d \w \s \D \W \S \n \r \t \f \v \0 \xHH \uHHHH and escaped
// punctuation, groups `( )`, `(?: )` and named groups, `|`, the quantifiers
// `* + ? {n} {n,} {n,m}` (lazy or possessive suffixes are accepted and mean
// the same for generation), and `^` / `$` at the ends. Backreferences,
// lookaround and word boundaries are rejected with an error naming them.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "engine/structured/grammar.h"

namespace ferry::structured {

// Adds rules matching `pattern` to `b` and returns the sequence that matches
// it. InvalidArgument (with the offset) for a malformed or unsupported
// pattern.
absl::StatusOr<Sequence> AddRegex(std::string_view pattern, GrammarBuilder& b);

// A character class such as `[a-z\d]` or `[^"\\]` starting at text[*pos]
// (just after the '['), as one element; *pos moves past the ']'. For other
// grammar syntaxes that share regex classes (GBNF).
absl::StatusOr<Sequence> AddCharClass(std::string_view text, size_t* pos, GrammarBuilder& b);
// The code point of the escape at text[*pos] (just after the backslash):
// \n \t \xHH \uHHHH, escaped punctuation...; *pos moves past it.
absl::StatusOr<uint32_t> ParseEscape(std::string_view text, size_t* pos);

// The UTF-8 byte-range sequences that together match exactly the code points
// lo..hi (surrogates excluded), as regex engines build them.
std::vector<std::vector<std::pair<uint8_t, uint8_t>>> Utf8Ranges(uint32_t lo, uint32_t hi);

}  // namespace ferry::structured
