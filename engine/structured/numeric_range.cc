#include "engine/structured/numeric_range.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace ferry::structured {
namespace {

constexpr int kMaxExponent = 400;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// The language of digit strings read left to right by an automaton whose
// state is the position and whether the digits so far still equal the lower
// bound's (`tl`) and the upper bound's (`th`) digits: the usual way to turn
// a numeric range into a regular language. Subclasses say which digits each
// position allows and where a string may end.
class DigitAutomaton {
 public:
  DigitAutomaton(GrammarBuilder& b, int length) : b_(b), length_(length) {}
  virtual ~DigitAutomaton() = default;

  // The alternatives from the start state, one digit or more each; with
  // `with_empty`, also the empty string where the start state accepts it.
  std::vector<Sequence> Start(bool with_empty) {
    std::vector<Sequence> alts;
    if (with_empty && Accepts(0, initial_tl_, initial_th_)) alts.push_back({});
    AddDigitAlternatives(0, initial_tl_, initial_th_, alts);
    return alts;
  }
  bool StartAcceptsEmpty() { return Accepts(0, initial_tl_, initial_th_); }

 protected:
  void SetInitial(bool tl, bool th) {
    initial_tl_ = tl;
    initial_th_ = th;
  }
  virtual char Low(int i) const = 0;   // the lowest digit allowed at i while tl holds
  virtual char High(int i) const = 0;  // the highest digit allowed at i while th holds
  // A string may end after i digits in this state.
  virtual bool Accepts(int i, bool tl, bool th) const = 0;
  // With neither bound tight, the rest is free: any digits, this many.
  virtual std::pair<int, int> FreeLength(int i) const = 0;

 private:
  static int Key(int i, bool tl, bool th) { return i * 4 + (tl ? 2 : 0) + (th ? 1 : 0); }

  bool NonEmpty(int i, bool tl, bool th) {
    if (!tl && !th) return FreeLength(i).second >= FreeLength(i).first;
    const int key = Key(i, tl, th);
    if (auto it = non_empty_.find(key); it != non_empty_.end()) return it->second;
    bool any = Accepts(i, tl, th);
    if (!any && i < length_) {
      const char lo = tl ? Low(i) : '0', hi = th ? High(i) : '9';
      for (char d = lo; d <= hi && !any; ++d) any = NonEmpty(i + 1, tl && d == lo, th && d == hi);
    }
    non_empty_[key] = any;
    return any;
  }

  // The rest of a string from state (i, tl, th), which is non-empty.
  Sequence Tail(int i, bool tl, bool th) {
    if (!tl && !th) {
      const auto [min, max] = FreeLength(i);
      if (max == 0) return {};
      return {GrammarBuilder::Ref(b_.Repeat({b_.Bytes(ByteSet::Range('0', '9'))}, min, max))};
    }
    const int key = Key(i, tl, th);
    if (auto it = rules_.find(key); it != rules_.end()) return {GrammarBuilder::Ref(it->second)};
    std::vector<Sequence> alts;
    if (Accepts(i, tl, th)) alts.push_back({});
    AddDigitAlternatives(i, tl, th, alts);
    if (alts.size() == 1 && alts[0].empty()) return {};
    const int rule = b_.Choice(std::move(alts));
    rules_[key] = rule;
    return {GrammarBuilder::Ref(rule)};
  }

  void AddDigitAlternatives(int i, bool tl, bool th, std::vector<Sequence>& alts) {
    if (i >= length_) return;
    const char lo = tl ? Low(i) : '0', hi = th ? High(i) : '9';
    // Digits grouped by the state they lead to: the low digit, the high
    // digit and those between.
    std::array<std::pair<ByteSet, std::pair<bool, bool>>, 3> groups;
    std::array<bool, 3> used{};
    for (char d = lo; d <= hi; ++d) {
      const bool ntl = tl && d == lo, nth = th && d == hi;
      if (!NonEmpty(i + 1, ntl, nth)) continue;
      const int g = d == lo ? 0 : (d == hi ? 2 : 1);
      groups[static_cast<size_t>(g)].first.Add(static_cast<uint8_t>(d));
      groups[static_cast<size_t>(g)].second = {ntl, nth};
      used[static_cast<size_t>(g)] = true;
    }
    for (size_t g = 0; g < 3; ++g) {
      if (!used[g]) continue;
      Sequence alt = {b_.Bytes(groups[g].first)};
      Sequence rest = Tail(i + 1, groups[g].second.first, groups[g].second.second);
      alt.insert(alt.end(), rest.begin(), rest.end());
      alts.push_back(std::move(alt));
    }
  }

