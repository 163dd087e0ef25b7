// JSON-schema numeric bounds (minimum, maximum, exclusiveMinimum,
// exclusiveMaximum) as grammar rules: the JSON numbers between two decimal
// bounds, exactly, written without an exponent. Bounds are compared as
// decimals, never as doubles, so `"maximum": 0.1` admits 0.1 and nothing
// above it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/structured/grammar.h"

namespace ferry::structured {

// A decimal number held exactly as its digits.
struct DecimalBound {
  bool negative = false;      // never set for zero
  std::string integer = "0";  // no leading zeros ("0" for a zero integer part)
  std::string fraction;       // no trailing zeros
  bool exclusive = false;     // the bound itself is not in the range

  bool IsZero() const { return integer == "0" && fraction.empty(); }
};

// Parses a JSON number's text ("-12", "0.25", "1e-07", "1.5E+20").
// InvalidArgument for anything else, or an exponent beyond +-400.
absl::StatusOr<DecimalBound> ParseDecimal(std::string_view text);

// <0, 0 or >0 as a's value is below, equal to or above b's (exclusive is
// ignored).
int CompareDecimal(const DecimalBound& a, const DecimalBound& b);

struct NumericRange {
  std::optional<DecimalBound> lower;  // none: unbounded below
  std::optional<DecimalBound> upper;  // none: unbounded above
};

// The sequence matching the JSON numbers in `range` (integers only when
// `integer_only`): canonical integer parts (no leading zeros, no "-0") of at
// most `max_digits` digits, and for numbers an optional fraction. An
// unbounded side stops at max_digits integer digits. InvalidArgument when no
// number lies in the range.
absl::StatusOr<Sequence> AddNumericRange(const NumericRange& range, bool integer_only,
                                         int max_digits, GrammarBuilder& b);

}  // namespace ferry::structured
