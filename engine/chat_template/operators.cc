#include "engine/chat_template/operators.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

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
    if (!s.empty() &&
        static_cast<uint64_t>(n) > interp.options().limits.max_string_bytes / s.size()) {
      return absl::ResourceExhaustedError("string repetition over the size limit");
    }
    FERRY_RETURN_IF_ERROR(interp.ChargeString(s.size() * n));
    std::string out;
    out.reserve(s.size() * n);
    for (int64_t i = 0; i < n; ++i) out += s;
    return Value::String(std::move(out));
  }
  const auto& items = seq.list().items;
  if (!items.empty() &&
      static_cast<uint64_t>(n) > interp.options().limits.max_list_items / items.size()) {
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

// %[(key)][flags][width][.precision]conversion, with s r a d i u x X o c e
// E f F g G and %%.
absl::StatusOr<Value> PercentFormat(Interpreter& interp, const std::string& fmt,
                                    const Value& args) {
  auto type_error = [](std::string what) { return absl::InvalidArgumentError(std::move(what)); };
  std::vector<Value> positional;
  const DictData* mapping = nullptr;
  if (args.is_tuple()) {
    positional = args.list().items;
  } else if (args.is_dict() && fmt.find("%(") != std::string::npos) {
    mapping = &args.dict();
  } else {
    positional.push_back(args);
  }
  size_t next = 0;
  std::string out;
  for (size_t i = 0; i < fmt.size();) {
    if (fmt[i] != '%') {
      out.push_back(fmt[i++]);
      continue;
    }
    ++i;
    const Value* value = nullptr;
    if (i < fmt.size() && fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      if (close == std::string::npos) return type_error("incomplete format key");
      if (mapping == nullptr) return type_error("format requires a mapping");
      value = mapping->FindStr(std::string_view(fmt).substr(i + 1, close - i - 1));
      if (value == nullptr) {
        return type_error(absl::StrCat("'", fmt.substr(i + 1, close - i - 1), "'"));
      }
      i = close + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) {
      flags.push_back(fmt[i++]);
    }
    auto number = [&](int* n) {
      *n = -1;
      if (i < fmt.size() && fmt[i] == '*') return false;
      while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') {
        *n = std::max(*n, 0) * 10 + (fmt[i++] - '0');
        if (*n > 1000000) *n = 1000000;  // a string limit stops it later
      }
      return true;
    };
    int width = -1, precision = -1;
    if (!number(&width)) return absl::UnimplementedError("'*' widths in % formatting");
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      if (!number(&precision)) return absl::UnimplementedError("'*' precisions in % formatting");
      if (precision < 0) precision = 0;
    }
    while (i < fmt.size() && (fmt[i] == 'l' || fmt[i] == 'h' || fmt[i] == 'L')) ++i;
    if (i >= fmt.size()) return type_error("incomplete format");
    const char conv = fmt[i++];
    if (conv == '%') {
      if (!flags.empty() || width >= 0 || precision >= 0 || value != nullptr) {
        return type_error("unsupported format character '%'");
      }
      out.push_back('%');
      continue;
    }
    if (value == nullptr) {
      if (mapping != nullptr) return type_error("format requires a mapping");
      if (next >= positional.size()) return type_error("not enough arguments for format string");
      value = &positional[next++];
    }
    const bool left = flags.find('-') != std::string::npos;
    // Strings and characters: spaces up to `width` code points.
    auto pad_text = [&](std::string& piece) {
      const size_t len = Utf8Length(piece);
      if (width <= 0 || len >= static_cast<size_t>(width)) return;
      const std::string pad(static_cast<size_t>(width) - len, ' ');
      piece = left ? piece + pad : pad + piece;
    };
    std::string piece;
    switch (conv) {
      case 's':
      case 'r':
      case 'a': {
        piece = conv == 's' ? value->ToString() : value->Repr();
        if (precision >= 0) {
          const std::vector<size_t> offsets = CodePointOffsets(piece);
          if (static_cast<size_t>(precision) < offsets.size()) piece.resize(offsets[precision]);
        }
        pad_text(piece);
        break;
      }
      case 'd':
      case 'i':
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        const bool integral_only = conv == 'x' || conv == 'X' || conv == 'o';
        int64_t n;
        if (value->is_int() || value->is_bool()) {
          n = value->as_int();
        } else if (value->is_float() && !integral_only) {
          const double d = value->as_float();
          if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) {
            return type_error("cannot convert float to integer");
          }
          n = static_cast<int64_t>(d);
        } else {
          return type_error(absl::StrCat("%", std::string(1, conv), " format: ",
                                         integral_only ? "an integer" : "a real number",
                                         " is required, not ", value->TypeName()));
        }
        // Sign, prefix, digits (at least `precision` of them), then padding
        // with zeros after the prefix (flag 0) or spaces, as Python does.
        std::string sign = n < 0                                  ? "-"
                           : flags.find('+') != std::string::npos ? "+"
                           : flags.find(' ') != std::string::npos ? " "
                                                                  : "";
        const unsigned long long mag =
            n < 0 ? 0ULL - static_cast<unsigned long long>(n) : static_cast<unsigned long long>(n);
        const char* cfmt = conv == 'x'   ? "%llx"
                           : conv == 'X' ? "%llX"
                           : conv == 'o' ? "%llo"
                                         : "%llu";
        char buf[32];
        std::snprintf(buf, sizeof buf, cfmt, mag);
        std::string digits = buf;
        if (precision > 0 && digits.size() < static_cast<size_t>(precision)) {
          digits.insert(0, static_cast<size_t>(precision) - digits.size(), '0');
        }
        std::string prefix;
        if (flags.find('#') != std::string::npos) {
          prefix = conv == 'x' ? "0x" : conv == 'X' ? "0X" : conv == 'o' ? "0o" : "";
        }
        const size_t len = sign.size() + prefix.size() + digits.size();
        if (width > 0 && len < static_cast<size_t>(width)) {
          const size_t pad = static_cast<size_t>(width) - len;
          if (left) {
            digits.append(pad, ' ');
          } else if (flags.find('0') != std::string::npos) {
            digits.insert(0, pad, '0');
          } else {
            sign.insert(0, pad, ' ');
          }
        }
        piece = sign + prefix + digits;
        break;
      }
      case 'e':
      case 'E':
      case 'f':
      case 'F':
      case 'g':
      case 'G': {
        if (!value->is_number()) {
          return type_error(absl::StrCat("must be real number, not ", value->TypeName()));
        }
        std::string f = "%" + flags;
        if (width >= 0) absl::StrAppend(&f, width);
        if (precision >= 0) absl::StrAppend(&f, ".", precision);
        f.push_back(conv);
        std::vector<char> text(static_cast<size_t>(std::max(width, 0) + std::max(precision, 0)) +
                               400);
        std::snprintf(text.data(), text.size(), f.c_str(), value->as_float());
        piece = text.data();
        break;
      }
      case 'c': {
        if (value->is_int()) {
          const int64_t cp = value->as_int();
          if (cp < 0 || cp > 0x10FFFF) return type_error("%c arg not in range(0x110000)");
          AppendUtf8(static_cast<uint32_t>(cp), piece);
        } else if (value->is_string() && Utf8Length(value->str()) == 1) {
          piece = value->str();
        } else {
          return type_error("%c requires int or char");
        }
        pad_text(piece);
        break;
      }
      default:
        return type_error(
            absl::StrCat("unsupported format character '", std::string(1, conv), "'"));
    }
    FERRY_RETURN_IF_ERROR(interp.ChargeString(piece.size()));
    out += piece;
  }
  // A mapping given as the one argument need not be used up.
  if (mapping == nullptr && !args.is_dict() && next < positional.size()) {
    return type_error("not all arguments converted during string formatting");
  }
  return Value::String(std::move(out));
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
      if (op == "%" && a.is_string()) return PercentFormat(interp, a.str(), b);
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
