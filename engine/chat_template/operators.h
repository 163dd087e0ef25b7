// Python's operators on template values.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/chat_template/value.h"

namespace ferry::chat_template {

class Interpreter;

// a OP b for +, -, *, /, //, %, **. Fails like Python does (TypeError,
// ZeroDivisionError), and on undefined operands as jinja2's Undefined does.
absl::StatusOr<Value> BinaryOp(Interpreter& interp, std::string_view op, const Value& a,
                               const Value& b);
// Python's printf-style `fmt % args` (args a tuple, a mapping for
// %(key)s, or one value).
absl::StatusOr<Value> PercentFormat(Interpreter& interp, const std::string& fmt, const Value& args);
// Python's `item in container`.
absl::StatusOr<bool> Contains(const Value& container, const Value& item);
// container[start:stop:step] for strings (by code point) and lists; step != 0.
Value SliceValue(const Value& v, std::optional<int64_t> start, std::optional<int64_t> stop,
                 std::optional<int64_t> step);
// HTML-escapes &, <, >, " and ' as markupsafe does.
std::string HtmlEscape(std::string_view s);

}  // namespace ferry::chat_template
