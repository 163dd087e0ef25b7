#include "engine/chat_template/methods.h"

#include <algorithm>
#include <cctype>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/chat_template/builtins.h"
#include "engine/chat_template/interpreter.h"
#include "engine/chat_template/utf8.h"

namespace ferry::chat_template {
namespace {

const absl::flat_hash_set<std::string_view>& StringMethods() {
  static const auto* kNames = new absl::flat_hash_set<std::string_view>{
      "strip",  "lstrip",  "rstrip",  "split",   "rsplit",    "splitlines", "startswith",
      "endswith", "upper", "lower",   "title",   "capitalize", "swapcase",  "replace",
      "find",   "rfind",   "index",   "count",   "join",      "format",     "isdigit",
      "isalpha", "isalnum", "isspace", "islower", "isupper",   "isnumeric",  "isdecimal"};
  return *kNames;
}

bool IsListMethod(std::string_view n) {
  return n == "append" || n == "pop" || n == "index" || n == "count" || n == "extend";
}
bool IsDictMethod(std::string_view n) {
  return n == "items" || n == "keys" || n == "values" || n == "get";
}

absl::Status NeedString(std::string_view method, const Value& v) {
  if (v.is_string()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(Sv(method), "() argument must be str, not ",
                                                 v.TypeName()));
}

// Byte offset -> code point index, for find() results.
int64_t CodePointIndex(std::string_view s, size_t byte_offset) {
  return static_cast<int64_t>(Utf8Length(s.substr(0, byte_offset)));
}

bool IsSpaceAt(std::string_view s, size_t i, size_t& next) {
  next = i;
  return IsPySpace(DecodeUtf8(s, next));
}

std::vector<Value> SplitWhitespace(std::string_view s, int64_t maxsplit) {
  std::vector<Value> out;
  size_t i = 0, next;
  while (i < s.size()) {
    while (i < s.size() && IsSpaceAt(s, i, next)) i = next;
    if (i >= s.size()) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
      out.push_back(Value::String(std::string(s.substr(i))));
      return out;
    }
    size_t start = i;
    while (i < s.size() && !IsSpaceAt(s, i, next)) i = next;
    out.push_back(Value::String(std::string(s.substr(start, i - start))));
  }
  return out;
}

std::string PyTitle(std::string_view s) {
  std::string out(s);
  bool prev_cased = false;
  for (char& c : out) {
    bool alpha = std::isalpha(static_cast<unsigned char>(c));
    if (alpha) c = prev_cased ? std::tolower(c) : std::toupper(c);
    prev_cased = alpha;
  }
  return out;
}

// str.format with positional "{}" / "{0}" and named "{key}" fields (no
// format specs or conversions).
absl::StatusOr<std::string> PyFormat(std::string_view fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}' ) {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      else return absl::InvalidArgumentError("Single '}' encountered in format string");
      out.push_back('}');
      continue;
    }
    if (c != '{') {
      out.push_back(c);
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out.push_back('{');
      ++i;
      continue;
    }
    size_t end = fmt.find('}', i);
    if (end == std::string_view::npos) {
      return absl::InvalidArgumentError("Single '{' encountered in format string");
    }
    std::string_view field = fmt.substr(i + 1, end - i - 1);
    if (field.find_first_of(":!.[") != std::string_view::npos) {
      return absl::UnimplementedError("format specs are not supported in str.format");
    }
    const Value* v = nullptr;
    if (field.empty() || std::all_of(field.begin(), field.end(), ::isdigit)) {
      size_t idx = field.empty() ? auto_index++ : std::stoul(std::string(field));
      if (idx >= args.positional.size()) {
        return absl::InvalidArgumentError("Replacement index out of range for positional args");
      }
      v = &args.positional[idx];
    } else {
      for (const auto& [k, x] : args.keyword) {
        if (k == field) v = &x;
      }
      if (v == nullptr) return absl::InvalidArgumentError(absl::StrCat("KeyError: '", Sv(field), "'"));
    }
    out += v->ToString();
    i = end;
  }
  return out;
}

