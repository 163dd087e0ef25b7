#include "engine/chat_template/operators.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/chat_template/interpreter.h"
#include "engine/chat_template/utf8.h"

namespace ferry::chat_template {
namespace {

absl::Status Unsupported(std::string_view op, const Value& a, const Value& b) {
  if (a.is_undefined() || b.is_undefined()) {
    return absl::InvalidArgumentError(
        absl::StrCat("undefined value used with operator '", Sv(op), "'"));
  }
  return absl::InvalidArgumentError(absl::StrCat("unsupported operand type(s) for ", Sv(op),
                                                 ": '", a.TypeName(), "' and '", b.TypeName(),
                                                 "'"));
}

bool IsIntLike(const Value& v) { return v.is_int() || v.is_bool(); }

// Python's float floor-modulo: the result takes the divisor's sign.
double PyFmod(double a, double b) {
  double m = std::fmod(a, b);
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

absl::StatusOr<Value> Repeat(Interpreter& interp, const Value& seq, int64_t n) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    const std::string& s = seq.str();
    if (!s.empty() && static_cast<uint64_t>(n) > interp.options().limits.max_string_bytes / s.size()) {
      return absl::ResourceExhaustedError("string repetition over the size limit");
    }
    FERRY_RETURN_IF_ERROR(interp.ChargeString(s.size() * n));
    std::string out;
    out.reserve(s.size() * n);
    for (int64_t i = 0; i < n; ++i) out += s;
    return Value::String(std::move(out));
  }
  const auto& items = seq.list().items;
  if (!items.empty() && static_cast<uint64_t>(n) > interp.options().limits.max_list_items / items.size()) {
    return absl::ResourceExhaustedError("list repetition over the size limit");
  }
  FERRY_RETURN_IF_ERROR(interp.Step(static_cast<int64_t>(items.size() * n)));
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
  Value r = Value::List(std::move(out));
  r.list().is_tuple = seq.is_tuple();
  return r;
}

}  // namespace

std::string HtmlEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<Value> BinaryOp(Interpreter& interp, std::string_view op, const Value& a,
                               const Value& b) {
  const bool ints = IsIntLike(a) && IsIntLike(b);
  const bool nums = a.is_number() && b.is_number();
  if (op == "+") {
    if (ints) {
      int64_t r;
      if (__builtin_add_overflow(a.as_int(), b.as_int(), &r)) {
        return absl::InvalidArgumentError("integer overflow");
      }
      return Value::Int(r);
    }
    if (nums) return Value::Float(a.as_float() + b.as_float());
    if (a.is_string() && b.is_string()) {
      // Markup + str escapes the plain side, as markupsafe does.
      bool markup = a.is_markup() || b.is_markup();
      std::string l = a.is_markup() || !markup ? a.str() : HtmlEscape(a.str());
      std::string r = b.is_markup() || !markup ? b.str() : HtmlEscape(b.str());
      FERRY_RETURN_IF_ERROR(interp.ChargeString(l.size() + r.size()));
      return Value::String(l + r, markup);
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      const auto& x = a.list().items;
      const auto& y = b.list().items;
      FERRY_RETURN_IF_ERROR(interp.CheckListSize(x.size() + y.size()));
      FERRY_RETURN_IF_ERROR(interp.Step(static_cast<int64_t>(x.size() + y.size())));
      std::vector<Value> items(x);
      items.insert(items.end(), y.begin(), y.end());
      return a.is_tuple() ? Value::Tuple(std::move(items)) : Value::List(std::move(items));
    }
    return Unsupported(op, a, b);
  }
  if (op == "-") {
    if (ints) {
      int64_t r;
      if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) {
        return absl::InvalidArgumentError("integer overflow");
      }
      return Value::Int(r);
    }
    if (nums) return Value::Float(a.as_float() - b.as_float());
    return Unsupported(op, a, b);
  }
  if (op == "*") {
    if (ints) {
      int64_t r;
      if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r)) {
        return absl::InvalidArgumentError("integer overflow");
      }
      return Value::Int(r);
    }
    if (nums) return Value::Float(a.as_float() * b.as_float());
    if ((a.is_string() || a.is_list()) && IsIntLike(b)) return Repeat(interp, a, b.as_int());
    if ((b.is_string() || b.is_list()) && IsIntLike(a)) return Repeat(interp, b, a.as_int());
    return Unsupported(op, a, b);
  }
  if (op == "/") {
    if (!nums) return Unsupported(op, a, b);
    if (b.as_float() == 0) return absl::InvalidArgumentError("division by zero");
    return Value::Float(a.as_float() / b.as_float());
  }
  if (op == "//" || op == "%") {
    if (!nums) {
      if (op == "%" && a.is_string()) {
        return absl::UnimplementedError("printf-style string formatting is not supported");
      }
      return Unsupported(op, a, b);
    }
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int();
      if (y == 0) return absl::InvalidArgumentError("integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) return absl::InvalidArgumentError("integer overflow");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        --q;
        m += y;
      }
      return Value::Int(op == "//" ? q : m);
    }
    double x = a.as_float(), y = b.as_float();
    if (y == 0) return absl::InvalidArgumentError("float division or modulo by zero");
    if (op == "%") return Value::Float(PyFmod(x, y));
    // CPython's float_divmod, so results agree to the last bit.
    double mod = std::fmod(x, y);
    double div = (x - mod) / y;
    if (mod != 0 && ((y < 0) != (mod < 0))) div -= 1.0;
    double floordiv = div != 0 ? std::floor(div) : std::copysign(0.0, x / y);
    if (div != 0 && div - floordiv > 0.5) floordiv += 1.0;
    return Value::Float(floordiv);
  }
  if (op == "**") {
    if (!nums) return Unsupported(op, a, b);
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), e = b.as_int(), r = 1;
      while (e > 0) {
        if (e & 1) {
          if (__builtin_mul_overflow(r, base, &r)) return absl::InvalidArgumentError("integer overflow");
        }
        e >>= 1;
        if (e > 0 && __builtin_mul_overflow(base, base, &base)) {
          return absl::InvalidArgumentError("integer overflow");
        }
      }
      return Value::Int(r);
    }
    if (a.as_float() == 0 && b.as_float() < 0) {
      return absl::InvalidArgumentError("0.0 cannot be raised to a negative power");
    }
    return Value::Float(std::pow(a.as_float(), b.as_float()));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown operator ", Sv(op)));
}

