// The API keys a gateway accepts. Only SHA-256 digests of the keys are kept
// in memory (a memory dump or a stray debug print shows no key); a presented
// key is hashed and compared against every digest in constant time (the time
// does not depend on where a guess first differs, nor on which key it
// matches). Keys are never logged or echoed.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry {

class ApiKeys {
 public:
  using Digest = std::array<unsigned char, 32>;

  ApiKeys() = default;
  // Empty keys are dropped; the others are hashed and not kept.
  explicit ApiKeys(const std::vector<std::string>& keys);

  // Keys from a comma-separated list (e.g. $FERRY_API_KEYS): blanks trimmed,
  // empty entries dropped.
  static std::vector<std::string> SplitList(const std::string& list);
  // One key per line; blank lines and lines starting with '#' are skipped.
  // NotFound when the file cannot be read.
  static absl::StatusOr<std::vector<std::string>> ReadFile(const std::string& path);

  bool enabled() const { return !digests_.empty(); }
  size_t size() const { return digests_.size(); }
  // The index of the key `presented` equals, or nullopt. Every digest is
  // compared, whatever matches.
  std::optional<size_t> Match(const std::string& presented) const;
  // The key from an "Authorization: Bearer KEY" header value, or nullopt.
  static std::optional<std::string> BearerToken(const std::string& header);

  // The SHA-256 of `key` (what is kept).
  static Digest Hash(const std::string& key);
  const std::vector<Digest>& digests() const { return digests_; }

 private:
  std::vector<Digest> digests_;
};

// Equal contents, in time that depends only on the lengths.
bool ConstantTimeEquals(const std::string& a, const std::string& b);

}  // namespace ferry
