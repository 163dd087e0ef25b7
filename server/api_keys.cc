#include "server/api_keys.h"

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ferry {

ApiKeys::ApiKeys(std::vector<std::string> keys) {
  for (std::string& k : keys) {
    if (!k.empty()) keys_.push_back(std::move(k));
  }
}

std::vector<std::string> ApiKeys::SplitList(const std::string& list) {
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(list, ',')) {
    absl::string_view k = absl::StripAsciiWhitespace(part);
    if (!k.empty()) out.emplace_back(k);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ApiKeys::ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the API key file ", path));
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view k = absl::StripAsciiWhitespace(line);
    if (k.empty() || k[0] == '#') continue;
    out.emplace_back(k);
  }
  return out;
}

bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  // Walk the presented string fully whatever the key's length, so the time
  // leaks neither the position of the first difference nor the key length.
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char kb = b.empty() ? 0 : static_cast<unsigned char>(b[i % b.size()]);
    diff = diff | (static_cast<unsigned char>(a[i]) ^ kb);
  }
  return diff == 0 && !b.empty();
}

std::optional<size_t> ApiKeys::Match(const std::string& presented) const {
  std::optional<size_t> found;
  for (size_t i = 0; i < keys_.size(); ++i) {
    // No early exit: every key is compared.
    if (ConstantTimeEquals(presented, keys_[i]) && !found) found = i;
  }
  return found;
}

std::optional<std::string> ApiKeys::BearerToken(const std::string& header) {
  absl::string_view h = absl::StripAsciiWhitespace(header);
  if (h.size() < 7 || !absl::EqualsIgnoreCase(h.substr(0, 7), "bearer ")) return std::nullopt;
  absl::string_view token = absl::StripAsciiWhitespace(h.substr(7));
  if (token.empty()) return std::nullopt;
  return std::string(token);
}

}  // namespace ferry
