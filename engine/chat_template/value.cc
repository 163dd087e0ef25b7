#include "engine/chat_template/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "engine/chat_template/utf8.h"

namespace ferry::chat_template {

// ---------------------------------------------------------------- DictData

const Value* DictData::Find(const Value& key) const {
  absl::StatusOr<std::string> h = key.HashKey();
  if (!h.ok()) return nullptr;
  auto it = index_.find(*h);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

const Value* DictData::FindStr(std::string_view key) const {
  std::string h = "s";
  h.append(key);
  auto it = index_.find(h);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

absl::Status DictData::Set(Value key, Value value) {
  absl::StatusOr<std::string> h = key.HashKey();
  if (!h.ok()) return h.status();
  auto [it, inserted] = index_.try_emplace(*h, entries_.size());
  if (inserted) {
    entries_.emplace_back(std::move(key), std::move(value));
  } else {
    entries_[it->second].second = std::move(value);
  }
  return absl::OkStatus();
}

void DictData::SetStr(std::string_view key, Value value) {
  (void)Set(Value::String(std::string(key)), std::move(value));
}

bool DictData::Erase(const Value& key) {
  absl::StatusOr<std::string> h = key.HashKey();
  if (!h.ok()) return false;
  auto it = index_.find(*h);
  if (it == index_.end()) return false;
  entries_.erase(entries_.begin() + it->second);
  index_.clear();
  for (size_t i = 0; i < entries_.size(); ++i) index_[*entries_[i].first.HashKey()] = i;
  return true;
}

// ---------------------------------------------------------------- Value

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.data_ = b;
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.data_ = i;
  return v;
}

Value Value::Float(double d) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.data_ = d;
  return v;
}

Value Value::String(std::string s, bool markup) {
  Value v;
  v.kind_ = Kind::kString;
  v.markup_ = markup;
  v.data_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

Value Value::List(std::vector<Value> items) {
  Value v;
  v.kind_ = Kind::kList;
  auto l = std::make_shared<ListData>();
  l->items = std::move(items);
  v.data_ = std::move(l);
  return v;
}

Value Value::Tuple(std::vector<Value> items) {
  Value v = List(std::move(items));
  v.list().is_tuple = true;
  return v;
}

Value Value::Dict(std::shared_ptr<DictData> d) {
  Value v;
  v.kind_ = Kind::kDict;
  v.data_ = d ? std::move(d) : std::make_shared<DictData>();
  return v;
}

Value Value::Namespace(std::shared_ptr<DictData> d) {
  Value v = Dict(std::move(d));
  v.kind_ = Kind::kNamespace;
  return v;
}

Value Value::Function(std::shared_ptr<Callable> fn) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.data_ = std::move(fn);
  return v;
}

Value Value::FromJson(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null:
      return None();
    case nlohmann::ordered_json::value_t::boolean:
      return Bool(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Int(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Float(static_cast<double>(u));
      return Int(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Float(j.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return String(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(FromJson(e));
      return List(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      auto d = std::make_shared<DictData>();
      for (const auto& [k, e] : j.items()) d->SetStr(k, FromJson(e));
      return Dict(std::move(d));
    }
    default:
      return None();
  }
}

bool Value::is_tuple() const { return is_list() && list().is_tuple; }
bool Value::is_generator() const { return is_list() && list().is_generator; }

double Value::as_float() const {
  if (is_float()) return std::get<double>(data_);
  return static_cast<double>(as_int());
}

const void* Value::identity() const {
  switch (kind_) {
    case Kind::kString:
      return std::get<std::shared_ptr<const std::string>>(data_).get();
    case Kind::kList:
      return std::get<std::shared_ptr<ListData>>(data_).get();
    case Kind::kDict:
    case Kind::kNamespace:
      return std::get<std::shared_ptr<DictData>>(data_).get();
    case Kind::kCallable:
      return std::get<std::shared_ptr<Callable>>(data_).get();
    default:
      return nullptr;
  }
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return as_bool();
    case Kind::kInt:
      return as_int() != 0;
    case Kind::kFloat:
      return as_float() != 0.0;
    case Kind::kString:
      return !str().empty();
    case Kind::kList:
      return list().is_generator || !list().items.empty();
    case Kind::kDict:
      return dict().size() != 0;
    default:
      return true;
  }
}

std::string FormatFloat(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  // sci looks like "-1.2345e+05": split into sign, digits and exponent.
  std::string sign;
  size_t p = 0;
  if (sci[0] == '-') {
    sign = "-";
    p = 1;
  }
  size_t e_pos = sci.find('e');
  std::string digits;
  for (size_t i = p; i < e_pos; ++i) {
    if (sci[i] != '.') digits.push_back(sci[i]);
  }
  int exp = std::atoi(sci.c_str() + e_pos + 1);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  if (exp < -4 || exp >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof(eb), "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    return out + eb;
  }
  if (exp < 0) return sign + "0." + std::string(-exp - 1, '0') + digits;
  size_t int_len = static_cast<size_t>(exp) + 1;
  if (digits.size() <= int_len) return sign + digits + std::string(int_len - digits.size(), '0') + ".0";
  return sign + digits.substr(0, int_len) + "." + digits.substr(int_len);
}

namespace {

// Python's repr() of a str: single quotes unless the text has a single quote
// and no double quote; control characters escaped.
std::string ReprString(const std::string& s) {
  char quote = '\'';
  if (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) quote = '"';
  std::string out(1, quote);
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    uint32_t cp = DecodeUtf8(s, i);
    char buf[16];
    if (cp == static_cast<uint32_t>(quote) || cp == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(cp));
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad) {
      std::snprintf(buf, sizeof(buf), "\\x%02x", cp);
      out += buf;
    } else if ((cp >= 0x2028 && cp <= 0x2029) || (cp >= 0x200b && cp <= 0x200f) ||
               (cp >= 0x2060 && cp <= 0x2064) || cp == 0xfeff || (cp >= 0xd800 && cp <= 0xdfff)) {
      std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
      out += buf;
    } else {
      out.append(s, start, i - start);
    }
  }
  out.push_back(quote);
  return out;
}

}  // namespace

std::string Value::ToString() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "";
    case Kind::kString:
      return str();
    default:
      return Repr();
  }
}