absl::StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'in <string>' requires string as left operand, not ", item.TypeName()));
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::kList:
      for (const Value& v : container.list().items) {
        if (ValuesEqual(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict: {
      absl::StatusOr<std::string> h = item.HashKey();
      if (!h.ok()) return h.status();
      return container.dict().Find(item) != nullptr;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("argument of type '", container.TypeName(), "' is not iterable"));
  }
}

Value SliceValue(const Value& v, std::optional<int64_t> start, std::optional<int64_t> stop,
                 std::optional<int64_t> step_opt) {
  std::vector<size_t> offsets;
  int64_t n;
  if (v.is_string()) {
    offsets = CodePointOffsets(v.str());
    n = static_cast<int64_t>(offsets.size()) - 1;
  } else {
    n = static_cast<int64_t>(v.list().items.size());
  }
  const int64_t step = step_opt.value_or(1);
  // Python's slice.indices().
  auto clamp = [&](std::optional<int64_t> x, int64_t dflt) -> int64_t {
    if (!x) return dflt;
    int64_t i = *x;
    if (i < 0) {
      i += n;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= n) {
      i = step < 0 ? n - 1 : n;
    }
    return i;
  };
  int64_t lo = clamp(start, step < 0 ? n - 1 : 0);
  int64_t hi = clamp(stop, step < 0 ? -1 : n);
  std::vector<int64_t> idx;
  if (step > 0) {
    for (int64_t i = lo; i < hi; i += step) idx.push_back(i);
  } else {
    for (int64_t i = lo; i > hi; i += step) idx.push_back(i);
  }
  if (v.is_string()) {
    std::string out;
    for (int64_t i : idx) out.append(v.str(), offsets[i], offsets[i + 1] - offsets[i]);
    return Value::String(std::move(out));
  }
  std::vector<Value> out;
  out.reserve(idx.size());
  for (int64_t i : idx) out.push_back(v.list().items[i]);
  return v.is_tuple() ? Value::Tuple(std::move(out)) : Value::List(std::move(out));
}

}  // namespace ferry::chat_template
