#include "engine/chat_template/lexer.h"

#include <cctype>

#include "absl/strings/str_cat.h"
#include "engine/chat_template/utf8.h"

namespace ferry::chat_template {
namespace {

// Python's \s for the ASCII range, which is all a template's markup uses.
bool IsSpace(char c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

bool IsNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsNameChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// jinja2 reads string literals with Python's "unicode-escape" codec.
absl::StatusOr<std::string> Unescape(std::string_view s, int line) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 >= s.size()) {
      out.push_back(s[i]);
      continue;
    }
    char c = s[++i];
    auto hex = [&](int n) -> absl::StatusOr<uint32_t> {
      uint32_t v = 0;
      for (int k = 1; k <= n; ++k) {
        if (i + k >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + k]))) {
          return absl::InvalidArgumentError(
              absl::StrCat("line ", line, ": truncated \\x/\\u escape in string literal"));
        }
        char h = s[i + k];
        v = v * 16 + (IsDigit(h) ? h - '0' : (std::tolower(h) - 'a' + 10));
      }
      i += n;
      return v;
    };
    switch (c) {
      case '\n':
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        absl::StatusOr<uint32_t> cp = hex(c == 'x' ? 2 : c == 'u' ? 4 : 8);
        if (!cp.ok()) return cp.status();
        if (*cp > 0x10ffff) {
          return absl::InvalidArgumentError(
              absl::StrCat("line ", line, ": illegal Unicode character in string literal"));
        }
        AppendUtf8(*cp, out);
        break;
      }
      default:
        if (c >= '0' && c <= '7') {
          uint32_t v = c - '0';
          for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k) {
            v = v * 8 + (s[++i] - '0');
          }
          AppendUtf8(v, out);
        } else {
          // Unknown escapes keep their backslash, as in Python.
          out.push_back('\\');
          out.push_back(c);
        }
    }
  }
  return out;
}