absl::StatusOr<Value> StringMethod(Interpreter& interp, const Value& self, std::string_view name,
                                   CallArgs args) {
  const std::string& s = self.str();
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(name, std::move(args), {"chars"}));
    if (!a[0].is_undefined() && !a[0].is_none()) FERRY_RETURN_IF_ERROR(NeedString(name, a[0]));
    return Value::String(PyStrip(s, a[0], name[0] == 's' ? 'b' : name[0]));
  }
  if (name == "split" || name == "rsplit") {
    FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(name, std::move(args), {"sep", "maxsplit"}));
    int64_t maxsplit = a[1].is_undefined() ? -1 : a[1].as_int();
    if (a[0].is_undefined() || a[0].is_none()) {
      if (name == "rsplit" && maxsplit >= 0) {
        return absl::UnimplementedError("rsplit with maxsplit on whitespace is not supported");
      }
      return Value::List(SplitWhitespace(s, maxsplit));
    }
    FERRY_RETURN_IF_ERROR(NeedString(name, a[0]));
    const std::string& sep = a[0].str();
    if (sep.empty()) return absl::InvalidArgumentError("empty separator");
    std::vector<Value> parts;
    if (name == "split") {
      size_t start = 0;
      while (true) {
        size_t p = s.find(sep, start);
        if (p == std::string::npos || (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit)) {
          parts.push_back(Value::String(s.substr(start)));
          break;
        }
        parts.push_back(Value::String(s.substr(start, p - start)));
        start = p + sep.size();
      }
    } else {
      size_t end = s.size();
      while (true) {
        size_t p = end >= sep.size() ? s.rfind(sep, end - sep.size()) : std::string::npos;
        if (p == std::string::npos || (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit)) {
          parts.push_back(Value::String(s.substr(0, end)));
          break;
        }
        parts.push_back(Value::String(s.substr(p + sep.size(), end - p - sep.size())));
        end = p;
      }
      std::reverse(parts.begin(), parts.end());
    }
    FERRY_RETURN_IF_ERROR(interp.Step(static_cast<int64_t>(parts.size())));
    return Value::List(std::move(parts));
  }
  if (name == "splitlines") {
    std::vector<Value> lines;
    size_t start = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\n' || s[i] == '\r') {
        lines.push_back(Value::String(s.substr(start, i - start)));
        if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
        start = i + 1;
      }
    }
    if (start < s.size()) lines.push_back(Value::String(s.substr(start)));
    return Value::List(std::move(lines));
  }
  if (name == "startswith" || name == "endswith") {
    FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(name, std::move(args), {"prefix"}));
    std::vector<Value> options;
    if (a[0].is_tuple()) {
      options = a[0].list().items;
    } else {
      options.push_back(a[0]);
    }
    for (const Value& o : options) {
      FERRY_RETURN_IF_ERROR(NeedString(name, o));
      const std::string& p = o.str();
      bool hit = p.size() <= s.size() && (name == "startswith" ? s.compare(0, p.size(), p) == 0
                                                                : s.compare(s.size() - p.size(), p.size(), p) == 0);
      if (hit) return Value::Bool(true);
    }
    return Value::Bool(false);
  }
  if (name == "upper") return Value::String(PyUpper(s));
  if (name == "lower") return Value::String(PyLower(s));
  if (name == "title") return Value::String(PyTitle(s));
  if (name == "capitalize") {
    std::string out = PyLower(s);
    if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
    return Value::String(std::move(out));
  }
  if (name == "swapcase") {
    std::string out = s;
    for (char& c : out) {
      c = std::isupper(static_cast<unsigned char>(c)) ? std::tolower(c) : std::toupper(c);
    }
    return Value::String(std::move(out));
  }
  if (name == "replace") {
    FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(name, std::move(args), {"old", "new", "count"}));
    FERRY_RETURN_IF_ERROR(NeedString(name, a[0]));
    FERRY_RETURN_IF_ERROR(NeedString(name, a[1]));
    int64_t count = a[2].is_undefined() ? -1 : a[2].as_int();
    std::string out;
    const std::string& from = a[0].str();
    const std::string& to = a[1].str();
    if (from.empty()) {
      // Python inserts `to` between characters (and at both ends).
      std::vector<size_t> off = CodePointOffsets(s);
      int64_t done = 0;
      for (size_t k = 0; k + 1 < off.size(); ++k) {
        if (count < 0 || done < count) {
          out += to;
          ++done;
        }
        out.append(s, off[k], off[k + 1] - off[k]);
        FERRY_RETURN_IF_ERROR(interp.ChargeString(out.size()));
      }
      if (count < 0 || done < count) out += to;
    } else {
      size_t start = 0;
      int64_t done = 0;
      while (count < 0 || done < count) {
        size_t p = s.find(from, start);
        if (p == std::string::npos) break;
        out.append(s, start, p - start);
        out += to;
        start = p + from.size();
        ++done;
        if (out.size() > interp.options().limits.max_string_bytes) break;
      }
      out.append(s, start);
    }
    FERRY_RETURN_IF_ERROR(interp.ChargeString(out.size()));
    return Value::String(std::move(out));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "count") {
    FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(name, std::move(args), {"sub"}));
    FERRY_RETURN_IF_ERROR(NeedString(name, a[0]));
    const std::string& sub = a[0].str();
    if (name == "count") {
      if (sub.empty()) return Value::Int(static_cast<int64_t>(Utf8Length(s)) + 1);
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value::Int(n);
    }
    size_t p = name == "rfind" ? s.rfind(sub) : s.find(sub);
    if (p == std::string::npos) {
      if (name == "index") return absl::InvalidArgumentError("substring not found");
      return Value::Int(-1);
    }
    return Value::Int(CodePointIndex(s, p));
  }
  if (name == "join") {
    FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(name, std::move(args), {"iterable"}));
    FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(a[0]));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        return absl::InvalidArgumentError(absl::StrCat("sequence item ", i,
                                                       ": expected str instance, ",
                                                       items[i].TypeName(), " found"));
      }
      if (i) out += s;
      out += items[i].str();
      FERRY_RETURN_IF_ERROR(interp.ChargeString(out.size()));
    }
    return Value::String(std::move(out));
  }
  if (name == "format") {
    FERRY_ASSIGN_OR_RETURN(std::string out, PyFormat(s, args));
    FERRY_RETURN_IF_ERROR(interp.ChargeString(out.size()));
    return Value::String(std::move(out));
  }
  // The is* predicates (ASCII classes).
  if (s.empty()) return Value::Bool(false);
  auto all = [&](auto pred) {
    return Value::Bool(std::all_of(s.begin(), s.end(),
                                   [&](char c) { return pred(static_cast<unsigned char>(c)); }));
  };
  if (name == "isdigit" || name == "isnumeric" || name == "isdecimal") return all(::isdigit);
  if (name == "isalpha") return all(::isalpha);
  if (name == "isalnum") return all(::isalnum);
  if (name == "isspace") return all(::isspace);
  bool has_cased = std::any_of(s.begin(), s.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)); });
  if (name == "islower") return Value::Bool(has_cased && PyLower(s) == s);
  if (name == "isupper") return Value::Bool(has_cased && PyUpper(s) == s);
  return absl::InvalidArgumentError(absl::StrCat("str has no method ", Sv(name)));
}

