#include "engine/structured/regex.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/chat_template/utf8.h"

namespace ferry::structured {
namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;
constexpr int kMaxRepeat = 1000;
constexpr int kMaxNesting = 200;

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;  // code point ranges

void Normalize(Ranges& r) {
  std::sort(r.begin(), r.end());
  Ranges out;
  for (const auto& [lo, hi] : r) {
    if (!out.empty() && lo <= out.back().second + 1) {
      out.back().second = std::max(out.back().second, hi);
    } else {
      out.emplace_back(lo, hi);
    }
  }
  r = std::move(out);
}

Ranges Complement(Ranges r) {
  Normalize(r);
  Ranges out;
  uint32_t next = 0;
  for (const auto& [lo, hi] : r) {
    if (lo > next) out.emplace_back(next, lo - 1);
    next = hi + 1;
  }
  if (next <= kMaxCodePoint) out.emplace_back(next, kMaxCodePoint);
  return out;
}

Ranges Digits() { return {{'0', '9'}}; }
Ranges Word() { return {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}; }
Ranges Space() { return {{'\t', '\r'}, {' ', ' '}}; }

// lo..hi have the same encoded length.
void SplitSameLength(uint32_t lo, uint32_t hi,
                     std::vector<std::vector<std::pair<uint8_t, uint8_t>>>& out) {
  std::string a, b;
  chat_template::AppendUtf8(lo, a);
  for (size_t i = 1; i < a.size(); ++i) {
    const uint32_t m = (uint32_t{1} << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        SplitSameLength(lo, lo | m, out);
        SplitSameLength((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        SplitSameLength(lo, (hi & ~m) - 1, out);
        SplitSameLength(hi & ~m, hi, out);
        return;
      }
    }
  }
  chat_template::AppendUtf8(hi, b);
  std::vector<std::pair<uint8_t, uint8_t>> seq;
  for (size_t i = 0; i < a.size(); ++i)
    seq.emplace_back(static_cast<uint8_t>(a[i]), static_cast<uint8_t>(b[i]));
  out.push_back(std::move(seq));
}

struct Parser {
  std::string_view p;
  size_t i = 0;
  GrammarBuilder& b;
  int nesting = 0;

  absl::Status Error(std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat("regex: ", std::string(what), " at offset ", i));
  }
  bool AtEnd() const { return i >= p.size(); }

  // One UTF-8 code point (a malformed byte stands for itself).
  uint32_t NextCodePoint() { return chat_template::DecodeUtf8(p, i); }

  absl::StatusOr<uint32_t> Hex(int digits) {
    uint32_t v = 0;
    for (int k = 0; k < digits; ++k) {
      if (AtEnd()) return Error("a short hex escape");
      const char c = p[i++];
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (d < 0) return Error("a bad hex digit");
      v = v * 16 + static_cast<uint32_t>(d);
    }
    return v;
  }

  // After a backslash: the code points the escape stands for.
  absl::StatusOr<Ranges> Escape(bool in_class) {
    if (AtEnd()) return Error("a trailing backslash");
    const char c = p[i++];
    switch (c) {
      case 'd':
        return Digits();
      case 'D':
        return Complement(Digits());
      case 'w':
        return Word();
      case 'W':
        return Complement(Word());
      case 's':
        return Space();
      case 'S':
        return Complement(Space());
      case 'n':
        return Ranges{{'\n', '\n'}};
      case 'r':
        return Ranges{{'\r', '\r'}};
      case 't':
        return Ranges{{'\t', '\t'}};
      case 'f':
        return Ranges{{'\f', '\f'}};
      case 'v':
        return Ranges{{'\v', '\v'}};
      case '0':
        return Ranges{{0, 0}};
      case 'x': {
        auto v = Hex(2);
        if (!v.ok()) return v.status();
        return Ranges{{*v, *v}};
      }
      case 'u': {
        auto v = Hex(4);
        if (!v.ok()) return v.status();
        return Ranges{{*v, *v}};
      }
      case 'b':
        if (in_class) return Ranges{{'\b', '\b'}};
        return Error("word boundaries (\\b) are not supported");
      case 'B':
        return Error("word boundaries (\\B) are not supported");
      default:
        if (c >= '1' && c <= '9') return Error("backreferences are not supported");
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
          return Error(absl::StrCat("the escape \\", std::string(1, c), " is not supported"));
        }
        return Ranges{{static_cast<uint8_t>(c), static_cast<uint8_t>(c)}};
    }
  }

