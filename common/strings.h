// Debian's Abseil is built with its own absl::string_view (not
// std::string_view), so std::string_view does not convert implicitly. Wrap it
// with Sv() where an Abseil call (StrCat, StrSplit, ...) wants one.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string_view>

#include "absl/strings/string_view.h"

namespace ferry {

inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view StdSv(absl::string_view s) { return std::string_view(s.data(), s.size()); }

// The length of the longest suffix of `text` that is a proper prefix of
// `marker`: what a stream holds back while it may still become `marker`.
inline size_t PartialMarkerLength(std::string_view text, std::string_view marker) {
  if (marker.empty()) return 0;
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

}  // namespace ferry
