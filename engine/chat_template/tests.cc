// The `is` tests of jinja2 (jinja2/tests.py).
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/chat_template/builtins.h"
#include "engine/chat_template/filters.h"
#include "engine/chat_template/interpreter.h"
#include "engine/chat_template/methods.h"
#include "engine/chat_template/operators.h"

namespace ferry::chat_template {
namespace {

using TestFn = absl::StatusOr<bool> (*)(Interpreter&, const Value&, std::vector<Value>&);

absl::StatusOr<bool> Compare(const Value& a, const Value& b, std::string_view op) {
  if (op == "==") return ValuesEqual(a, b);
  if (op == "!=") return !ValuesEqual(a, b);
  if (a.is_undefined() || b.is_undefined()) {
    return absl::InvalidArgumentError("undefined value in comparison");
  }
  FERRY_ASSIGN_OR_RETURN(int c, CompareValues(a, b));
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  return c >= 0;
}

absl::StatusOr<bool> Parity(Interpreter& interp, const Value& v, bool odd) {
  FERRY_ASSIGN_OR_RETURN(Value m, BinaryOp(interp, "%", v, Value::Int(2)));
  return ValuesEqual(m, Value::Int(odd ? 1 : 0));
}

const Value& Arg(std::vector<Value>& a, size_t i) {
  static const Value kUndefined;
  return i < a.size() ? a[i] : kUndefined;
}

const absl::flat_hash_map<std::string_view, TestFn>& Tests() {
  static const auto* kTests = new absl::flat_hash_map<std::string_view, TestFn>{
      {"defined", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return !v.is_undefined();
       }},
      {"undefined", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_undefined();
       }},
      {"none", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_none();
       }},
      {"boolean", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_bool();
       }},
      {"true", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_bool() && v.as_bool();
       }},
      {"false", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_bool() && !v.as_bool();
       }},
      {"integer", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_int();
       }},
      {"float", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_float();
       }},
      {"number", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_number();
       }},
      {"string", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_string();
       }},
      {"mapping", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_dict();
       }},
      {"sequence", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_undefined() || v.is_string() || v.is_dict() ||
                (v.is_list() && !v.is_generator());
       }},
      {"iterable", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_undefined() || v.is_string() || v.is_dict() || v.is_list();
       }},
      {"callable", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_callable() || v.is_undefined();
       }},
      {"escaped", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_markup();
       }},
      {"lower", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         std::string s = v.ToString();
         return PyLower(s) == s && PyUpper(s) != s;
       }},
      {"upper", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         std::string s = v.ToString();
         return PyUpper(s) == s && PyLower(s) != s;
       }},
      {"odd", [](Interpreter& i, const Value& v, std::vector<Value>&) { return Parity(i, v, true); }},
      {"even",
       [](Interpreter& i, const Value& v, std::vector<Value>&) { return Parity(i, v, false); }},
      {"divisibleby",
       [](Interpreter& i, const Value& v, std::vector<Value>& a) -> absl::StatusOr<bool> {
         FERRY_ASSIGN_OR_RETURN(Value m, BinaryOp(i, "%", v, Arg(a, 0)));
         return ValuesEqual(m, Value::Int(0));
       }},
      {"in", [](Interpreter&, const Value& v, std::vector<Value>& a) { return Contains(Arg(a, 0), v); }},
      {"sameas",
       [](Interpreter&, const Value& v, std::vector<Value>& a) -> absl::StatusOr<bool> {
         const Value& o = Arg(a, 0);
         if (v.identity() != nullptr || o.identity() != nullptr) {
           return v.identity() == o.identity() && !v.is_string();
         }
         return v.kind() == o.kind() && ValuesEqual(v, o);
       }},
      {"filter", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_string() && IsKnownFilter(v.str());
       }},
      {"test", [](Interpreter&, const Value& v, std::vector<Value>&) -> absl::StatusOr<bool> {
         return v.is_string() && IsKnownTest(v.str());
       }},
  };
  return *kTests;
}

std::string_view ComparisonOp(std::string_view name) {
  if (name == "eq" || name == "equalto" || name == "==") return "==";
  if (name == "ne" || name == "!=") return "!=";
  if (name == "lt" || name == "lessthan" || name == "<") return "<";
  if (name == "le" || name == "<=") return "<=";
  if (name == "gt" || name == "greaterthan" || name == ">") return ">";
  if (name == "ge" || name == ">=") return ">=";
  return "";
}

}  // namespace

bool IsKnownTest(std::string_view name) {
  return Tests().contains(name) || !ComparisonOp(name).empty();
}

absl::StatusOr<bool> ApplyTest(Interpreter& interp, std::string_view name, const Value& input,
                               CallArgs args) {
  FERRY_RETURN_IF_ERROR(interp.Step());
  std::vector<Value> a = std::move(args.positional);
  for (auto& [k, v] : args.keyword) a.push_back(std::move(v));
  std::string_view op = ComparisonOp(name);
  if (!op.empty()) return Compare(input, Arg(a, 0), op);
  auto it = Tests().find(name);
  if (it == Tests().end()) {
    return absl::InvalidArgumentError(absl::StrCat("No test named '", Sv(name), "'."));
  }
  return it->second(interp, input, a);
}

}  // namespace ferry::chat_template
