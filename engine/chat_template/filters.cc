// The builtin filters of jinja2 (jinja2/filters.py), plus transformers' tojson.
#include "engine/chat_template/filters.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/chat_template/builtins.h"
#include "engine/chat_template/interpreter.h"
#include "engine/chat_template/methods.h"
#include "engine/chat_template/operators.h"
#include "engine/chat_template/utf8.h"

namespace ferry::chat_template {
namespace {

using FilterFn = absl::StatusOr<Value> (*)(Interpreter&, Value, CallArgs);

Value Generator(std::vector<Value> items) {
  Value v = Value::List(std::move(items));
  v.list().is_generator = true;
  return v;
}

// str(value) that keeps Markup, as jinja2's soft_str does.
Value SoftStr(const Value& v) {
  if (v.is_string()) return v;
  return Value::String(v.ToString());
}

Value MapString(const Value& v, std::string (*fn)(std::string_view)) {
  Value s = SoftStr(v);
  return Value::String(fn(s.str()), s.is_markup());
}

bool ArgTrue(const Value& v) { return !v.is_undefined() && v.Truthy(); }

// The sort key jinja2 uses: strings lower-cased unless case_sensitive.
Value SortKey(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value::String(PyLower(v.str()));
  return v;
}

absl::Status SortValues(std::vector<std::pair<Value, Value>>& keyed, bool reverse) {
  absl::Status error;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    if (!error.ok()) return false;
    absl::StatusOr<int> c =
        reverse ? CompareValues(b.first, a.first) : CompareValues(a.first, b.first);
    if (!c.ok()) {
      error = c.status();
      return false;
    }
    return *c < 0;
  });
  return error;
}

absl::StatusOr<Value> Attribute(Interpreter& interp, const Value& item, const Value& attribute) {
  if (attribute.is_int()) return interp.GetItem(item, attribute);
  return interp.GetAttrPath(item, attribute.ToString());
}

// ---------------------------------------------------------------- strings

std::string Capitalize(std::string_view s) {
  std::string out = PyLower(s);
  if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
  return out;
}

// jinja2's title: capitalizes after runs of whitespace, "-", "(", "{", "[", "<".
std::string JinjaTitle(std::string_view s) {
  std::string out;
  bool at_start = true;
  for (char c : s) {
    bool sep = std::isspace(static_cast<unsigned char>(c)) || c == '-' || c == '(' || c == '{' ||
               c == '[' || c == '<';
    if (sep) {
      out.push_back(c);
      at_start = true;
    } else {
      out.push_back(at_start ? std::toupper(static_cast<unsigned char>(c))
                             : std::tolower(static_cast<unsigned char>(c)));
      at_start = false;
    }
  }
  return out;
}

// Python's str.splitlines() boundaries.
std::vector<std::string> SplitLines(const std::string& s) {
  std::vector<std::string> lines;
  size_t start = 0, i = 0;
  while (i < s.size()) {
    size_t next = i;
    uint32_t cp = DecodeUtf8(s, next);
    bool brk = cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || (cp >= 0x1c && cp <= 0x1e) ||
               cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (brk) {
      lines.push_back(s.substr(start, i - start));
      if (cp == '\r' && next < s.size() && s[next] == '\n') ++next;
      start = next;
    }
    i = next;
  }
  if (start < s.size()) lines.push_back(s.substr(start));
  return lines;
}

