// Builds the syntax tree from tokens, following jinja2's grammar and
// operator precedence.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "engine/chat_template/ast.h"

namespace ferry::chat_template {

// Fails with InvalidArgument ("line N: ...") on a syntax error, an unknown
// tag, or a filter or test that does not exist (jinja2 rejects those when
// compiling, too, unless they are inside an if, where they fail only when
// evaluated).
absl::StatusOr<Body> ParseTemplate(std::string_view source);

}  // namespace ferry::chat_template