std::string Value::Repr() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return as_bool() ? "True" : "False";
    case Kind::kInt:
      return absl::StrCat(as_int());
    case Kind::kFloat:
      return FormatFloat(as_float());
    case Kind::kString:
      return markup_ ? absl::StrCat("Markup(", ReprString(str()), ")") : ReprString(str());
    case Kind::kList: {
      const ListData& l = list();
      if (l.is_generator) return "<generator object>";
      std::string out = l.is_tuple ? "(" : "[";
      for (size_t i = 0; i < l.items.size(); ++i) {
        if (i) out += ", ";
        out += l.items[i].Repr();
      }
      if (l.is_tuple && l.items.size() == 1) out += ",";
      out += l.is_tuple ? ")" : "]";
      return out;
    }
    case Kind::kDict:
    case Kind::kNamespace: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, v] : dict().entries()) {
        if (!first) out += ", ";
        first = false;
        out += k.Repr() + ": " + v.Repr();
      }
      out += "}";
      return kind_ == Kind::kNamespace ? "<Namespace " + out + ">" : out;
    }
    case Kind::kCallable:
      return callable().Describe();
  }
  return "";
}

absl::StatusOr<std::string> Value::HashKey() const {
  switch (kind_) {
    case Kind::kUndefined:
      return std::string("U");
    case Kind::kNone:
      return std::string("N");
    case Kind::kBool:
    case Kind::kInt:
      return absl::StrCat("n", as_int());
    case Kind::kFloat: {
      double d = as_float();
      if (std::floor(d) == d && std::fabs(d) < 9.2e18) {
        return absl::StrCat("n", static_cast<int64_t>(d));
      }
      return "f" + FormatFloat(d);
    }
    case Kind::kString:
      return "s" + str();
    case Kind::kList:
      if (list().is_tuple) {
        std::string out = "t(";
        for (const Value& v : list().items) {
          absl::StatusOr<std::string> k = v.HashKey();
          if (!k.ok()) return k.status();
          out += absl::StrCat(k->size(), ":", *k);
        }
        return out + ")";
      }
      break;
    case Kind::kCallable:
    case Kind::kNamespace:
      return absl::StrCat("p", reinterpret_cast<uintptr_t>(identity()));
    default:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("unhashable type: '", TypeName(), "'"));
}

std::string Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return list().is_tuple ? "tuple" : "list";
    case Kind::kDict:
      return "dict";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kCallable:
      return "function";
  }
  return "object";
}

// ---------------------------------------------------------------- compare

bool ValuesEqual(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.str() == b.str();
    case Value::Kind::kList: {
      if (a.is_generator() || b.is_generator()) return a.identity() == b.identity();
      const ListData& la = a.list();
      const ListData& lb = b.list();
      if (la.is_tuple != lb.is_tuple || la.items.size() != lb.items.size()) return false;
      for (size_t i = 0; i < la.items.size(); ++i) {
        if (!ValuesEqual(la.items[i], lb.items[i])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      if (a.dict().size() != b.dict().size()) return false;
      for (const auto& [k, v] : a.dict().entries()) {
        const Value* other = b.dict().Find(k);
        if (other == nullptr || !ValuesEqual(v, *other)) return false;
      }
      return true;
    }
    default:
      return a.identity() == b.identity();
  }
}

absl::StatusOr<int> CompareValues(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      double x = a.as_float(), y = b.as_float();
      return x < y ? -1 : (x > y ? 1 : 0);
    }
    int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.is_string() && b.is_string()) {
    int c = a.str().compare(b.str());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
    const auto& x = a.list().items;
    const auto& y = b.list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (ValuesEqual(x[i], y[i])) continue;
      return CompareValues(x[i], y[i]);
    }
    return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
  }
  return absl::InvalidArgumentError(absl::StrCat("'<' not supported between instances of '",
                                                 a.TypeName(), "' and '", b.TypeName(), "'"));
}

