// Splits template source into tokens the way jinja2's lexer does with
// trim_blocks and lstrip_blocks on: whitespace control ("-", "+") and the
// newline/indent trimming around block tags are applied here, so the parser
// only sees the text that will be printed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry::chat_template {

enum class TokenType {
  kData,        // literal template text
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // value is already unescaped
  kInteger,
  kFloat,
  kOperator,
  kEof,
};

struct Token {
  TokenType type;
  std::string value;
  int line = 1;
};

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Fails with InvalidArgument ("line N: ...") on an unterminated tag, comment
// or string, or an unexpected character inside a tag.
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source,
                                            const LexerOptions& options = {});

}  // namespace ferry::chat_template
