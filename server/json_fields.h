// Strict readers for the fields of a JSON request body. A field that is
// absent or null gives nullopt; a field of the wrong type is an
// InvalidArgument naming it (a string where a number belongs is an error,
// never a silent default); range checks name the field and the bounds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace ferry {

class JsonFields {
 public:
  // `body` must outlive this object; `prefix` is prepended to field names in
  // errors (e.g. "stream_options.").
  explicit JsonFields(const nlohmann::ordered_json& body, std::string prefix = "")
      : body_(body), prefix_(std::move(prefix)) {}

  bool Has(const char* key) const;
  const nlohmann::ordered_json* Get(const char* key) const;  // null when absent or null

  absl::StatusOr<std::optional<double>> Number(const char* key) const;
  // Integers; a float with an integral value (2.0) is accepted.
  absl::StatusOr<std::optional<int64_t>> Int(const char* key) const;
  absl::StatusOr<std::optional<bool>> Bool(const char* key) const;
  absl::StatusOr<std::optional<std::string>> String(const char* key) const;
  // A string or a list of strings.
  absl::StatusOr<std::optional<std::vector<std::string>>> StringOrList(const char* key) const;
  absl::StatusOr<std::optional<std::vector<int64_t>>> IntList(const char* key) const;
  // An object (the value itself).
  absl::StatusOr<const nlohmann::ordered_json*> Object(const char* key) const;

  // The full name of `key` for messages.
  std::string Name(const char* key) const { return prefix_ + key; }

 private:
  const nlohmann::ordered_json& body_;
  std::string prefix_;
};

// InvalidArgument "`name` must be ..." unless lo <= v <= hi (or lo < v when
// `lo_open`).
absl::Status CheckRange(const std::string& name, double v, double lo, double hi,
                        bool lo_open = false);

// Lenient readers for JSON the server wrote itself (a chat completion being
// reshaped): a missing field, or one of another type, reads as empty or 0.
std::string JsonStringAt(const nlohmann::ordered_json& j, const char* key);
int64_t JsonIntAt(const nlohmann::ordered_json& j, const char* key);
// Null when absent.
const nlohmann::ordered_json& JsonAt(const nlohmann::ordered_json& j, const char* key);

// The JSON type name used in errors ("string", "number", "array", ...).
const char* JsonTypeName(const nlohmann::ordered_json& v);

}  // namespace ferry