  absl::StatusOr<Ranges> Class() {  // after '['
    Ranges r;
    bool negate = false;
    if (!AtEnd() && p[i] == '^') {
      negate = true;
      ++i;
    }
    bool first = true;
    while (true) {
      if (AtEnd()) return Error("an unterminated character class");
      if (p[i] == ']' && !first) {
        ++i;
        break;
      }
      first = false;
      Ranges item;
      bool single = false;
      if (p[i] == '\\') {
        ++i;
        auto e = Escape(/*in_class=*/true);
        if (!e.ok()) return e.status();
        item = *e;
        single = item.size() == 1 && item[0].first == item[0].second;
      } else if (p[i] == '[' && i + 1 < p.size() && p[i + 1] == ':') {
        return Error("POSIX classes ([:alpha:]) are not supported");
      } else {
        const uint32_t cp = NextCodePoint();
        item = {{cp, cp}};
        single = true;
      }
      if (single && i + 1 < p.size() && p[i] == '-' && p[i + 1] != ']') {
        ++i;
        uint32_t hi;
        if (p[i] == '\\') {
          ++i;
          auto e = Escape(true);
          if (!e.ok()) return e.status();
          if (e->size() != 1 || (*e)[0].first != (*e)[0].second)
            return Error("a class range ending in a class");
          hi = (*e)[0].first;
        } else {
          hi = NextCodePoint();
        }
        if (hi < item[0].first) return Error("a reversed class range");
        item[0].second = hi;
      }
      r.insert(r.end(), item.begin(), item.end());
    }
    Normalize(r);
    return negate ? Complement(std::move(r)) : r;
  }

  // One element matching any of the code points in `r`.
  absl::StatusOr<Sequence> FromRanges(Ranges r) {
    Normalize(r);
    if (r.empty()) return Error("a class that matches nothing");
    ByteSet ascii;
    std::vector<Sequence> alts;
    for (const auto& [lo, hi] : r) {
      if (lo < 0x80)
        ascii.AddRange(static_cast<uint8_t>(lo),
                       static_cast<uint8_t>(std::min<uint32_t>(hi, 0x7F)));
      if (hi >= 0x80) {
        for (const auto& seq : Utf8Ranges(std::max<uint32_t>(lo, 0x80), hi)) {
          Sequence s;
          for (const auto& [blo, bhi] : seq) s.push_back(b.Bytes(ByteSet::Range(blo, bhi)));
          alts.push_back(std::move(s));
        }
      }
    }
    if (alts.empty()) return Sequence{b.Bytes(ascii)};
    if (!ascii.Empty()) alts.push_back({b.Bytes(ascii)});
    return Sequence{GrammarBuilder::Ref(b.Choice(std::move(alts)))};
  }

  absl::StatusOr<Sequence> Atom() {
    const char c = p[i];
    if (c == '(') {
      ++i;
      if (i < p.size() && p[i] == '?') {
        ++i;
        if (i < p.size() && p[i] == ':') {
          ++i;
        } else if (i < p.size() && (p[i] == 'P' || p[i] == '<') &&
                   !(p[i] == '<' && i + 1 < p.size() && (p[i + 1] == '=' || p[i + 1] == '!'))) {
          if (p[i] == 'P') ++i;
          if (i >= p.size() || p[i] != '<') return Error("a malformed group name");
          const size_t close = p.find('>', i);
          if (close == std::string_view::npos) return Error("an unterminated group name");
          i = close + 1;
        } else {
          return Error("lookaround and inline flags are not supported");
        }
      }
      if (++nesting > kMaxNesting) return Error("groups nested too deeply");
      auto inner = Alternation();
      --nesting;
      if (!inner.ok()) return inner.status();
      if (AtEnd() || p[i] != ')') return Error("an unclosed group");
      ++i;
      return inner;
    }
    if (c == '[') {
      ++i;
      auto r = Class();
      if (!r.ok()) return r.status();
      return FromRanges(*r);
    }
    if (c == '.') {
      ++i;
      return FromRanges(Complement({{'\n', '\n'}}));
    }
    if (c == '\\') {
      ++i;
      auto r = Escape(false);
      if (!r.ok()) return r.status();
      return FromRanges(*r);
    }
    if (c == '*' || c == '+' || c == '?' || c == '{')
      return Error("a quantifier with nothing before it");
    if (c == '^' || c == '$') return Error("anchors are only supported at the ends of the pattern");
    std::string bytes;
    chat_template::AppendUtf8(NextCodePoint(), bytes);
    return b.Literal(bytes);
  }

  absl::StatusOr<int> Count() {
    if (AtEnd() || p[i] < '0' || p[i] > '9') return Error("a repetition count expected");
    int v = 0;
    while (!AtEnd() && p[i] >= '0' && p[i] <= '9') {
      v = v * 10 + (p[i++] - '0');
      if (v > kMaxRepeat) return Error(absl::StrCat("a repetition count over ", kMaxRepeat));
    }
    return v;
  }