  GrammarBuilder& b_;
  const int length_;
  bool initial_tl_ = true, initial_th_ = true;
  absl::flat_hash_map<int, bool> non_empty_;
  absl::flat_hash_map<int, int> rules_;
};

// Digit strings of x's length between x and y (same length, x <= y).
class FixedLength final : public DigitAutomaton {
 public:
  FixedLength(GrammarBuilder& b, std::string x, std::string y)
      : DigitAutomaton(b, static_cast<int>(x.size())), x_(std::move(x)), y_(std::move(y)) {}

 protected:
  char Low(int i) const override { return x_[static_cast<size_t>(i)]; }
  char High(int i) const override { return y_[static_cast<size_t>(i)]; }
  bool Accepts(int i, bool, bool) const override { return i == static_cast<int>(x_.size()); }
  std::pair<int, int> FreeLength(int i) const override {
    const int n = static_cast<int>(x_.size()) - i;
    return {n, n};
  }

 private:
  std::string x_, y_;
};

// Fraction digits f (after the point; empty when there is no point) with
// 0.f within the bounds 0.low and 0.high, each optional and inclusive or
// not, at most `length` digits.
class Fraction final : public DigitAutomaton {
 public:
  Fraction(GrammarBuilder& b, int length, const std::string* low, bool low_exclusive,
           const std::string* high, bool high_exclusive)
      : DigitAutomaton(b, length),
        max_length_(length),
        low_(low != nullptr ? *low : ""),
        high_(high != nullptr ? *high : ""),
        low_exclusive_(low_exclusive),
        high_exclusive_(high_exclusive) {
    SetInitial(low != nullptr, high != nullptr);
  }

 protected:
  char Low(int i) const override { return i < static_cast<int>(low_.size()) ? low_[i] : '0'; }
  char High(int i) const override { return i < static_cast<int>(high_.size()) ? high_[i] : '0'; }
  bool Accepts(int i, bool tl, bool th) const override {
    // While tight, the digits so far equal the bound's first i digits: the
    // value is below the bound until all of its digits are written (it has
    // no trailing zeros), then equal to it.
    if (tl && (i < static_cast<int>(low_.size()) || low_exclusive_)) return false;
    if (th && i >= static_cast<int>(high_.size()) && high_exclusive_) return false;
    return true;
  }
  std::pair<int, int> FreeLength(int i) const override { return {0, max_length_ - i}; }