// Whether `v` holds (directly or nested) the container `target`; appending
// such a value would make a cycle, which printing could never finish.
bool Reaches(const Value& v, const void* target, int depth) {
  if (depth > 64) return true;
  if (v.identity() == target && target != nullptr) return true;
  if (v.is_list()) {
    for (const Value& x : v.list().items) {
      if ((x.is_list() || x.is_dict() || x.is_namespace()) && Reaches(x, target, depth + 1)) return true;
    }
  } else if (v.is_dict() || v.is_namespace()) {
    for (const auto& [k, x] : v.dict().entries()) {
      if ((x.is_list() || x.is_dict() || x.is_namespace()) && Reaches(x, target, depth + 1)) return true;
    }
  }
  return false;
}

absl::StatusOr<Value> ListMethod(Interpreter& interp, const Value& self, std::string_view name,
                                 CallArgs args) {
  auto& items = self.list().items;
  if (self.is_tuple() && (name == "append" || name == "pop" || name == "extend")) {
    return absl::InvalidArgumentError(absl::StrCat("'tuple' object has no attribute '", Sv(name), "'"));
  }
  if (name == "append") {
    FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(name, std::move(args), {"object"}));
    if (Reaches(a[0], self.identity(), 0)) {
      return absl::InvalidArgumentError("appending a list to itself is not supported");
    }
    FERRY_RETURN_IF_ERROR(interp.CheckListSize(items.size() + 1));
    items.push_back(std::move(a[0]));
    return Value::None();
  }
  if (name == "extend") {
    FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(name, std::move(args), {"iterable"}));
    if (Reaches(a[0], self.identity(), 0) && a[0].identity() != self.identity()) {
      return absl::InvalidArgumentError("extending a list with itself is not supported");
    }
    FERRY_ASSIGN_OR_RETURN(std::vector<Value> more, interp.Iterate(a[0]));
    FERRY_RETURN_IF_ERROR(interp.CheckListSize(items.size() + more.size()));
    FERRY_RETURN_IF_ERROR(interp.Step(static_cast<int64_t>(more.size())));
    items.insert(items.end(), more.begin(), more.end());
    return Value::None();
  }
  if (name == "pop") {
    FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(name, std::move(args), {"index"}));
    if (items.empty()) return absl::InvalidArgumentError("pop from empty list");
    int64_t i = a[0].is_undefined() ? -1 : a[0].as_int();
    if (i < 0) i += static_cast<int64_t>(items.size());
    if (i < 0 || i >= static_cast<int64_t>(items.size())) {
      return absl::InvalidArgumentError("pop index out of range");
    }
    Value v = items[i];
    items.erase(items.begin() + i);
    return v;
  }
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(name, std::move(args), {"value"}));
  int64_t count = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!ValuesEqual(items[i], a[0])) continue;
    if (name == "index") return Value::Int(static_cast<int64_t>(i));
    ++count;
  }
  if (name == "index") return absl::InvalidArgumentError("value is not in list");
  return Value::Int(count);
}

