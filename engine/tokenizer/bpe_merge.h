// The merge loop shared by the SentencePiece-style and byte-level BPE
// tokenizers: start from one symbol per character (or byte), then merge the
// best-scoring adjacent pair until no pair can merge. SentencePiece scores a
// pair by the score of the merged token; BPE by minus the merge rank. Ties go
// to the leftmost pair, as in sentencepiece and Hugging Face tokenizers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

namespace ferry {

struct MergeSymbol {
  int32_t id;          // token id, or -1 when the text is not in the vocabulary
  uint32_t start;      // byte offset in the word
  uint32_t num_bytes;  // 0 once merged into its left neighbour
  int32_t prev;
  int32_t next;
};

struct MergeResult {
  float score;  // higher merges first
  int32_t merged_id;
};

// Reusable buffers so that encoding a long text does not allocate per word.
struct MergeScratch {
  struct Candidate {
    float score;
    int32_t left;
    int32_t right;
    uint32_t num_bytes;  // left + right at the time the pair was found
    int32_t merged_id;
  };
  std::vector<MergeSymbol> symbols;
  std::vector<Candidate> heap;
};

// Merges `scratch->symbols` (a chain linked by prev/next, starting at index 0)
// in place. `find_pair(left, right)` returns the merge of two adjacent
// symbols, or nullopt when they do not merge.
template <typename FindPair>
void MergeSymbols(MergeScratch* scratch, const FindPair& find_pair) {
  auto& symbols = scratch->symbols;
  auto& heap = scratch->heap;
  heap.clear();
  // Max-heap on score; on equal scores the leftmost pair wins.
  const auto lower_priority = [](const MergeScratch::Candidate& a,
                                 const MergeScratch::Candidate& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  const auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    std::optional<MergeResult> merge = find_pair(symbols[left], symbols[right]);
    if (!merge) return;
    heap.push_back({merge->score, left, right, symbols[left].num_bytes + symbols[right].num_bytes,
                    merge->merged_id});
    std::push_heap(heap.begin(), heap.end(), lower_priority);
  };
  for (size_t i = 1; i < symbols.size(); ++i) {
    try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));
  }
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), lower_priority);
    const MergeScratch::Candidate best = heap.back();
    heap.pop_back();
    MergeSymbol& left = symbols[best.left];
    MergeSymbol& right = symbols[best.right];
    // A symbol only grows by absorbing its right neighbour, so an unchanged
    // total length means neither side has merged since the pair was found.
    if (left.num_bytes == 0 || right.num_bytes == 0 ||
        left.num_bytes + right.num_bytes != best.num_bytes) {
      continue;
    }
    left.num_bytes += right.num_bytes;
    left.id = best.merged_id;
    right.num_bytes = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = best.left;
    try_add(left.prev, best.left);
    try_add(best.left, left.next);
  }
}

}  // namespace ferry