 private:
  const int max_length_;
  const std::string low_, high_;
  const bool low_exclusive_, high_exclusive_;
};

std::string Nines(int n) { return std::string(static_cast<size_t>(n), '9'); }

// Compares two canonical non-negative integers written in digits.
int CompareDigits(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
  return a.compare(b) < 0 ? -1 : (a == b ? 0 : 1);
}

// The canonical integers a..b (0 <= a <= b), as alternatives.
void AddIntegerRange(uint64_t a, uint64_t b, GrammarBuilder& g, std::vector<Sequence>& alts) {
  const std::string sa = std::to_string(a), sb = std::to_string(b);
  const int la = static_cast<int>(sa.size()), lb = static_cast<int>(sb.size());
  auto add = [&](const std::string& x, const std::string& y) {
    for (Sequence& s : FixedLength(g, x, y).Start(false)) alts.push_back(std::move(s));
  };
  if (la == lb) {
    add(sa, sb);
    return;
  }
  add(sa, Nines(la));
  if (lb - la >= 2) {
    alts.push_back(
        {g.Bytes(ByteSet::Range('1', '9')),
         GrammarBuilder::Ref(g.Repeat({g.Bytes(ByteSet::Range('0', '9'))}, la, lb - 2))});
  }
  add("1" + std::string(static_cast<size_t>(lb - 1), '0'), sb);
}

Sequence Join(Sequence a, const Sequence& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// An optional fraction ("." and digits) within the bounds; nullopt when
// none is.
std::optional<Sequence> FractionPart(GrammarBuilder& g, int max_digits, const std::string* low,
                                     bool low_exclusive, const std::string* high,
                                     bool high_exclusive) {
  const int length = max_digits + static_cast<int>(std::max(low != nullptr ? low->size() : 0,
                                                            high != nullptr ? high->size() : 0));
  Fraction f(g, length, low, low_exclusive, high, high_exclusive);
  std::vector<Sequence> alts;
  if (f.StartAcceptsEmpty()) alts.push_back({});
  for (Sequence& s : f.Start(false)) alts.push_back(Join(g.Literal("."), s));
  if (alts.empty()) return std::nullopt;
  if (alts.size() == 1 && alts[0].empty()) return Sequence{};
  return Sequence{GrammarBuilder::Ref(g.Choice(std::move(alts)))};
}

// Non-negative magnitudes m with low <= m (or <) and m <= high (or <; none:
// unbounded), as alternatives; none added when the range is empty.
void AddMagnitudes(const DecimalBound& low, const std::optional<DecimalBound>& high,
                   bool integer_only, int max_digits, GrammarBuilder& g,
                   std::vector<Sequence>& alts) {
  if (static_cast<int>(low.integer.size()) > max_digits) return;
  const bool high_capped = !high.has_value() || static_cast<int>(high->integer.size()) > max_digits;
  if (integer_only) {
    const uint64_t cap = std::stoull(Nines(max_digits));
    uint64_t a = std::stoull(low.integer);
    if (!low.fraction.empty() || low.exclusive) ++a;
    uint64_t b = cap;
    if (!high_capped) {
      b = std::stoull(high->integer);
      if (high->fraction.empty() && high->exclusive) {
        if (b == 0) return;
        --b;
      }
    }
    if (a > cap || a > b) return;
    AddIntegerRange(a, b, g, alts);
    return;
  }
  const std::string hi_int = high_capped ? Nines(max_digits) : high->integer;
  const std::string* hi_frac = high_capped ? nullptr : &high->fraction;
  const bool hi_excl = !high_capped && high->exclusive;
  const int order = CompareDigits(low.integer, hi_int);
  if (order > 0) return;
  if (order == 0) {
    auto frac = FractionPart(g, max_digits, &low.fraction, low.exclusive, hi_frac, hi_excl);
    if (frac) alts.push_back(Join(g.Literal(low.integer), *frac));
    return;
  }
  if (auto f = FractionPart(g, max_digits, &low.fraction, low.exclusive, nullptr, false))
    alts.push_back(Join(g.Literal(low.integer), *f));
  const uint64_t a = std::stoull(low.integer) + 1, b = std::stoull(hi_int);
  if (b >= 1 && a <= b - 1) {
    std::vector<Sequence> middle;
    AddIntegerRange(a, b - 1, g, middle);
    auto any = FractionPart(g, max_digits, nullptr, false, nullptr, false);
    alts.push_back(Join({GrammarBuilder::Ref(g.Choice(std::move(middle)))}, *any));
  }
  if (auto f = FractionPart(g, max_digits, nullptr, false, hi_frac, hi_excl))
    alts.push_back(Join(g.Literal(hi_int), *f));
}

}  // namespace

absl::StatusOr<DecimalBound> ParseDecimal(std::string_view text) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat("'", std::string(text), "' is not a number"));
  };
  size_t p = 0;
  DecimalBound d;
  const bool negative = p < text.size() && text[p] == '-';
  if (negative) ++p;
  std::string digits;
  size_t start = p;
  while (p < text.size() && IsDigit(text[p])) digits.push_back(text[p++]);
  if (p == start) return bad();
  int64_t point = static_cast<int64_t>(digits.size());
  if (p < text.size() && text[p] == '.') {
    start = ++p;
    while (p < text.size() && IsDigit(text[p])) digits.push_back(text[p++]);
    if (p == start) return bad();
  }
  if (p < text.size() && (text[p] == 'e' || text[p] == 'E')) {
    ++p;
    bool exp_negative = false;
    if (p < text.size() && (text[p] == '+' || text[p] == '-')) exp_negative = text[p++] == '-';
    int64_t exp = 0;
    start = p;
    while (p < text.size() && IsDigit(text[p])) {
      exp = exp * 10 + (text[p++] - '0');
      if (exp > kMaxExponent)
        return absl::InvalidArgumentError(
            absl::StrCat("the exponent of '", std::string(text), "' is out of range"));
    }
    if (p == start) return bad();
    point += exp_negative ? -exp : exp;
  }
  if (p != text.size()) return bad();
  const int64_t n = static_cast<int64_t>(digits.size());
  std::string integer, fraction;
  if (point <= 0) {
    fraction = std::string(static_cast<size_t>(-point), '0') + digits;
  } else if (point >= n) {
    integer = digits + std::string(static_cast<size_t>(point - n), '0');
  } else {
    integer = digits.substr(0, static_cast<size_t>(point));
    fraction = digits.substr(static_cast<size_t>(point));
  }
  const size_t first = integer.find_first_not_of('0');
  d.integer = first == std::string::npos ? "0" : integer.substr(first);
  const size_t last = fraction.find_last_not_of('0');
  d.fraction = last == std::string::npos ? "" : fraction.substr(0, last + 1);
  d.negative = negative && !d.IsZero();
  return d;
}

