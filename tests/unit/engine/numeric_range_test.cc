// JSON-schema numeric bounds: decimal parsing, and the grammars of numbers
// between two bounds checked against exact arithmetic over many ranges.
#include "engine/structured/numeric_range.h"

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "engine/structured/grammar.h"
#include "engine/structured/structured_output.h"
#include "gtest/gtest.h"

namespace ferry::structured {
namespace {

DecimalBound Dec(const std::string& text, bool exclusive = false) {
  auto d = ParseDecimal(text);
  EXPECT_TRUE(d.ok()) << text << ": " << d.status();
  DecimalBound out = d.ok() ? *d : DecimalBound{};
  out.exclusive = exclusive;
  return out;
}

std::shared_ptr<const Grammar> RangeGrammar(const NumericRange& range, bool integer_only) {
  GrammarBuilder b;
  auto seq = AddNumericRange(range, integer_only, 16, b);
  if (!seq.ok()) return nullptr;
  auto g = b.Build(b.Choice({std::move(*seq)}));
  EXPECT_TRUE(g.ok()) << g.status();
  return g.ok() ? *g : nullptr;
}

bool Matches(const std::shared_ptr<const Grammar>& g, const std::string& text) {
  Matcher m(g);
  return m.Accept(text) && m.CanEnd();
}

std::shared_ptr<const Grammar> Schema(const std::string& schema) {
  auto g = Compile({OutputSpec::Kind::kJsonSchema, schema, {}});
  EXPECT_TRUE(g.ok()) << schema << ": " << g.status();
  return g.ok() ? *g : nullptr;
}

TEST(NumericRangeTest, ParsesDecimalsExactly) {
  struct Case {
    const char* text;
    bool negative;
    const char* integer;
    const char* fraction;
  };
  for (const Case& c :
       {Case{"-12", true, "12", ""}, Case{"0.25", false, "0", "25"},
        Case{"1e-07", false, "0", "0000001"}, Case{"1.5E+20", false, "150000000000000000000", ""},
        Case{"-0.0", false, "0", ""}, Case{"120.500", false, "120", "5"},
        Case{"0012.50e1", false, "125", ""}, Case{"-3.25e-1", true, "0", "325"},
        Case{"7E0", false, "7", ""}}) {
    auto d = ParseDecimal(c.text);
    ASSERT_TRUE(d.ok()) << c.text << ": " << d.status();
    EXPECT_EQ(d->negative, c.negative) << c.text;
    EXPECT_EQ(d->integer, c.integer) << c.text;
    EXPECT_EQ(d->fraction, c.fraction) << c.text;
  }
  for (const char* bad :
       {"", "-", "1.", ".5", "1e", "1e+", "abc", "1e999", "--1", "1.5.2", "0x10", "1 "}) {
    EXPECT_FALSE(ParseDecimal(bad).ok()) << bad;
  }
}

TEST(NumericRangeTest, ComparesDecimals) {
  EXPECT_LT(CompareDecimal(Dec("-2"), Dec("-1.5")), 0);
  EXPECT_LT(CompareDecimal(Dec("-0.5"), Dec("0")), 0);
  EXPECT_EQ(CompareDecimal(Dec("-0"), Dec("0.000")), 0);
  EXPECT_LT(CompareDecimal(Dec("0.5"), Dec("0.51")), 0);
  EXPECT_GT(CompareDecimal(Dec("0.6"), Dec("0.51")), 0);
  EXPECT_GT(CompareDecimal(Dec("10"), Dec("9.99")), 0);
  EXPECT_EQ(CompareDecimal(Dec("1e2"), Dec("100.0")), 0);
  EXPECT_GT(CompareDecimal(Dec("-1"), Dec("-10")), 0);
}

// Values in units of 1/10000, so every bound and candidate below is exact.
int64_t Scaled(const std::string& text) {
  const DecimalBound d = Dec(text);
  std::string frac = d.fraction;
  frac.resize(4, '0');
  const int64_t v = std::stoll(d.integer) * 10000 + std::stoll(frac);
  return d.negative ? -v : v;
}

bool InRange(int64_t v, const std::optional<std::pair<int64_t, bool>>& lo,
             const std::optional<std::pair<int64_t, bool>>& hi) {
  if (lo && (lo->second ? v <= lo->first : v < lo->first)) return false;
  if (hi && (hi->second ? v >= hi->first : v > hi->first)) return false;
  return true;
}

// Random ranges (bounds with up to three fraction digits, either side
// inclusive, exclusive or absent) against every candidate, for integers and
// for numbers.
TEST(NumericRangeTest, MatchesExactlyTheValuesInRandomRanges) {
  std::mt19937 rng(7);
  const std::vector<std::string> bound_fracs = {"", "", "", ".5", ".25", ".05", ".999", ".1"};
  const std::vector<std::string> cand_fracs = {"",     ".0",   ".00",   ".05",  ".1",   ".25",
                                               ".249", ".251", ".5",    ".50",  ".501", ".9",
                                               ".99",  ".999", ".9991", ".0001"};
  auto random_bound = [&](bool* present) {
    *present = rng() % 5 != 0;
    const int whole = static_cast<int>(rng() % 25) - 12;
    std::string text = std::to_string(whole) + bound_fracs[rng() % bound_fracs.size()];
    if (whole == 0 && rng() % 2) text = "-" + text;
    return text;
  };
  int checked = 0, empty_ranges = 0;
  for (int trial = 0; trial < 120; ++trial) {
    bool has_lo = false, has_hi = false;
    const std::string lo_text = random_bound(&has_lo), hi_text = random_bound(&has_hi);
    const bool lo_excl = rng() % 2, hi_excl = rng() % 2;
    NumericRange range;
    std::optional<std::pair<int64_t, bool>> lo, hi;
    if (has_lo) {
      range.lower = Dec(lo_text, lo_excl);
      lo = {Scaled(lo_text), lo_excl};
    }
    if (has_hi) {
      range.upper = Dec(hi_text, hi_excl);
      hi = {Scaled(hi_text), hi_excl};
    }
    for (const bool integer_only : {true, false}) {
      SCOPED_TRACE(testing::Message() << (has_lo ? (lo_excl ? "(" : "[") + lo_text : "(-inf")
                                      << ", " << (has_hi ? hi_text + (hi_excl ? ")" : "]") : "inf)")
                                      << (integer_only ? " integers" : " numbers"));
      auto g = RangeGrammar(range, integer_only);
      for (int whole = -15; whole <= 15; ++whole) {
        for (const std::string& f : cand_fracs) {
          if (integer_only && !f.empty()) continue;
          const std::string text = std::to_string(whole) + f;
          const int64_t v = Scaled(text);
          const bool expect = InRange(v, lo, hi);
          if (g == nullptr) {
            EXPECT_FALSE(expect) << text << " is in range but the range was refused";
            continue;
          }
          EXPECT_EQ(Matches(g, text), expect) << text;
          ++checked;
          if (whole == 0) {
            // "-0.5" and friends; "-0" itself is never written.
            const std::string neg = "-" + text;
            EXPECT_EQ(Matches(g, neg), v != 0 && InRange(-v, lo, hi)) << neg;
          }
        }
      }
      if (g == nullptr) {
        ++empty_ranges;
        continue;
      }
      // Never a non-canonical form or an exponent.
      for (const char* odd : {"-0", "007", "+5", "1e1", "1.", ".5", "00", "-"}) {
        EXPECT_FALSE(Matches(g, odd)) << odd;
      }
      if (integer_only) EXPECT_FALSE(Matches(g, "1.0"));
    }
  }
  EXPECT_GT(checked, 20000);
  EXPECT_GT(empty_ranges, 0);  // some random ranges are empty; they are refused
}

TEST(NumericRangeTest, UnboundedSidesStopAtTheDigitLimit) {
  NumericRange at_least_one;
  at_least_one.lower = Dec("1");
  auto g = RangeGrammar(at_least_one, true);
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Matches(g, "9999999999999999"));
  EXPECT_FALSE(Matches(g, "10000000000000000"));
  EXPECT_FALSE(Matches(g, "0"));
  NumericRange below;
  below.upper = Dec("-2.5", true);
  g = RangeGrammar(below, false);
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Matches(g, "-9999999999999999.25"));
  EXPECT_TRUE(Matches(g, "-2.5000001"));
  EXPECT_FALSE(Matches(g, "-2.5"));
  EXPECT_FALSE(Matches(g, "-2.49"));
  // A bound beyond the digit limit leaves that side unbounded.
  NumericRange huge;
  huge.upper = Dec("1e300");
  g = RangeGrammar(huge, true);
  ASSERT_NE(g, nullptr);
  EXPECT_TRUE(Matches(g, "-12"));
  EXPECT_TRUE(Matches(g, "9999999999999999"));
  NumericRange none;
  none.lower = Dec("1e300");
  GrammarBuilder b;
  EXPECT_FALSE(AddNumericRange(none, true, 16, b).ok());
  // A fine-grained bound is exact, past the digits a double would hold.
  NumericRange fine;
  fine.lower = Dec("0.1000000000000000000001");
  fine.upper = Dec("0.2");
  g = RangeGrammar(fine, false);
  ASSERT_NE(g, nullptr);
  EXPECT_FALSE(Matches(g, "0.1"));
  EXPECT_TRUE(Matches(g, "0.1000000000000000000001"));
  EXPECT_TRUE(Matches(g, "0.10000000000000000000011"));
  EXPECT_FALSE(Matches(g, "0.10000000000000000000009"));
  EXPECT_TRUE(Matches(g, "0.2"));
  EXPECT_FALSE(Matches(g, "0.2000001"));
}

