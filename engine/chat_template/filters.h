// jinja2's builtin filters ({{ x|trim }}) and tests ({% if x is defined %}),
// with transformers' tojson.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "engine/chat_template/value.h"

namespace ferry::chat_template {

bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);

// Fails on bad arguments, or where jinja2's filter raises.
absl::StatusOr<Value> ApplyFilter(Interpreter& interp, std::string_view name, Value input,
                                  CallArgs args);
absl::StatusOr<bool> ApplyTest(Interpreter& interp, std::string_view name, const Value& input,
                               CallArgs args);

// Python's len(); fails for values without one (numbers, generators).
absl::StatusOr<int64_t> Length(const Value& v);

}  // namespace ferry::chat_template