int CompareDecimal(const DecimalBound& a, const DecimalBound& b) {
  const int sa = a.IsZero() ? 0 : (a.negative ? -1 : 1);
  const int sb = b.IsZero() ? 0 : (b.negative ? -1 : 1);
  if (sa != sb) return sa < sb ? -1 : 1;
  if (sa == 0) return 0;
  int mag = CompareDigits(a.integer, b.integer);
  if (mag == 0) {
    // No trailing zeros: string order is numeric order.
    const int c = a.fraction.compare(b.fraction);
    mag = c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  return sa * mag;
}

absl::StatusOr<Sequence> AddNumericRange(const NumericRange& range, bool integer_only,
                                         int max_digits, GrammarBuilder& b) {
  if (max_digits < 1 || max_digits > 18)
    return absl::InvalidArgumentError("numeric ranges take 1 to 18 integer digits");
  std::vector<Sequence> alts;
  // v >= 0, written as its magnitude.
  const bool upper_negative =
      range.upper && (range.upper->negative || (range.upper->IsZero() && range.upper->exclusive));
  if (!upper_negative) {
    DecimalBound low;  // 0, inclusive
    if (range.lower && !range.lower->negative) low = *range.lower;
    AddMagnitudes(low, range.upper, integer_only, max_digits, b, alts);
  }
  // v < 0, written "-" and its magnitude m > 0.
  if (!range.lower || range.lower->negative) {
    DecimalBound low;
    low.exclusive = true;  // m > 0: no "-0"
    if (range.upper && range.upper->negative) {
      low = *range.upper;
      low.negative = false;
    }
    std::optional<DecimalBound> high;
    if (range.lower) {
      high = *range.lower;
      high->negative = false;
    }
    std::vector<Sequence> negative;
    AddMagnitudes(low, high, integer_only, max_digits, b, negative);
    if (!negative.empty())
      alts.push_back(Join(b.Literal("-"), {GrammarBuilder::Ref(b.Choice(std::move(negative)))}));
  }
  if (alts.empty())
    return absl::InvalidArgumentError(
        absl::StrCat("no ", integer_only ? "integer" : "number", " lies within the bounds"));
  return Sequence{GrammarBuilder::Ref(b.Choice(std::move(alts)))};
}

}  // namespace ferry::structured