absl::StatusOr<Value> Indent(Interpreter& interp, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("indent", std::move(args), {"width", "first", "blank"}));
  std::string pad;
  if (a[0].is_string()) {
    pad = a[0].str();
  } else {
    int64_t w = a[0].is_undefined() ? 4 : a[0].as_int();
    pad.assign(static_cast<size_t>(std::clamp<int64_t>(w, 0, 1 << 16)), ' ');
  }
  std::string s = input.ToString() + "\n";
  std::vector<std::string> lines = SplitLines(s);
  std::string out;
  if (ArgTrue(a[2])) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) out += "\n" + pad;
      out += lines[i];
    }
  } else {
    out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += pad;
      out += lines[i];
    }
  }
  if (ArgTrue(a[1])) out = pad + out;
  FERRY_RETURN_IF_ERROR(interp.ChargeString(out.size()));
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Replace(Interpreter& interp, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("replace", std::move(args), {"old", "new", "count"}));
  CallArgs call;
  call.positional = {Value::String(a[0].ToString()), Value::String(a[1].ToString())};
  if (!a[2].is_undefined() && !a[2].is_none()) call.positional.push_back(a[2]);
  Value s = Value::String(input.ToString());
  return interp.Call(BindMethod(s, "replace"), std::move(call));
}

absl::StatusOr<Value> ToJsonFilter(Interpreter& interp, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("tojson", std::move(args),
                                          {"ensure_ascii", "indent", "separators", "sort_keys"}));
  JsonOptions options;
  options.ensure_ascii = ArgTrue(a[0]);
  if (a[1].is_int()) options.indent = static_cast<int>(std::clamp<int64_t>(a[1].as_int(), 0, 64));
  if (a[1].is_string()) return absl::UnimplementedError("tojson: string indent is not supported");
  if (a[2].is_list() && a[2].list().items.size() == 2) {
    options.item_separator = a[2].list().items[0].ToString();
    options.key_separator = a[2].list().items[1].ToString();
  }
  options.sort_keys = ArgTrue(a[3]);
  FERRY_ASSIGN_OR_RETURN(std::string out, ToJson(input, options));
  FERRY_RETURN_IF_ERROR(interp.ChargeString(out.size()));
  return Value::String(std::move(out));
}

// ---------------------------------------------------------------- numbers

// Python's float(str): surrounding whitespace allowed, "inf"/"nan" accepted.
std::optional<double> ParseFloat(std::string s) {
  s = PyStrip(s, Value(), 'b');
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  return d;
}

std::optional<int64_t> ParseInt(std::string s, int base) {
  s = PyStrip(s, Value(), 'b');
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  if (s.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, base);
  if (end != s.c_str() + s.size() || errno != 0) return std::nullopt;
  return v;
}

absl::StatusOr<Value> IntFilter(Interpreter&, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("int", std::move(args), {"default", "base"}));
  Value dflt = a[0].is_undefined() ? Value::Int(0) : a[0];
  int base = a[1].is_undefined() ? 10 : static_cast<int>(a[1].as_int());
  if (input.is_undefined()) return absl::InvalidArgumentError("int() of an undefined value");
  if (input.is_int() || input.is_bool()) return Value::Int(input.as_int());
  if (input.is_float()) {
    double d = input.as_float();
    if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return dflt;
    return Value::Int(static_cast<int64_t>(d));
  }
  if (input.is_string()) {
    if (auto v = ParseInt(input.str(), base)) return Value::Int(*v);
    if (auto d = ParseFloat(input.str()); d && std::isfinite(*d) && std::fabs(*d) < 9.2e18) {
      return Value::Int(static_cast<int64_t>(*d));
    }
  }
  return dflt;
}

absl::StatusOr<Value> FloatFilter(Interpreter&, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("float", std::move(args), {"default"}));
  Value dflt = a[0].is_undefined() ? Value::Float(0.0) : a[0];
  if (input.is_undefined()) return absl::InvalidArgumentError("float() of an undefined value");
  if (input.is_number()) return Value::Float(input.as_float());
  if (input.is_string()) {
    if (auto d = ParseFloat(input.str())) return Value::Float(*d);
  }
  return dflt;
}

