// BPE merge ranks keyed by token-id pairs, so the merge loop hashes two
// integers instead of building strings.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/tokenizer/bpe_merge.h"

namespace ferry {

// Splits a merge written as "left right" at its (single) space.
std::optional<std::pair<std::string_view, std::string_view>> SplitMerge(std::string_view merge);

class MergeRanks {
 public:
  MergeRanks() = default;
  // Merges in rank order. A merge whose parts or result are not tokens can
  // never apply and is left out; of repeated pairs the first rank counts.
  MergeRanks(std::span<const std::pair<std::string_view, std::string_view>> merges,
             const absl::flat_hash_map<std::string_view, int32_t>& token_to_id);

  bool empty() const { return ranks_.empty(); }
  size_t size() const { return ranks_.size(); }

  // Score -rank, so that the lowest rank merges first.
  std::optional<MergeResult> Find(int32_t left, int32_t right) const {
    if (left < 0 || right < 0) return std::nullopt;
    auto it = ranks_.find(Key(left, right));
    if (it == ranks_.end()) return std::nullopt;
    return MergeResult{-static_cast<float>(it->second.rank), it->second.merged_id};
  }

 private:
  struct Entry {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t Key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  absl::flat_hash_map<uint64_t, Entry> ranks_;
};

}  // namespace ferry
