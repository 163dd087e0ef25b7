// Byte-level BPE (GPT-2, Llama 3, Qwen2): the text is split into words by the
// model's pre-tokenizer pattern, each word's bytes start as one symbol each
// (GPT-2's byte-to-character map makes every byte a token), and adjacent
// symbols merge in merge-rank order.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "engine/tokenizer/merge_ranks.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/vocab_tokenizer.h"

namespace ferry {

struct ByteLevelBpeOptions {
  PreTokenizerKind pre_tokenizer = PreTokenizerKind::kGpt2;
  // A word that is itself a token is taken whole (Llama 3's ignore_merges).
  bool ignore_merges = false;
  // Put a space before text that does not start with one (Hugging Face
  // ByteLevel add_prefix_space).
  bool add_prefix_space = false;
};

class ByteLevelBpeTokenizer : public VocabTokenizer {
 public:
  // Reads spec.merges.
  ByteLevelBpeTokenizer(VocabSpec&& spec, const ByteLevelBpeOptions& options);

  TokenizerKind kind() const override { return TokenizerKind::kByteLevelBpe; }

 protected:
  void EncodeText(std::string_view text, bool after_special,
                  std::vector<int32_t>* ids) const override;

 private:
  void EncodeWord(std::string_view word, MergeScratch* scratch, std::string* mapped,
                  std::vector<int32_t>* ids) const;

  ByteLevelBpeOptions options_;
  MergeRanks merge_ranks_;
  std::array<int32_t, 256> byte_ids_;  // the token of each byte's character, -1 if none
};

}  // namespace ferry
