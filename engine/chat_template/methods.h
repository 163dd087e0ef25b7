// Methods reachable through attribute access: str.strip(), dict.items(),
// list.append(), ... with Python's semantics.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "engine/chat_template/value.h"

namespace ferry::chat_template {

// Whether `obj` (a string, dict or list) has a method called `name`.
bool HasMethod(const Value& obj, std::string_view name);
// A callable bound to `obj`; call it through Interpreter::Call.
Value BindMethod(const Value& obj, std::string_view name);

// Python's str.strip(chars) family; `chars` undefined/None strips whitespace.
// which: 'l', 'r' or 'b' (both).
std::string PyStrip(std::string_view s, const Value& chars, char which);
std::string PyUpper(std::string_view s);  // see MapCase in utf8.h
std::string PyLower(std::string_view s);

}  // namespace ferry::chat_template
