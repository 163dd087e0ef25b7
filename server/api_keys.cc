#include "server/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace ferry {

ApiKeys::ApiKeys(const std::vector<std::string>& keys) {
  for (const std::string& k : keys) {
    if (!k.empty()) digests_.push_back(Hash(k));
  }
}

ApiKeys::Digest ApiKeys::Hash(const std::string& key) {
  Digest d;
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), d.data());
  return d;
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
  if (presented.empty()) return std::nullopt;
  // Digests have one length, so the comparison time says nothing about the
  // keys' lengths either.
  const Digest d = Hash(presented);
  std::optional<size_t> found;
  for (size_t i = 0; i < digests_.size(); ++i) {
    // No early exit: every digest is compared.
    const bool equal = CRYPTO_memcmp(d.data(), digests_[i].data(), d.size()) == 0;
    if (equal && !found) found = i;
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
