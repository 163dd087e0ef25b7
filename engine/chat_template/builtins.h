// Global functions a template can call (range, namespace, raise_exception,
// strftime_now, ...) and helpers for writing native callables.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/chat_template/value.h"

namespace ferry::chat_template {

using NativeFn = std::function<absl::StatusOr<Value>(Interpreter&, CallArgs)>;

std::shared_ptr<Callable> MakeBuiltin(std::string name, NativeFn fn);

// The builtin global called `name`, or undefined.
Value LookupBuiltin(std::string_view name);

// Binds Python-style arguments to parameter `names`; parameters not passed
// stay undefined. Fails on surplus positional or unknown keyword arguments.
absl::StatusOr<std::vector<Value>> BindArgs(std::string_view fn, CallArgs args,
                                            std::initializer_list<std::string_view> names);

}  // namespace ferry::chat_template
