// Random identifiers (incarnation ids, request ids) from the OS's entropy.
#pragma once

#include <random>
#include <string>

#include "absl/strings/str_format.h"

namespace ferry {

// `bytes` random bytes as 2 * bytes lowercase hex digits.
inline std::string RandomHex(int bytes) {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < bytes; ++i) absl::StrAppendFormat(&out, "%02x", rd() & 0xff);
  return out;
}

}  // namespace ferry
