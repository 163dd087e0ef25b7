// Debian's Abseil is built with its own absl::string_view (not
// std::string_view), so std::string_view does not convert implicitly. Wrap it
// with Sv() where an Abseil call (StrCat, StrSplit, ...) wants one.
#pragma once

#include <string_view>

#include "absl/strings/string_view.h"

namespace ferry {

inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view StdSv(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace ferry