absl::StatusOr<Value> DictMethod(const Value& self, std::string_view name, CallArgs args) {
  const DictData& d = self.dict();
  if (name == "get") {
    FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(name, std::move(args), {"key", "default"}));
    const Value* v = d.Find(a[0]);
    if (v) return *v;
    return a[1].is_undefined() ? Value::None() : a[1];
  }
  if (!args.positional.empty() || !args.keyword.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(name), "() takes no arguments"));
  }
  std::vector<Value> out;
  out.reserve(d.size());
  for (const auto& [k, v] : d.entries()) {
    if (name == "items") {
      out.push_back(Value::Tuple({k, v}));
    } else {
      out.push_back(name == "keys" ? k : v);
    }
  }
  return Value::List(std::move(out));
}

class BoundMethod : public Callable {
 public:
  BoundMethod(Value self, std::string name) : self_(std::move(self)), name_(std::move(name)) {}
  absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) override {
    if (self_.is_string()) return StringMethod(interp, self_, name_, std::move(args));
    if (self_.is_list()) return ListMethod(interp, self_, name_, std::move(args));
    return DictMethod(self_, name_, std::move(args));
  }
  std::string Describe() const override {
    return absl::StrCat("<built-in method ", name_, " of ", self_.TypeName(), " object>");
  }

 private:
  Value self_;
  std::string name_;
};

}  // namespace

bool HasMethod(const Value& obj, std::string_view name) {
  if (obj.is_string()) return StringMethods().contains(name);
  if (obj.is_list()) return IsListMethod(name);
  if (obj.is_dict()) return IsDictMethod(name);
  return false;
}

Value BindMethod(const Value& obj, std::string_view name) {
  return Value::Function(std::make_shared<BoundMethod>(obj, std::string(name)));
}

std::string PyStrip(std::string_view s, const Value& chars, char which) {
  std::vector<uint32_t> set;
  const bool whitespace = chars.is_undefined() || chars.is_none();
  if (!whitespace) {
    const std::string& c = chars.str();
    for (size_t i = 0; i < c.size();) set.push_back(DecodeUtf8(c, i));
  }
  auto strip_cp = [&](uint32_t cp) {
    return whitespace ? IsPySpace(cp) : std::find(set.begin(), set.end(), cp) != set.end();
  };
  std::vector<size_t> off = CodePointOffsets(s);
  size_t lo = 0, hi = off.size() - 1;  // code point range [lo, hi)
  auto cp_at = [&](size_t k) {
    size_t i = off[k];
    return DecodeUtf8(s, i);
  };
  if (which != 'r') {
    while (lo < hi && strip_cp(cp_at(lo))) ++lo;
  }
  if (which != 'l') {
    while (hi > lo && strip_cp(cp_at(hi - 1))) --hi;
  }
  return std::string(s.substr(off[lo], off[hi] - off[lo]));
}

std::string PyUpper(std::string_view s) { return MapCase(s, true); }

std::string PyLower(std::string_view s) { return MapCase(s, false); }

}  // namespace ferry::chat_template