absl::StatusOr<Value> Round(Interpreter&, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("round", std::move(args), {"precision", "method"}));
  int64_t precision = a[0].is_undefined() ? 0 : a[0].as_int();
  std::string method = a[1].is_undefined() ? "common" : a[1].ToString();
  if (!input.is_number()) return absl::InvalidArgumentError("round() of a non-number");
  if (method != "common" && method != "floor" && method != "ceil") {
    return absl::InvalidArgumentError("method must be common, ceil or floor");
  }
  if (method == "common" && !input.is_float()) return Value::Int(input.as_int());
  double scale = std::pow(10.0, static_cast<double>(std::clamp<int64_t>(precision, -300, 300)));
  double x = input.as_float() * scale;
  double r = method == "floor" ? std::floor(x) : method == "ceil" ? std::ceil(x) : std::nearbyint(x);
  return Value::Float(r / scale);
}

// ---------------------------------------------------------------- sequences

absl::StatusOr<Value> Join(Interpreter& interp, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("join", std::move(args), {"d", "attribute"}));
  std::string sep = a[0].is_undefined() ? "" : a[0].ToString();
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(input));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (!a[1].is_undefined()) {
      FERRY_ASSIGN_OR_RETURN(item, Attribute(interp, item, a[1]));
    }
    if (i) out += sep;
    out += item.ToString();
    FERRY_RETURN_IF_ERROR(interp.ChargeString(out.size()));
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Map(Interpreter& interp, Value input, CallArgs args) {
  if (!input.Truthy()) return Generator({});  // jinja2 maps only a truthy input
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(input));
  std::vector<Value> out;
  const Value* attribute = nullptr;
  const Value* dflt = nullptr;
  for (const auto& [k, v] : args.keyword) {
    if (k == "attribute") attribute = &v;
    if (k == "default") dflt = &v;
  }
  if (attribute != nullptr) {
    for (const Value& item : items) {
      FERRY_ASSIGN_OR_RETURN(Value v, Attribute(interp, item, *attribute));
      out.push_back(v.is_undefined() && dflt ? *dflt : v);
    }
    return Generator(std::move(out));
  }
  if (args.positional.empty()) return absl::InvalidArgumentError("map requires a filter argument");
  std::string filter = args.positional[0].ToString();
  if (!IsKnownFilter(filter)) return absl::InvalidArgumentError(absl::StrCat("No filter named '", filter, "'."));
  for (const Value& item : items) {
    CallArgs call;
    call.positional.assign(args.positional.begin() + 1, args.positional.end());
    call.keyword = args.keyword;
    FERRY_ASSIGN_OR_RETURN(Value v, ApplyFilter(interp, filter, item, std::move(call)));
    out.push_back(std::move(v));
  }
  return Generator(std::move(out));
}

// select / reject / selectattr / rejectattr.
absl::StatusOr<Value> SelectOrReject(Interpreter& interp, Value input, CallArgs args, bool select,
                                     bool by_attr) {
  if (!input.Truthy()) return Generator({});  // jinja2 filters only a truthy input
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(input));
  std::vector<Value> rest = std::move(args.positional);
  Value attribute;
  if (by_attr) {
    if (rest.empty()) return absl::InvalidArgumentError("Missing parameter for attribute name");
    attribute = rest[0];
    rest.erase(rest.begin());
  }
  std::string test;
  if (!rest.empty()) {
    test = rest[0].ToString();
    rest.erase(rest.begin());
    if (!IsKnownTest(test)) return absl::InvalidArgumentError(absl::StrCat("No test named '", test, "'."));
  }
  std::vector<Value> out;
  for (const Value& item : items) {
    Value subject = item;
    if (by_attr) {
      FERRY_ASSIGN_OR_RETURN(subject, Attribute(interp, item, attribute));
    }
    bool pass;
    if (test.empty()) {
      pass = subject.Truthy();
    } else {
      CallArgs call;
      call.positional = rest;
      call.keyword = args.keyword;
      FERRY_ASSIGN_OR_RETURN(pass, ApplyTest(interp, test, subject, std::move(call)));
    }
    if (pass == select) out.push_back(item);
  }
  return Generator(std::move(out));
}

