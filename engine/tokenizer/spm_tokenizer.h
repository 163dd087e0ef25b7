// SentencePiece-style BPE as llama.cpp runs Llama-2-family vocabularies:
// spaces become U+2581 ("▁"), a dummy "▁" is put before the text, adjacent
// pieces merge by the highest score of the merged token (GGUF scores) or by
// merge rank (tokenizer.json merges), and a character with no token falls
// back to its <0xXX> byte tokens.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "engine/tokenizer/bpe_merge.h"
#include "engine/tokenizer/merge_ranks.h"
#include "engine/tokenizer/vocab_tokenizer.h"

namespace ferry {

class SpmTokenizer : public VocabTokenizer {
 public:
  // Uses spec.merges (ranks) when present, else spec.scores.
  SpmTokenizer(VocabSpec&& spec, bool add_space_prefix);

  TokenizerKind kind() const override { return TokenizerKind::kSentencePiece; }

 protected:
  void EncodeText(std::string_view text, bool after_special,
                  std::vector<int32_t>* ids) const override;

 private:
  // The id of `piece` if plain text may produce it (not a control, unknown,
  // unused or byte token, as in sentencepiece), else -1.
  int32_t FindPiece(std::string_view piece) const;
  // Encodes normalized[begin, end) on its own.
  void EncodeChunk(std::string_view normalized, size_t begin, size_t end, MergeScratch* scratch,
                   std::vector<int32_t>* ids) const;

  std::vector<float> scores_;
  MergeRanks merge_ranks_;
  std::array<int32_t, 256> byte_ids_;  // <0xXX> tokens, -1 where absent
  bool add_space_prefix_;
  // True when no token has "▁" after another character (sentencepiece's
  // split_by_whitespace): then no merge crosses the start of a "▁" run, and
  // words can merge one at a time, which keeps the merge queue short.
  bool words_are_independent_ = false;
};

}  // namespace ferry
