// Prompt-lookup drafts for speculative decoding (as vLLM's "ngram"
// speculator and llama.cpp's lookup decoding): a sequence's last few
// tokens are looked for earlier in its prompt and output, and the tokens
// that followed them there are proposed as the next ones. The engine checks
// the proposal in one forward pass, so text that repeats what came before
// (code edits, quotes from a document, structured records) costs fewer
// passes over the weights.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ferry {

// At most `k` tokens that followed the latest earlier occurrence of the
// last n tokens of `tokens`, for the longest n in [min_n, max_n] that
// occurs; empty when none does.
std::vector<int32_t> NgramDraft(std::span<const int32_t> tokens, int k, int min_n = 2,
                                int max_n = 4);

}  // namespace ferry