// ---------------------------------------------------------------- JSON

namespace {

void JsonString(const std::string& s, bool ensure_ascii, std::string& out) {
  out.push_back('"');
  char buf[16];
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t start = i;
      uint32_t cp = DecodeUtf8(s, i);
      if (!ensure_ascii) {
        out.append(s, start, i - start);
      } else if (cp >= 0x10000) {
        cp -= 0x10000;
        std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
        out += buf;
      } else {
        std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
        out += buf;
      }
      continue;
    }
    ++i;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20 || (ensure_ascii && c == 0x7f)) {
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

std::string JsonFloat(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  return FormatFloat(d);
}

class JsonWriter {
 public:
  explicit JsonWriter(const JsonOptions& o)
      : o_(o),
        item_sep_(o.item_separator.value_or(o.indent < 0 ? ", " : ",")),
        key_sep_(o.key_separator.value_or(": ")) {}

  absl::Status Write(const Value& v, int depth) {
    if (depth > 512) return absl::InvalidArgumentError("tojson: value nested too deeply");
    switch (v.kind()) {
      case Value::Kind::kNone:
        out += "null";
        return absl::OkStatus();
      case Value::Kind::kBool:
        out += v.as_bool() ? "true" : "false";
        return absl::OkStatus();
      case Value::Kind::kInt:
        out += absl::StrCat(v.as_int());
        return absl::OkStatus();
      case Value::Kind::kFloat:
        out += JsonFloat(v.as_float());
        return absl::OkStatus();
      case Value::Kind::kString:
        JsonString(v.str(), o_.ensure_ascii, out);
        return absl::OkStatus();
      case Value::Kind::kList:
        if (!v.is_generator()) return WriteList(v.list().items, depth);
        break;
      case Value::Kind::kDict:
        return WriteDict(v.dict(), depth);
      default:
        break;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "Object of type ", v.is_generator() ? "generator" : v.TypeName(),
        " is not JSON serializable"));
  }

  std::string out;

 private:
  void Newline(int level) {
    if (o_.indent < 0) return;
    out.push_back('\n');
    out.append(static_cast<size_t>(o_.indent) * level, ' ');
  }

  absl::Status WriteList(const std::vector<Value>& items, int depth) {
    if (items.empty()) {
      out += "[]";
      return absl::OkStatus();
    }
    out.push_back('[');
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += item_sep_;
      Newline(depth + 1);
      absl::Status s = Write(items[i], depth + 1);
      if (!s.ok()) return s;
    }
    Newline(depth);
    out.push_back(']');
    return absl::OkStatus();
  }

  absl::Status WriteKey(const Value& k) {
    switch (k.kind()) {
      case Value::Kind::kString:
        JsonString(k.str(), o_.ensure_ascii, out);
        return absl::OkStatus();
      case Value::Kind::kNone:
        out += "\"null\"";
        return absl::OkStatus();
      case Value::Kind::kBool:
        out += k.as_bool() ? "\"true\"" : "\"false\"";
        return absl::OkStatus();
      case Value::Kind::kInt:
        out += absl::StrCat("\"", k.as_int(), "\"");
        return absl::OkStatus();
      case Value::Kind::kFloat:
        out += "\"" + JsonFloat(k.as_float()) + "\"";
        return absl::OkStatus();
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("keys must be str, int, float, bool or None, not ", k.TypeName()));
    }
  }

  absl::Status WriteDict(const DictData& d, int depth) {
    if (d.size() == 0) {
      out += "{}";
      return absl::OkStatus();
    }
    std::vector<const std::pair<Value, Value>*> entries;
    for (const auto& e : d.entries()) entries.push_back(&e);
    if (o_.sort_keys) {
      absl::Status error;
      std::stable_sort(entries.begin(), entries.end(), [&](auto* a, auto* b) {
        absl::StatusOr<int> c = CompareValues(a->first, b->first);
        if (!c.ok()) error = c.status();
        return c.ok() && *c < 0;
      });
      if (!error.ok()) return error;
    }
    out.push_back('{');
    bool first = true;
    for (const auto* e : entries) {
      if (!first) out += item_sep_;
      first = false;
      Newline(depth + 1);
      absl::Status s = WriteKey(e->first);
      if (!s.ok()) return s;
      out += key_sep_;
      s = Write(e->second, depth + 1);
      if (!s.ok()) return s;
    }
    Newline(depth);
    out.push_back('}');
    return absl::OkStatus();
  }

  const JsonOptions& o_;
  std::string item_sep_;
  std::string key_sep_;
};

}  // namespace

absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options) {
  JsonWriter w(options);
  absl::Status s = w.Write(v, 0);
  if (!s.ok()) return s;
  return std::move(w.out);
}

}  // namespace ferry::chat_template
