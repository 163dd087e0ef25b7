#include "engine/tokenizer/pre_tokenizer.h"

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"
#include "engine/tokenizer/unicode.h"

namespace ferry {
namespace {

constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// The text decoded once, so that matchers can look ahead by code point.
class CodepointText {
 public:
  explicit CodepointText(std::string_view text) {
    codepoints_.reserve(text.size());
    offsets_.reserve(text.size() + 1);
    for (size_t pos = 0; pos < text.size();) {
      const Utf8Char c = DecodeUtf8(text, pos);
      codepoints_.push_back(c.codepoint);
      flags_.push_back(ClassifyCodepoint(c.codepoint));
      offsets_.push_back(static_cast<uint32_t>(pos));
      pos += c.num_bytes;
    }
    offsets_.push_back(static_cast<uint32_t>(text.size()));
  }

  size_t size() const { return codepoints_.size(); }
  size_t offset(size_t i) const { return offsets_[i]; }
  // Out of range reads as 0 / no class, which no rule matches.
  uint32_t cp(size_t i) const { return i < size() ? codepoints_[i] : 0; }
  bool letter(size_t i) const { return flags(i) & kCodepointLetter; }
  bool number(size_t i) const { return flags(i) & kCodepointNumber; }
  bool space(size_t i) const { return flags(i) & kCodepointWhitespace; }
  // [^\s\p{L}\p{N}]
  bool other(size_t i) const { return i < size() && flags_[i] == 0; }
  bool newline(size_t i) const { return cp(i) == '\r' || cp(i) == '\n'; }

 private:
  uint8_t flags(size_t i) const { return i < size() ? flags_[i] : 0; }

  std::vector<uint32_t> codepoints_;
  std::vector<uint8_t> flags_;
  std::vector<uint32_t> offsets_;
};

uint32_t AsciiLower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// 's|'t|'re|'ve|'m|'ll|'d, optionally ignoring ASCII case. Returns the
// match length in code points, 0 for none.
size_t MatchContraction(const CodepointText& t, size_t pos, bool ignore_case) {
  if (t.cp(pos) != '\'') return 0;
  const auto norm = [&](uint32_t c) { return ignore_case ? AsciiLower(c) : c; };
  const uint32_t c1 = norm(t.cp(pos + 1));
  const uint32_t c2 = norm(t.cp(pos + 2));
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
    return 3;
  }
  return 0;
}

// \s+(?!\S)|\s+ at a whitespace code point: a run of spaces gives its last
// one to the word that follows.
size_t MatchTrailingSpaces(const CodepointText& t, size_t pos) {
  size_t end = pos;
  while (t.space(end)) ++end;
  const size_t run = end - pos;
  if (end == t.size() || run == 1) return run;
  return run - 1;
}

template <typename Pred>
size_t RunEnd(const CodepointText& t, size_t pos, Pred pred) {
  while (pos < t.size() && pred(pos)) ++pos;
  return pos;
}

size_t MatchGpt2(const CodepointText& t, size_t pos) {
  if (size_t n = MatchContraction(t, pos, /*ignore_case=*/false)) return n;
  // ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+': a single leading space joins the word.
  const size_t start =
      (t.cp(pos) == ' ' && !t.space(pos + 1) && pos + 1 < t.size()) ? pos + 1 : pos;
  if (t.letter(start)) return RunEnd(t, start, [&](size_t i) { return t.letter(i); }) - pos;
  if (t.number(start)) return RunEnd(t, start, [&](size_t i) { return t.number(i); }) - pos;
  if (t.other(start)) return RunEnd(t, start, [&](size_t i) { return t.other(i); }) - pos;
  return MatchTrailingSpaces(t, pos);
}

size_t MatchLlama3(const CodepointText& t, size_t pos, size_t max_digits) {
  if (size_t n = MatchContraction(t, pos, /*ignore_case=*/true)) return n;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (!t.newline(pos) && !t.number(pos) && (t.letter(pos) || t.letter(pos + 1))) {
    return RunEnd(t, pos + 1, [&](size_t i) { return t.letter(i); }) - pos;
  }
  // \p{N}{1,max_digits}
  if (t.number(pos)) {
    size_t end = pos;
    while (end - pos < max_digits && t.number(end)) ++end;
    return end - pos;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  const size_t start = (t.cp(pos) == ' ' && t.other(pos + 1)) ? pos + 1 : pos;
  if (t.other(start)) {
    size_t end = RunEnd(t, start, [&](size_t i) { return t.other(i); });
    end = RunEnd(t, end, [&](size_t i) { return t.newline(i); });
    return end - pos;
  }
  // \s*[\r\n]+: the longest run of spaces that ends with a newline.
  size_t end_after_newline = 0;
  size_t end = pos;
  for (; t.space(end); ++end) {
    if (t.newline(end)) end_after_newline = end + 1;
  }
  if (end_after_newline > 0) return end_after_newline - pos;
  if (end > pos) return MatchTrailingSpaces(t, pos);
  return 1;  // not reached: every code point is a letter, number, space or other
}

}  // namespace

absl::StatusOr<PreTokenizerKind> PreTokenizerFromGgufName(std::string_view name) {
  if (name.empty() || name == "default" || name == "gpt-2" || name == "gpt2") {
    return PreTokenizerKind::kGpt2;
  }
  if (name == "llama3" || name == "llama-bpe" || name == "llama-v3" || name == "smaug-bpe" ||
      name == "dbrx") {
    return PreTokenizerKind::kLlama3;
  }
  if (name == "qwen2" || name == "deepseek-r1-qwen") return PreTokenizerKind::kQwen2;
  return absl::UnimplementedError(
      absl::StrCat("unsupported pre-tokenizer '", Sv(name), "' (tokenizer.ggml.pre)"));
}

std::optional<PreTokenizerKind> PreTokenizerFromRegex(std::string_view pattern) {
  if (pattern == kGpt2Pattern) return PreTokenizerKind::kGpt2;
  if (pattern == kLlama3Pattern) return PreTokenizerKind::kLlama3;
  if (pattern == kQwen2Pattern) return PreTokenizerKind::kQwen2;
  return std::nullopt;
}

void SplitWords(std::string_view text, PreTokenizerKind kind,
                std::vector<std::string_view>* words) {
  const CodepointText t(text);
  for (size_t pos = 0; pos < t.size();) {
    size_t len = 0;
    switch (kind) {
      case PreTokenizerKind::kGpt2:
        len = MatchGpt2(t, pos);
        break;
      case PreTokenizerKind::kLlama3:
        len = MatchLlama3(t, pos, 3);
        break;
      case PreTokenizerKind::kQwen2:
        len = MatchLlama3(t, pos, 1);
        break;
    }
    if (len == 0) len = 1;
    words->push_back(text.substr(t.offset(pos), t.offset(pos + len) - t.offset(pos)));
    pos += len;
  }
}

}  // namespace ferry
