// Runtime values of the template language, with Python semantics: printing,
// truthiness, equality, ordering and JSON output match what CPython and
// jinja2 produce, so rendered prompts are byte-identical to transformers'.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace ferry::chat_template {

class Value;
class Interpreter;

struct ListData;
class DictData;
class Callable;

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,  // namespace(): a dict whose entries read as attributes
    kCallable,
  };

  Value() = default;  // undefined
  static Value None();
  static Value Bool(bool b);
  static Value Int(int64_t i);
  static Value Float(double d);
  // `markup` marks jinja2's Markup strings (from |safe, |escape): adding a
  // plain string to one HTML-escapes the plain string.
  static Value String(std::string s, bool markup = false);
  static Value List(std::vector<Value> items = {});
  static Value Tuple(std::vector<Value> items);
  static Value Dict(std::shared_ptr<DictData> d = nullptr);
  static Value Namespace(std::shared_ptr<DictData> d = nullptr);
  static Value Function(std::shared_ptr<Callable> fn);
  static Value FromJson(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  // bool counts as a number, as in Python.
  bool is_number() const { return is_bool() || is_int() || is_float(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const;
  bool is_generator() const;
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_callable() const { return kind_ == Kind::kCallable; }
  bool is_markup() const { return markup_; }

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const { return is_bool() ? static_cast<int64_t>(as_bool()) : std::get<int64_t>(data_); }
  double as_float() const;  // any number
  const std::string& str() const { return *std::get<std::shared_ptr<const std::string>>(data_); }
  ListData& list() const { return *std::get<std::shared_ptr<ListData>>(data_); }
  DictData& dict() const { return *std::get<std::shared_ptr<DictData>>(data_); }
  const std::shared_ptr<DictData>& dict_ptr() const {
    return std::get<std::shared_ptr<DictData>>(data_);
  }
  Callable& callable() const { return *std::get<std::shared_ptr<Callable>>(data_); }
  // Identity for `is sameas` and for namespaces/callables in `==`.
  const void* identity() const;

  // Python's bool(x).
  bool Truthy() const;
  // Python's str(x); undefined prints as "".
  std::string ToString() const;
  // Python's repr(x).
  std::string Repr() const;
  // The key under which a dict stores this value; fails for unhashable values.
  absl::StatusOr<std::string> HashKey() const;
  // jinja2's name for the type in error messages ("dict object").
  std::string TypeName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool markup_ = false;
  std::variant<std::monostate, bool, int64_t, double, std::shared_ptr<const std::string>,
               std::shared_ptr<ListData>, std::shared_ptr<DictData>, std::shared_ptr<Callable>>
      data_;
};

struct ListData {
  std::vector<Value> items;
  bool is_tuple = false;  // only changes how it prints: (1, 2)
  // jinja2's select/map/items filters return generators: always truthy,
  // without len() or indexing. Only iteration treats them as lists.
  bool is_generator = false;
};

// An insertion-ordered dict keyed by hashable values (strings, numbers, None).
class DictData {
 public:
  const std::vector<std::pair<Value, Value>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }
  // Nullptr when absent (or when `key` is not hashable).
  const Value* Find(const Value& key) const;
  const Value* FindStr(std::string_view key) const;
  // Fails when `key` is not hashable (lists, dicts).
  absl::Status Set(Value key, Value value);
  void SetStr(std::string_view key, Value value);
  bool Erase(const Value& key);

 private:
  std::vector<std::pair<Value, Value>> entries_;
  absl::flat_hash_map<std::string, size_t> index_;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

// Macros, builtin functions and bound methods.
class Callable {
 public:
  virtual ~Callable() = default;
  virtual absl::StatusOr<Value> Call(Interpreter& interp, CallArgs args) = 0;
  virtual std::string Describe() const = 0;
};

// Python ==.
bool ValuesEqual(const Value& a, const Value& b);
// Python <, as -1/0/1; fails with TypeError's message for unorderable types.
absl::StatusOr<int> CompareValues(const Value& a, const Value& b);
// Python's repr() of a float ("1.0", "1e+20", "0.30000000000000004").
std::string FormatFloat(double d);
struct JsonOptions {
  int indent = -1;  // < 0 means indent=None (one line)
  // Unset means json.dumps' defaults: ", " (or "," with an indent) and ": ".
  std::optional<std::string> item_separator;
  std::optional<std::string> key_separator;
  bool sort_keys = false;
  bool ensure_ascii = false;
};

// json.dumps(v, ...) as transformers' tojson filter calls it (ensure_ascii
// off by default). Fails on values JSON cannot hold (macros, undefined, ...).
absl::StatusOr<std::string> ToJson(const Value& v, const JsonOptions& options = {});

}  // namespace ferry::chat_template
