#include "engine/ngram_draft.h"

#include <algorithm>

namespace ferry {

std::vector<int32_t> NgramDraft(std::span<const int32_t> tokens, int k, int min_n, int max_n) {
  const int64_t len = static_cast<int64_t>(tokens.size());
  if (k <= 0) return {};
  for (int n = static_cast<int>(std::min<int64_t>(max_n, len - 1)); n >= min_n; --n) {
    const std::span<const int32_t> tail = tokens.subspan(static_cast<size_t>(len - n));
    // The latest occurrence that ends before the tail does (it may overlap it).
    for (int64_t at = len - n - 1; at >= 0; --at) {
      if (!std::equal(tail.begin(), tail.end(), tokens.begin() + at)) continue;
      const int64_t from = at + n;
      const int64_t count = std::min<int64_t>(k, len - from);
      return std::vector<int32_t>(tokens.begin() + from, tokens.begin() + from + count);
    }
  }
  return {};
}

}  // namespace ferry