TEST(NumericRangeTest, SchemaBoundsConstrainIntegersAndNumbers) {
  auto g = Schema(R"({"type":"integer","minimum":1,"maximum":5})");
  for (const char* yes : {"1", "3", "5", " 4"}) EXPECT_TRUE(Matches(g, yes)) << yes;
  for (const char* no : {"0", "6", "-1", "10", "1.0", "01"}) EXPECT_FALSE(Matches(g, no)) << no;

  g = Schema(R"({"type":"number","exclusiveMinimum":0,"maximum":1})");
  for (const char* yes : {"0.5", "1", "1.0", "0.0001", "1.000"})
    EXPECT_TRUE(Matches(g, yes)) << yes;
  for (const char* no : {"0", "0.0", "1.01", "1e0", "-0.5", "2"})
    EXPECT_FALSE(Matches(g, no)) << no;

  // Draft 4: exclusiveMinimum / exclusiveMaximum are booleans.
  g = Schema(R"({"type":"integer","minimum":0,"exclusiveMinimum":true,"maximum":3,
                 "exclusiveMaximum":true})");
  for (const char* yes : {"1", "2"}) EXPECT_TRUE(Matches(g, yes)) << yes;
  for (const char* no : {"0", "3"}) EXPECT_FALSE(Matches(g, no)) << no;

  // An inclusive and an exclusive bound together: the tighter one.
  g = Schema(R"({"type":"integer","minimum":2,"exclusiveMinimum":2,"maximum":9,
                 "exclusiveMaximum":20})");
  EXPECT_FALSE(Matches(g, "2"));
  EXPECT_TRUE(Matches(g, "3"));
  EXPECT_TRUE(Matches(g, "9"));
  EXPECT_FALSE(Matches(g, "10"));

  // Inside an object, with a type list.
  g = Schema(R"({"type":"object","properties":{"age":{"type":["integer","null"],"minimum":18,
                 "maximum":120},"score":{"type":"number","minimum":-1.5,"maximum":-0.5}},
                 "required":["age","score"]})");
  EXPECT_TRUE(Matches(g, R"({"age":18,"score":-1.5})"));
  EXPECT_TRUE(Matches(g, R"({"age":null,"score":-0.75})"));
  EXPECT_FALSE(Matches(g, R"({"age":17,"score":-1})"));
  EXPECT_FALSE(Matches(g, R"({"age":121,"score":-1})"));
  EXPECT_FALSE(Matches(g, R"({"age":30,"score":-0.4})"));
  EXPECT_FALSE(Matches(g, R"({"age":30,"score":-1.51})"));

  for (const char* bad :
       {R"({"type":"integer","minimum":"3"})", R"({"type":"integer","minimum":5,"maximum":4})",
        R"({"type":"integer","minimum":0.2,"maximum":0.8})",
        R"({"type":"number","exclusiveMinimum":1,"exclusiveMaximum":1})"}) {
    EXPECT_FALSE(Compile({OutputSpec::Kind::kJsonSchema, bad, {}}).ok()) << bad;
  }
}

}  // namespace
}  // namespace ferry::structured
