#include "engine/tokenizer/merge_ranks.h"

#include <string>

namespace ferry {

std::optional<std::pair<std::string_view, std::string_view>> SplitMerge(std::string_view merge) {
  // Parts never contain a plain space (byte-level BPE maps it to "Ġ", SPM to
  // "▁"), but search from the second byte so that a part " " still splits.
  if (merge.size() < 3) return std::nullopt;
  const size_t space = merge.find(' ', 1);
  if (space == std::string_view::npos || space + 1 >= merge.size()) return std::nullopt;
  return std::make_pair(merge.substr(0, space), merge.substr(space + 1));
}

MergeRanks::MergeRanks(std::span<const std::pair<std::string_view, std::string_view>> merges,
                       const absl::flat_hash_map<std::string_view, int32_t>& token_to_id) {
  ranks_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    auto left_it = token_to_id.find(left);
    auto right_it = token_to_id.find(right);
    joined.assign(left);
    joined.append(right);
    auto merged_it = token_to_id.find(std::string_view(joined));
    if (left_it == token_to_id.end() || right_it == token_to_id.end() ||
        merged_it == token_to_id.end()) {
      continue;
    }
    ranks_.try_emplace(Key(left_it->second, right_it->second),
                       Entry{static_cast<int32_t>(rank), merged_it->second});
  }
}

}  // namespace ferry
