// Splits text into words before byte-level BPE, as the models' split regexes
// do. Each pattern is matched by hand over code points: std::regex has no
// \p{L} / \p{N} classes and no lookahead over Unicode text.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry {

enum class PreTokenizerKind {
  // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
  //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  kLlama3,
  // As kLlama3 with \p{N} instead of \p{N}{1,3}.
  kQwen2,
};

// From GGUF's tokenizer.ggml.pre ("" when absent). Unimplemented for a name
// whose pattern is not one of the above.
absl::StatusOr<PreTokenizerKind> PreTokenizerFromGgufName(std::string_view name);

// From the pattern string of a Hugging Face Split pre-tokenizer; nullopt when
// it is not one of the known patterns.
std::optional<PreTokenizerKind> PreTokenizerFromRegex(std::string_view pattern);

// Appends the words of `text` (views into it, in order, covering all of it)
// to `words`. Bytes that are not valid UTF-8 count as one symbol each that is
// neither letter, number nor space.
void SplitWords(std::string_view text, PreTokenizerKind kind, std::vector<std::string_view>* words);

}  // namespace ferry