absl::StatusOr<Value> Sort(Interpreter& interp, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("sort", std::move(args),
                                          {"reverse", "case_sensitive", "attribute"}));
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(input));
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : items) {
    Value key = SortKey(item, ArgTrue(a[1]));
    if (!a[2].is_undefined() && !a[2].is_none()) {
      FERRY_ASSIGN_OR_RETURN(key, Attribute(interp, item, a[2]));
      // jinja2 sorts by a list of attributes, and list comparison checks
      // equality first, so equal (even undefined) keys compare fine.
      key = Value::List({SortKey(key, ArgTrue(a[1]))});
    }
    keyed.emplace_back(std::move(key), std::move(item));
  }
  FERRY_RETURN_IF_ERROR(SortValues(keyed, ArgTrue(a[0])));
  std::vector<Value> out;
  for (auto& [k, v] : keyed) out.push_back(std::move(v));
  return Value::List(std::move(out));
}

absl::StatusOr<Value> DictSort(Interpreter&, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("dictsort", std::move(args),
                                          {"case_sensitive", "by", "reverse"}));
  if (!input.is_dict()) return absl::InvalidArgumentError("dictsort expects a mapping");
  bool by_value = a[1].is_string() && a[1].str() == "value";
  std::vector<std::pair<Value, Value>> keyed;
  for (const auto& [k, v] : input.dict().entries()) {
    keyed.emplace_back(SortKey(by_value ? v : k, ArgTrue(a[0])), Value::Tuple({k, v}));
  }
  FERRY_RETURN_IF_ERROR(SortValues(keyed, ArgTrue(a[2])));
  std::vector<Value> out;
  for (auto& [k, v] : keyed) out.push_back(std::move(v));
  return Value::List(std::move(out));
}

absl::StatusOr<Value> Unique(Interpreter& interp, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("unique", std::move(args), {"case_sensitive", "attribute"}));
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(input));
  auto seen = std::make_shared<DictData>();
  std::vector<Value> out;
  for (Value& item : items) {
    Value key = item;
    if (!a[1].is_undefined() && !a[1].is_none()) {
      FERRY_ASSIGN_OR_RETURN(key, Attribute(interp, item, a[1]));
    }
    key = SortKey(key, ArgTrue(a[0]));
    if (seen->Find(key) != nullptr) continue;
    FERRY_RETURN_IF_ERROR(seen->Set(key, Value::None()));
    out.push_back(std::move(item));
  }
  return Generator(std::move(out));
}

absl::StatusOr<Value> MinMax(Interpreter& interp, Value input, CallArgs args, bool want_max) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs(want_max ? "max" : "min", std::move(args),
                                          {"case_sensitive", "attribute"}));
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(input));
  if (items.empty()) return Value();
  Value best, best_key;
  for (size_t i = 0; i < items.size(); ++i) {
    Value key = items[i];
    if (!a[1].is_undefined() && !a[1].is_none()) {
      FERRY_ASSIGN_OR_RETURN(key, Attribute(interp, items[i], a[1]));
    }
    key = SortKey(key, ArgTrue(a[0]));
    if (i > 0) {
      FERRY_ASSIGN_OR_RETURN(int c, CompareValues(key, best_key));
      if (want_max ? c <= 0 : c >= 0) continue;
    }
    best = items[i];
    best_key = key;
  }
  return best;
}

absl::StatusOr<Value> Sum(Interpreter& interp, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("sum", std::move(args), {"attribute", "start"}));
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(input));
  Value total = a[1].is_undefined() ? Value::Int(0) : a[1];
  for (const Value& item : items) {
    Value v = item;
    if (!a[0].is_undefined() && !a[0].is_none()) {
      FERRY_ASSIGN_OR_RETURN(v, Attribute(interp, item, a[0]));
    }
    FERRY_ASSIGN_OR_RETURN(total, BinaryOp(interp, "+", total, v));
  }
  return total;
}