class Lexer {
 public:
  Lexer(std::string source, const LexerOptions& options)
      : src_(std::move(source)), options_(options) {}

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      absl::Status s = LexRoot();
      if (!s.ok()) return s;
    }
    Emit(TokenType::kEof, "");
    return std::move(tokens_);
  }

 private:
  void Emit(TokenType type, std::string value) {
    tokens_.push_back(Token{type, std::move(value), line_});
  }
  absl::Status Error(const std::string& msg) const {
    return absl::InvalidArgumentError(absl::StrCat("line ", line_, ": ", msg));
  }
  void CountLines(size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) line_ += src_[i] == '\n';
  }
  bool At(size_t p, std::string_view s) const { return src_.compare(p, s.size(), s) == 0; }

  // Applies "-" / lstrip_blocks to the text in front of a tag and emits it.
  void EmitText(size_t begin, size_t end, char sign, bool is_variable) {
    std::string_view text(src_.data() + begin, end - begin);
    size_t keep = text.size();
    if (sign == '-') {
      while (keep > 0 && IsSpace(text[keep - 1])) --keep;
    } else if (sign != '+' && options_.lstrip_blocks && !is_variable) {
      size_t nl = text.rfind('\n');
      size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting_) && l_pos < text.size()) {
        bool all_space = true;
        for (size_t i = l_pos; i < text.size(); ++i) all_space = all_space && IsSpace(text[i]);
        if (all_space) keep = l_pos;
      }
    }
    if (keep > 0) Emit(TokenType::kData, std::string(text.substr(0, keep)));
    CountLines(begin, end);
  }

  // Matches the end of a tag at p: "+END", "-END" plus whitespace, or END
  // plus one newline when trimming applies. Returns the end or npos.
  size_t MatchEnd(size_t p, std::string_view end, bool trim) const {
    if (trim && At(p, "+") && At(p + 1, end)) return p + 1 + end.size();
    if (At(p, "-") && At(p + 1, end)) {
      p += 1 + end.size();
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      return p;
    }
    if (!At(p, end)) return std::string::npos;
    p += end.size();
    if (trim && options_.trim_blocks && p < src_.size() && src_[p] == '\n') ++p;
    return p;
  }

  bool ConsumeEnd(std::string_view end, bool trim) {
    size_t e = MatchEnd(pos_, end, trim);
    if (e == std::string::npos) return false;
    line_starting_ = src_[e - 1] == '\n';
    CountLines(pos_, e);
    pos_ = e;
    return true;
  }

  // Matches "{%[-+]?\s*raw\s*(-%}\s*|%})" at pos; returns its end or npos.
  size_t MatchRawBegin(size_t p) const {
    p += 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    while (p < src_.size() && IsSpace(src_[p])) ++p;
    if (!At(p, "raw")) return std::string::npos;
    p += 3;
    while (p < src_.size() && IsSpace(src_[p])) ++p;
    if (At(p, "-%}")) {
      p += 3;
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      return p;
    }
    if (At(p, "%}")) return p + 2;
    return std::string::npos;
  }

  absl::Status LexRoot() {
    size_t p = pos_;
    while (true) {
      p = src_.find('{', p);
      if (p == std::string::npos || p + 1 >= src_.size()) {
        Emit(TokenType::kData, src_.substr(pos_));
        CountLines(pos_, src_.size());
        pos_ = src_.size();
        return absl::OkStatus();
      }
      char k = src_[p + 1];
      if (k == '{' || k == '%' || k == '#') break;
      ++p;
    }
    char kind = src_[p + 1];
    char sign = p + 2 < src_.size() && (src_[p + 2] == '-' || src_[p + 2] == '+') ? src_[p + 2] : 0;
    EmitText(pos_, p, sign, kind == '{');
    line_starting_ = false;
    if (kind == '%') {
      size_t raw_end = MatchRawBegin(p);
      if (raw_end != std::string::npos) {
        CountLines(p, raw_end);
        line_starting_ = src_[raw_end - 1] == '\n';
        pos_ = raw_end;
        return LexRaw();
      }
    }
    pos_ = p + 2 + (sign ? 1 : 0);
    if (kind == '#') return LexComment();
    Emit(kind == '{' ? TokenType::kVarBegin : TokenType::kBlockBegin, "");
    return LexTag(kind == '{' ? "}}" : "%}", kind == '%');
  }

  absl::Status LexComment() {
    for (size_t q = pos_; q < src_.size(); ++q) {
      if (At(q, "+#}") || At(q, "-#}") || At(q, "#}")) {
        CountLines(pos_, q);
        pos_ = q;
        ConsumeEnd("#}", true);
        return absl::OkStatus();
      }
    }
    return Error("Missing end of comment tag");
  }

  absl::Status LexRaw() {
    for (size_t q = pos_; q + 1 < src_.size(); ++q) {
      if (!At(q, "{%")) continue;
      size_t p = q + 2;
      char sign = 0;
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      if (!At(p, "endraw")) continue;
      p += 6;
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      if (MatchEnd(p, "%}", true) == std::string::npos) continue;
      EmitText(pos_, q, sign, false);
      CountLines(q, p);
      pos_ = p;
      ConsumeEnd("%}", true);
      return absl::OkStatus();
    }
    return Error("Missing end of raw directive");
  }

  absl::Status LexTag(std::string_view end, bool is_block) {
    std::vector<char> balance;
    while (true) {
      if (pos_ >= src_.size()) return Error("unexpected end of template inside a tag");
      if (balance.empty() && ConsumeEnd(end, is_block)) {
        Emit(is_block ? TokenType::kBlockEnd : TokenType::kVarEnd, "");
        return absl::OkStatus();
      }
      char c = src_[pos_];
      if (IsSpace(c)) {
        size_t s = pos_;
        while (pos_ < src_.size() && IsSpace(src_[pos_])) ++pos_;
        CountLines(s, pos_);
        continue;
      }
      if (IsDigit(c) && (pos_ == 0 || src_[pos_ - 1] != '.')) {
        LexNumber();
        continue;
      }
      if (IsDigit(c)) {  // digits right after '.', as in foo.0
        size_t s = pos_;
        while (pos_ < src_.size() && IsDigit(src_[pos_])) ++pos_;
        Emit(TokenType::kInteger, src_.substr(s, pos_ - s));
        continue;
      }
      if (IsNameStart(c)) {
        size_t s = pos_;
        while (pos_ < src_.size() && IsNameChar(src_[pos_])) ++pos_;
        Emit(TokenType::kName, src_.substr(s, pos_ - s));
        continue;
      }
      if (c == '\'' || c == '"') {
        absl::Status st = LexString(c);
        if (!st.ok()) return st;
        continue;
      }
      static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
      std::string op;
      for (std::string_view t : kTwo) {
        if (At(pos_, t)) op = std::string(t);
      }
      if (op.empty()) {
        static constexpr std::string_view kOne = "+-/*%~[](){}=.:|,;<>";
        if (kOne.find(c) == std::string_view::npos) {
          return Error(absl::StrCat("unexpected char '", std::string(1, c), "'"));
        }
        op = std::string(1, c);
      }
      if (op == "{" || op == "(" || op == "[") {
        balance.push_back(op == "{" ? '}' : op == "(" ? ')' : ']');
      } else if (op == "}" || op == ")" || op == "]") {
        if (balance.empty()) return Error(absl::StrCat("unexpected '", op, "'"));
        if (balance.back() != op[0]) {
          return Error(absl::StrCat("unexpected '", op, "', expected '",
                                    std::string(1, balance.back()), "'"));
        }
        balance.pop_back();
      }
      pos_ += op.size();
      Emit(TokenType::kOperator, op);
    }
  }

  // Digits with optional "_" separators.
  size_t ScanDigits(size_t p) const {
    if (p >= src_.size() || !IsDigit(src_[p])) return std::string::npos;
    while (p < src_.size()) {
      if (IsDigit(src_[p])) {
        ++p;
      } else if (src_[p] == '_' && p + 1 < src_.size() && IsDigit(src_[p + 1])) {
        ++p;
      } else {
        break;
      }
    }
    return p;
  }

  void LexNumber() {
    size_t s = pos_;
    size_t p = ScanDigits(pos_);
    bool is_float = false;
    if (p < src_.size() && src_[p] == '.') {
      size_t f = ScanDigits(p + 1);
      if (f != std::string::npos) {
        p = f;
        is_float = true;
      }
    }
    if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
      size_t q = p + 1;
      if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
      size_t f = ScanDigits(q);
      if (f != std::string::npos) {
        p = f;
        is_float = true;
      }
    }
    std::string text;
    for (size_t i = s; i < p; ++i) {
      if (src_[i] != '_') text.push_back(src_[i]);
    }
    pos_ = p;
    Emit(is_float ? TokenType::kFloat : TokenType::kInteger, text);
  }

  absl::Status LexString(char quote) {
    size_t p = pos_ + 1;
    while (p < src_.size() && src_[p] != quote) {
      if (src_[p] == '\\') ++p;
      ++p;
    }
    if (p >= src_.size()) return Error("unterminated string literal");
    absl::StatusOr<std::string> value =
        Unescape(std::string_view(src_).substr(pos_ + 1, p - pos_ - 1), line_);
    if (!value.ok()) return value.status();
    Emit(TokenType::kString, std::move(*value));
    CountLines(pos_, p);
    pos_ = p + 1;
    return absl::OkStatus();
  }

  std::string src_;
  LexerOptions options_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

// jinja2 turns \r\n and \r into \n and drops one trailing newline.
std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source,
                                            const LexerOptions& options) {
  return Lexer(NormalizeNewlines(source), options).Run();
}

}  // namespace ferry::chat_template
