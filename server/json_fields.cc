#include "server/json_fields.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/openai_error.h"

namespace ferry {
namespace {

absl::Status TypeError(const std::string& name, const char* want, const nlohmann::ordered_json& got) {
  return InvalidParamError(name, absl::StrCat("'", name, "' must be ", want, ", got ", JsonTypeName(got)));
}

std::optional<int64_t> AsInt(const nlohmann::ordered_json& v) {
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return v.get<int64_t>();
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.2e18) return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

}  // namespace

const char* JsonTypeName(const nlohmann::ordered_json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "an unknown type";
}

bool JsonFields::Has(const char* key) const { return Get(key) != nullptr; }

const nlohmann::ordered_json* JsonFields::Get(const char* key) const {
  if (!body_.is_object()) return nullptr;
  auto it = body_.find(key);
  if (it == body_.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::optional<double>> JsonFields::Number(const char* key) const {
  const nlohmann::ordered_json* v = Get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) return TypeError(Name(key), "a number", *v);
  double d = v->get<double>();
  if (!std::isfinite(d)) return InvalidParamError(Name(key), absl::StrCat("'", Name(key), "' must be finite"));
  return d;
}

absl::StatusOr<std::optional<int64_t>> JsonFields::Int(const char* key) const {
  const nlohmann::ordered_json* v = Get(key);
  if (v == nullptr) return std::nullopt;
  std::optional<int64_t> i = AsInt(*v);
  if (!i) return TypeError(Name(key), "an integer", *v);
  return *i;
}

absl::StatusOr<std::optional<bool>> JsonFields::Bool(const char* key) const {
  const nlohmann::ordered_json* v = Get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) return TypeError(Name(key), "a boolean", *v);
  return v->get<bool>();
}

absl::StatusOr<std::optional<std::string>> JsonFields::String(const char* key) const {
  const nlohmann::ordered_json* v = Get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) return TypeError(Name(key), "a string", *v);
  return v->get<std::string>();
}

absl::StatusOr<std::optional<std::vector<std::string>>> JsonFields::StringOrList(const char* key) const {
  const nlohmann::ordered_json* v = Get(key);
  if (v == nullptr) return std::nullopt;
  std::vector<std::string> out;
  if (v->is_string()) {
    out.push_back(v->get<std::string>());
    return out;
  }
  if (!v->is_array()) return TypeError(Name(key), "a string or an array of strings", *v);
  for (const auto& e : *v) {
    if (!e.is_string()) return TypeError(Name(key), "a string or an array of strings", e);
    out.push_back(e.get<std::string>());
  }
  return out;
}

absl::StatusOr<std::optional<std::vector<int64_t>>> JsonFields::IntList(const char* key) const {
  const nlohmann::ordered_json* v = Get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_array()) return TypeError(Name(key), "an array of integers", *v);
  std::vector<int64_t> out;
  for (const auto& e : *v) {
    std::optional<int64_t> i = AsInt(e);
    if (!i) return TypeError(Name(key), "an array of integers", e);
    out.push_back(*i);
  }
  return out;
}

absl::StatusOr<const nlohmann::ordered_json*> JsonFields::Object(const char* key) const {
  const nlohmann::ordered_json* v = Get(key);
  if (v == nullptr) return nullptr;
  if (!v->is_object()) return TypeError(Name(key), "an object", *v);
  return v;
}

absl::Status CheckRange(const std::string& name, double v, double lo, double hi, bool lo_open) {
  bool ok = (lo_open ? v > lo : v >= lo) && v <= hi;
  if (ok) return absl::OkStatus();
  std::string range;
  if (hi == INFINITY) {
    range = absl::StrFormat("%s %g", lo_open ? ">" : ">=", lo);
  } else {
    range = absl::StrFormat("in %s%g, %g]", lo_open ? "(" : "[", lo, hi);
  }
  return InvalidParamError(name, absl::StrFormat("'%s' must be %s, got %g", name, range, v));
}

std::string JsonStringAt(const nlohmann::ordered_json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t JsonIntAt(const nlohmann::ordered_json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

const nlohmann::ordered_json& JsonAt(const nlohmann::ordered_json& j, const char* key) {
  static const nlohmann::ordered_json kNull;
  auto it = j.find(key);
  return it != j.end() ? *it : kNull;
}

}  // namespace ferry