absl::StatusOr<Value> Batch(Interpreter& interp, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("batch", std::move(args), {"linecount", "fill_with"}));
  if (!a[0].is_int() || a[0].as_int() <= 0) {
    return absl::InvalidArgumentError("batch needs a positive line count");
  }
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(input));
  size_t n = static_cast<size_t>(a[0].as_int());
  std::vector<Value> out;
  for (size_t i = 0; i < items.size(); i += n) {
    std::vector<Value> row(items.begin() + i, items.begin() + std::min(items.size(), i + n));
    if (!a[1].is_undefined() && !a[1].is_none()) {
      while (row.size() < n) row.push_back(a[1]);
    }
    out.push_back(Value::List(std::move(row)));
  }
  return Generator(std::move(out));
}

absl::StatusOr<Value> First(Interpreter& interp, Value input, CallArgs) {
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(input));
  return items.empty() ? Value() : items.front();
}

absl::StatusOr<Value> Last(Interpreter& interp, Value input, CallArgs) {
  if (input.is_generator() || input.is_undefined()) {
    return absl::InvalidArgumentError("last() needs a reversible sequence");
  }
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(input));
  return items.empty() ? Value() : items.back();
}

absl::StatusOr<Value> Reverse(Interpreter& interp, Value input, CallArgs) {
  if (input.is_string()) {
    return SliceValue(input, std::nullopt, std::nullopt, -1);
  }
  FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, interp.Iterate(input));
  std::reverse(items.begin(), items.end());
  return input.is_list() && !input.is_generator() ? Value::List(std::move(items))
                                                  : Generator(std::move(items));
}

absl::StatusOr<Value> Items(Interpreter&, Value input, CallArgs) {
  if (input.is_undefined()) return Generator({});
  if (!input.is_dict()) {
    return absl::InvalidArgumentError("Can only get item pairs from a mapping.");
  }
  std::vector<Value> out;
  for (const auto& [k, v] : input.dict().entries()) out.push_back(Value::Tuple({k, v}));
  return Generator(std::move(out));
}

absl::StatusOr<Value> Default(Interpreter&, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("default", std::move(args), {"default_value", "boolean"}));
  Value dflt = a[0].is_undefined() ? Value::String("") : a[0];
  if (input.is_undefined() || (ArgTrue(a[1]) && !input.Truthy())) return dflt;
  return input;
}

absl::StatusOr<Value> Center(Interpreter&, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("center", std::move(args), {"width"}));
  std::string s = input.ToString();
  int64_t width = std::min<int64_t>(a[0].is_undefined() ? 80 : a[0].as_int(), 1 << 20);
  int64_t len = static_cast<int64_t>(Utf8Length(s));
  if (width <= len) return Value::String(s);
  int64_t pad = width - len;
  // CPython puts the odd extra space on the left when width is odd.
  int64_t left = pad / 2 + (pad & width & 1);
  return Value::String(std::string(left, ' ') + s + std::string(pad - left, ' '));
}

// jinja2's do_truncate (leeway from the default policy, 5).
absl::StatusOr<Value> Truncate(Interpreter&, Value input, CallArgs args) {
  FERRY_ASSIGN_OR_RETURN(auto a, BindArgs("truncate", std::move(args),
                                          {"length", "killwords", "end", "leeway"}));
  const std::string s = input.ToString();
  for (int k : {0, 3}) {
    if (!a[k].is_undefined() && !a[k].is_int() && !a[k].is_bool()) {
      return absl::InvalidArgumentError("truncate: length and leeway must be integers");
    }
  }
  const int64_t length = a[0].is_undefined() ? 255 : a[0].as_int();
  const bool killwords = !a[1].is_undefined() && a[1].Truthy();
  const std::string end = a[2].is_undefined() ? "..." : a[2].ToString();
  const int64_t leeway = a[3].is_undefined() ? 5 : a[3].as_int();
  const int64_t end_len = static_cast<int64_t>(Utf8Length(end));
  if (length < end_len) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected length >= ", end_len, ", got ", length));
  }
  if (leeway < 0) return absl::InvalidArgumentError(absl::StrCat("expected leeway >= 0, got ", leeway));
  const std::vector<size_t> offsets = CodePointOffsets(s);
  const int64_t len = static_cast<int64_t>(offsets.size()) - 1;
  if (len <= length + leeway) return Value::String(s);
  std::string head = s.substr(0, offsets[static_cast<size_t>(length - end_len)]);
  if (!killwords) {
    const size_t space = head.rfind(' ');
    if (space != std::string::npos) head.resize(space);
  }
  return Value::String(head + end);
}

