#include "engine/chat_template/builtins.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/chat_template/interpreter.h"

namespace ferry::chat_template {
namespace {

class NativeCallable : public Callable {
 public:
  NativeCallable(std::string name, NativeFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) override {
    return fn_(interp, std::move(args));
  }
  std::string Describe() const override { return absl::StrCat("<function ", name_, ">"); }

 private:
  std::string name_;
  NativeFn fn_;
};

absl::StatusOr<Value> Range(Interpreter& interp, CallArgs args) {
  if (!args.keyword.empty()) return absl::InvalidArgumentError("range() takes no keyword arguments");
  const auto& p = args.positional;
  if (p.empty() || p.size() > 3) {
    return absl::InvalidArgumentError("range expected 1 to 3 arguments");
  }
  for (const Value& v : p) {
    if (!v.is_int() && !v.is_bool()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", v.TypeName(), "' object cannot be interpreted as an integer"));
    }
  }
  int64_t start = 0, stop, step = 1;
  if (p.size() == 1) {
    stop = p[0].as_int();
  } else {
    start = p[0].as_int();
    stop = p[1].as_int();
    if (p.size() == 3) step = p[2].as_int();
  }
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  // Count first so a huge range fails before allocating.
  __int128 count = 0;
  if (step > 0 && stop > start) count = ((__int128)stop - start + step - 1) / step;
  if (step < 0 && stop < start) count = ((__int128)start - stop - step - 1) / -step;
  FERRY_RETURN_IF_ERROR(interp.CheckListSize(static_cast<size_t>(
      std::min<__int128>(count, static_cast<__int128>(SIZE_MAX / 2)))));
  FERRY_RETURN_IF_ERROR(interp.Step(static_cast<int64_t>(count)));
  std::vector<Value> items;
  items.reserve(static_cast<size_t>(count));
  for (__int128 i = 0; i < count; ++i) items.push_back(Value::Int(static_cast<int64_t>(start + i * step)));
  return Value::List(std::move(items));
}

absl::StatusOr<Value> MakeMapping(CallArgs args, bool is_namespace) {
  auto d = std::make_shared<DictData>();
  if (args.positional.size() > 1) {
    return absl::InvalidArgumentError("expected at most 1 positional argument");
  }
  if (!args.positional.empty()) {
    const Value& init = args.positional[0];
    if (!init.is_dict()) return absl::InvalidArgumentError("expected a mapping argument");
    for (const auto& [k, v] : init.dict().entries()) FERRY_RETURN_IF_ERROR(d->Set(k, v));
  }
  for (auto& [k, v] : args.keyword) d->SetStr(k, std::move(v));
  return is_namespace ? Value::Namespace(std::move(d)) : Value::Dict(std::move(d));
}

absl::StatusOr<Value> RaiseException(Interpreter&, CallArgs args) {
  std::string msg = args.positional.empty() ? "" : args.positional[0].ToString();
  return absl::InvalidArgumentError(msg);
}

absl::StatusOr<Value> StrftimeNow(Interpreter& interp, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> a, BindArgs("strftime_now", std::move(args), {"format"}));
  if (!a[0].is_string()) return absl::InvalidArgumentError("strftime_now expects a format string");
  const Clock* clock = interp.options().clock ? interp.options().clock : Clock::Real();
  return Value::String(absl::FormatTime(a[0].str(), clock->Now(), interp.options().time_zone));
}

}  // namespace

std::shared_ptr<Callable> MakeBuiltin(std::string name, NativeFn fn) {
  return std::make_shared<NativeCallable>(std::move(name), std::move(fn));
}

Value LookupBuiltin(std::string_view name) {
  if (name == "range") return Value::Function(MakeBuiltin("range", Range));
  if (name == "namespace") {
    return Value::Function(MakeBuiltin(
        "namespace", [](Interpreter&, CallArgs a) { return MakeMapping(std::move(a), true); }));
  }
  if (name == "dict") {
    return Value::Function(MakeBuiltin(
        "dict", [](Interpreter&, CallArgs a) { return MakeMapping(std::move(a), false); }));
  }
  if (name == "raise_exception") return Value::Function(MakeBuiltin("raise_exception", RaiseException));
  if (name == "strftime_now") return Value::Function(MakeBuiltin("strftime_now", StrftimeNow));
  return Value();
}

absl::StatusOr<std::vector<Value>> BindArgs(std::string_view fn, CallArgs args,
                                            std::initializer_list<std::string_view> names) {
  std::vector<Value> out(names.size());
  if (args.positional.size() > names.size()) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(fn), "() takes at most ", names.size(),
                                                   " argument(s) (", args.positional.size(),
                                                   " given)"));
  }
  for (size_t i = 0; i < args.positional.size(); ++i) out[i] = std::move(args.positional[i]);
  for (auto& [k, v] : args.keyword) {
    size_t i = 0;
    for (std::string_view n : names) {
      if (n == k) break;
      ++i;
    }
    if (i == names.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Sv(fn), "() got an unexpected keyword argument '", k, "'"));
    }
    out[i] = std::move(v);
  }
  return out;
}

}  // namespace ferry::chat_template