  absl::StatusOr<Sequence> Repetition() {
    auto atom = Atom();
    if (!atom.ok()) return atom.status();
    Sequence seq = std::move(*atom);
    while (!AtEnd() && (p[i] == '*' || p[i] == '+' || p[i] == '?' || p[i] == '{')) {
      int min = 0, max = -1;
      const char q = p[i++];
      if (q == '+') {
        min = 1;
      } else if (q == '?') {
        max = 1;
      } else if (q == '{') {
        auto lo = Count();
        if (!lo.ok()) return lo.status();
        min = *lo;
        max = min;
        if (!AtEnd() && p[i] == ',') {
          ++i;
          max = -1;
          if (!AtEnd() && p[i] != '}') {
            auto hi = Count();
            if (!hi.ok()) return hi.status();
            max = *hi;
            if (max < min) return Error("a repetition {n,m} with m < n");
          }
        }
        if (AtEnd() || p[i] != '}') return Error("an unclosed repetition");
        ++i;
      }
      if (!AtEnd() && (p[i] == '?' || p[i] == '+')) ++i;  // lazy / possessive
      seq = {GrammarBuilder::Ref(b.Repeat(seq, min, max))};
      if (!AtEnd() && (p[i] == '*' || p[i] == '+' || p[i] == '?' || p[i] == '{')) {
        return Error("a repeated quantifier (as Python's re, write a group)");
      }
    }
    return seq;
  }

  absl::StatusOr<Sequence> Concatenation() {
    Sequence seq;
    while (!AtEnd() && p[i] != '|' && p[i] != ')') {
      if (p[i] == '$' && i + 1 == p.size()) {
        ++i;
        break;
      }
      auto r = Repetition();
      if (!r.ok()) return r.status();
      seq.insert(seq.end(), r->begin(), r->end());
    }
    return seq;
  }

  absl::StatusOr<Sequence> Alternation() {
    std::vector<Sequence> alts;
    while (true) {
      auto c = Concatenation();
      if (!c.ok()) return c.status();
      alts.push_back(std::move(*c));
      if (AtEnd() || p[i] != '|') break;
      ++i;
    }
    if (alts.size() == 1) return std::move(alts[0]);
    return Sequence{GrammarBuilder::Ref(b.Choice(std::move(alts)))};
  }
};

}  // namespace

std::vector<std::vector<std::pair<uint8_t, uint8_t>>> Utf8Ranges(uint32_t lo, uint32_t hi) {
  std::vector<std::vector<std::pair<uint8_t, uint8_t>>> out;
  hi = std::min(hi, kMaxCodePoint);
  const std::pair<uint32_t, uint32_t> pieces[] = {
      {0, 0x7F}, {0x80, 0x7FF}, {0x800, 0xD7FF}, {0xE000, 0xFFFF}, {0x10000, kMaxCodePoint}};
  for (const auto& [plo, phi] : pieces) {
    const uint32_t a = std::max(lo, plo), z = std::min(hi, phi);
    if (a <= z) SplitSameLength(a, z, out);
  }
  return out;
}

absl::StatusOr<Sequence> AddRegex(std::string_view pattern, GrammarBuilder& b) {
  Parser parser{pattern, 0, b};
  if (!pattern.empty() && pattern[0] == '^') parser.i = 1;
  auto seq = parser.Alternation();
  if (!seq.ok()) return seq.status();
  if (!parser.AtEnd()) return parser.Error("an unmatched ')'");
  return seq;
}

absl::StatusOr<Sequence> AddCharClass(std::string_view text, size_t* pos, GrammarBuilder& b) {
  Parser parser{text, *pos, b};
  auto ranges = parser.Class();
  if (!ranges.ok()) return ranges.status();
  auto seq = parser.FromRanges(*std::move(ranges));
  *pos = parser.i;
  return seq;
}

absl::StatusOr<uint32_t> ParseEscape(std::string_view text, size_t* pos) {
  GrammarBuilder unused;
  Parser parser{text, *pos, unused};
  auto ranges = parser.Escape(/*in_class=*/false);
  if (!ranges.ok()) return ranges.status();
  if (ranges->size() != 1 || (*ranges)[0].first != (*ranges)[0].second) {
    return absl::InvalidArgumentError(
        absl::StrCat("a class escape where one character belongs at offset ", *pos));
  }
  *pos = parser.i;
  return (*ranges)[0].first;
}

}  // namespace ferry::structured