absl::StatusOr<Value> WordCount(Interpreter&, Value input, CallArgs) {
  std::string s = input.ToString();
  int64_t n = 0;
  bool in_word = false;
  for (unsigned char c : s) {
    bool w = std::isalnum(c) || c == '_' || c >= 0x80;
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::Int(n);
}

const absl::flat_hash_map<std::string_view, FilterFn>& Filters() {
  static const auto* kFilters = new absl::flat_hash_map<std::string_view, FilterFn>{
      {"abs",
       [](Interpreter&, Value v, CallArgs) -> absl::StatusOr<Value> {
         if (v.is_float()) return Value::Float(std::fabs(v.as_float()));
         if (v.is_int() || v.is_bool()) {
           if (v.as_int() == INT64_MIN) return absl::InvalidArgumentError("integer overflow");
           return Value::Int(std::llabs(v.as_int()));
         }
         return absl::InvalidArgumentError(
             absl::StrCat("bad operand type for abs(): '", v.TypeName(), "'"));
       }},
      {"attr",
       [](Interpreter& i, Value v, CallArgs a) -> absl::StatusOr<Value> {
         FERRY_ASSIGN_OR_RETURN(auto b, BindArgs("attr", std::move(a), {"name"}));
         // Python attributes only: dict keys are not attributes here.
         if (v.is_dict() && !HasMethod(v, b[0].ToString())) return Value();
         return i.GetAttr(v, b[0].ToString());
       }},
      {"batch", Batch},
      {"capitalize",
       [](Interpreter&, Value v, CallArgs) -> absl::StatusOr<Value> {
         return MapString(v, Capitalize);
       }},
      {"center", Center},
      {"count",
       [](Interpreter&, Value v, CallArgs) -> absl::StatusOr<Value> {
         FERRY_ASSIGN_OR_RETURN(int64_t n, Length(v));
         return Value::Int(n);
       }},
      {"default", Default},
      {"dictsort", DictSort},
      {"escape",
       [](Interpreter&, Value v, CallArgs) -> absl::StatusOr<Value> {
         if (v.is_markup()) return v;
         return Value::String(HtmlEscape(v.ToString()), true);
       }},
      {"first", First},
      {"float", FloatFilter},
      {"format",
       [](Interpreter& i, Value v, CallArgs a) -> absl::StatusOr<Value> {
         // jinja2's do_format: str(value) % args, or % kwargs as a mapping.
         if (!a.positional.empty() && !a.keyword.empty()) {
           return absl::InvalidArgumentError(
               "can't handle positional and keyword arguments at the same time");
         }
         Value args = Value::Tuple(std::move(a.positional));
         if (!a.keyword.empty()) {
           auto d = std::make_shared<DictData>();
           for (auto& [k, val] : a.keyword) d->SetStr(k, std::move(val));
           args = Value::Dict(std::move(d));
         }
         return PercentFormat(i, SoftStr(v).ToString(), args);
       }},
      {"forceescape",
       [](Interpreter&, Value v, CallArgs) -> absl::StatusOr<Value> {
         return Value::String(HtmlEscape(v.ToString()), true);
       }},
      {"indent", Indent},
      {"int", IntFilter},
      {"items", Items},
      {"join", Join},
      {"last", Last},
      {"length",
       [](Interpreter&, Value v, CallArgs) -> absl::StatusOr<Value> {
         FERRY_ASSIGN_OR_RETURN(int64_t n, Length(v));
         return Value::Int(n);
       }},
      {"list",
       [](Interpreter& i, Value v, CallArgs) -> absl::StatusOr<Value> {
         FERRY_ASSIGN_OR_RETURN(std::vector<Value> items, i.Iterate(v));
         return Value::List(std::move(items));
       }},
      {"lower",
       [](Interpreter&, Value v, CallArgs) -> absl::StatusOr<Value> {
         return MapString(v, PyLower);
       }},
      {"map", Map},
      {"max", [](Interpreter& i, Value v,
                 CallArgs a) { return MinMax(i, std::move(v), std::move(a), true); }},
      {"min", [](Interpreter& i, Value v,
                 CallArgs a) { return MinMax(i, std::move(v), std::move(a), false); }},
      {"reject",
       [](Interpreter& i, Value v, CallArgs a) {
         return SelectOrReject(i, std::move(v), std::move(a), false, false);
       }},
      {"rejectattr",
       [](Interpreter& i, Value v, CallArgs a) {
         return SelectOrReject(i, std::move(v), std::move(a), false, true);
       }},
      {"replace", Replace},
      {"reverse", Reverse},
      {"round", Round},
      {"safe",
       [](Interpreter&, Value v, CallArgs) -> absl::StatusOr<Value> {
         return Value::String(v.ToString(), true);
       }},
      {"select",
       [](Interpreter& i, Value v, CallArgs a) {
         return SelectOrReject(i, std::move(v), std::move(a), true, false);
       }},
      {"selectattr",
       [](Interpreter& i, Value v, CallArgs a) {
         return SelectOrReject(i, std::move(v), std::move(a), true, true);
       }},
      {"sort", Sort},
      {"string",
       [](Interpreter&, Value v, CallArgs) -> absl::StatusOr<Value> { return SoftStr(v); }},
      {"sum", Sum},
      {"title",
       [](Interpreter&, Value v, CallArgs) -> absl::StatusOr<Value> {
         return MapString(v, JinjaTitle);
       }},
      {"tojson", ToJsonFilter},
      {"trim",
       [](Interpreter&, Value v, CallArgs a) -> absl::StatusOr<Value> {
         FERRY_ASSIGN_OR_RETURN(auto b, BindArgs("trim", std::move(a), {"chars"}));
         Value s = SoftStr(v);
         return Value::String(PyStrip(s.str(), b[0], 'b'), s.is_markup());
       }},
      {"truncate", Truncate},
      {"unique", Unique},
      {"upper",
       [](Interpreter&, Value v, CallArgs) -> absl::StatusOr<Value> {
         return MapString(v, PyUpper);
       }},
      {"wordcount", WordCount},
  };
  return *kFilters;
}

std::string_view CanonicalName(std::string_view name) {
  if (name == "d") return "default";
  if (name == "e") return "escape";
  return name;
}

}  // namespace

absl::StatusOr<int64_t> Length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return static_cast<int64_t>(Utf8Length(v.str()));
    case Value::Kind::kList:
      if (v.is_generator()) break;
      return static_cast<int64_t>(v.list().items.size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(v.dict().size());
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("object of type '", v.is_generator() ? "generator" : v.TypeName(),
                   "' has no len()"));
}

bool IsKnownFilter(std::string_view name) { return Filters().contains(CanonicalName(name)); }

absl::StatusOr<Value> ApplyFilter(Interpreter& interp, std::string_view name, Value input,
                                  CallArgs args) {
  FERRY_RETURN_IF_ERROR(interp.Step());
  auto it = Filters().find(CanonicalName(name));
  if (it == Filters().end()) {
    return absl::InvalidArgumentError(absl::StrCat("No filter named '", Sv(name), "'."));
  }
  return it->second(interp, std::move(input), std::move(args));
}

}  // namespace ferry::chat_template
