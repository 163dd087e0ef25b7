// The API keys a gateway accepts. Keys are compared in constant time (the
// time does not depend on where a guess first differs, nor on which key it
// matches) and are never logged or echoed.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry {

class ApiKeys {
 public:
  ApiKeys() = default;
  explicit ApiKeys(std::vector<std::string> keys);

  // Keys from a comma-separated list (e.g. $FERRY_API_KEYS): blanks trimmed,
  // empty entries dropped.
  static std::vector<std::string> SplitList(const std::string& list);
  // One key per line; blank lines and lines starting with '#' are skipped.
  // NotFound when the file cannot be read.
  static absl::StatusOr<std::vector<std::string>> ReadFile(const std::string& path);

  bool enabled() const { return !keys_.empty(); }
  size_t size() const { return keys_.size(); }
  // The index of the key `presented` equals, or nullopt.
  std::optional<size_t> Match(const std::string& presented) const;
  // The key from an "Authorization: Bearer KEY" header value, or nullopt.
  static std::optional<std::string> BearerToken(const std::string& header);

 private:
  std::vector<std::string> keys_;
};

// Equal contents, in time that depends only on the lengths.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

}  // namespace ferry
