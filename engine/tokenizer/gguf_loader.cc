// Tokenizer::FromGguf: reads the tokenizer.ggml.* metadata.
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/merge_ranks.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/spm_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocab_tokenizer.h"

namespace ferry {
namespace {

// nullopt for an absent key; other errors (wrong type) pass through.
template <typename T>
absl::StatusOr<std::optional<T>> Optional(absl::StatusOr<T> value) {
  if (value.ok()) return std::optional<T>(*std::move(value));
  if (absl::IsNotFound(value.status())) return std::optional<T>();
  return value.status();
}

// A missing required key is a bad file for the caller, not a lookup miss.
template <typename T>
absl::StatusOr<T> Required(absl::StatusOr<T> value) {
  if (absl::IsNotFound(value.status())) {
    return absl::InvalidArgumentError(value.status().message());
  }
  return value;
}

// A token id key. Converters write -1 or UINT32_MAX for "none".
absl::StatusOr<std::optional<int32_t>> OptionalTokenId(const GgufFile& gguf, std::string_view key,
                                                       std::optional<int32_t> fallback,
                                                       size_t vocab_size) {
  FERRY_ASSIGN_OR_RETURN(std::optional<int64_t> id, Optional(gguf.GetInt(key)));
  if (!id) return fallback;
  if (*id < 0 || *id == UINT32_MAX) return std::optional<int32_t>();
  if (static_cast<uint64_t>(*id) >= vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(gguf.name(), ": ", Sv(key), " = ", *id,
                                                   " is outside the vocabulary of ", vocab_size));
  }
  return std::optional<int32_t>(static_cast<int32_t>(*id));
}

absl::Status ReadTokens(const GgufFile& gguf, VocabSpec* spec) {
  FERRY_ASSIGN_OR_RETURN(std::vector<std::string_view> tokens,
                         Required(gguf.GetStringArray("tokenizer.ggml.tokens")));
  spec->tokens.assign(tokens.begin(), tokens.end());
  FERRY_ASSIGN_OR_RETURN(std::optional<std::vector<int64_t>> types,
                         Optional(gguf.GetIntArray("tokenizer.ggml.token_type")));
  if (types) {
    if (types->size() != tokens.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(gguf.name(), ": tokenizer.ggml.token_type has ", types->size(),
                       " entries for ", tokens.size(), " tokens"));
    }
    spec->types.reserve(types->size());
    for (int64_t t : *types) {
      // Unknown type values are treated as normal text, as llama.cpp does.
      const bool known = t >= static_cast<int64_t>(TokenType::kNormal) &&
                         t <= static_cast<int64_t>(TokenType::kByte);
      spec->types.push_back(known ? static_cast<TokenType>(t) : TokenType::kNormal);
    }
  } else {
    spec->types.assign(tokens.size(), TokenType::kNormal);
  }
  FERRY_ASSIGN_OR_RETURN(std::optional<std::vector<float>> scores,
                         Optional(gguf.GetFloatArray("tokenizer.ggml.scores")));
  if (scores) spec->scores = std::move(*scores);
  return absl::OkStatus();
}

absl::Status ReadSpecialTokens(const GgufFile& gguf, bool is_spm, VocabSpec* spec) {
  const size_t n = spec->tokens.size();
  // llama.cpp's defaults for SentencePiece vocabularies that lack the keys.
  const auto spm_default = [&](int32_t id) {
    return is_spm && static_cast<size_t>(id) < n ? std::optional<int32_t>(id) : std::nullopt;
  };
  FERRY_ASSIGN_OR_RETURN(spec->bos_id,
                         OptionalTokenId(gguf, "tokenizer.ggml.bos_token_id", spm_default(1), n));
  FERRY_ASSIGN_OR_RETURN(spec->eos_id,
                         OptionalTokenId(gguf, "tokenizer.ggml.eos_token_id", spm_default(2), n));
  FERRY_ASSIGN_OR_RETURN(
      spec->unk_id, OptionalTokenId(gguf, "tokenizer.ggml.unknown_token_id", spm_default(0), n));
  FERRY_ASSIGN_OR_RETURN(spec->eot_id,
                         OptionalTokenId(gguf, "tokenizer.ggml.eot_token_id", std::nullopt, n));
  FERRY_ASSIGN_OR_RETURN(std::optional<bool> add_bos,
                         Optional(gguf.GetBool("tokenizer.ggml.add_bos_token")));
  FERRY_ASSIGN_OR_RETURN(std::optional<bool> add_eos,
                         Optional(gguf.GetBool("tokenizer.ggml.add_eos_token")));
  spec->add_bos = add_bos.value_or(is_spm);
  spec->add_eos = add_eos.value_or(false);
  FERRY_ASSIGN_OR_RETURN(std::optional<std::string_view> chat_template,
                         Optional(gguf.GetString("tokenizer.chat_template")));
  if (chat_template) spec->chat_template = std::string(*chat_template);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const GgufFile& gguf) {
  auto model = gguf.GetString("tokenizer.ggml.model");
  if (!model.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        gguf.name(), ": no tokenizer (tokenizer.ggml.model): ", model.status().message()));
  }
  const bool is_spm = *model == "llama";
  if (!is_spm && *model != "gpt2") {
    return absl::UnimplementedError(
        absl::StrCat(gguf.name(), ": tokenizer.ggml.model '", Sv(*model), "' is not supported"));
  }
  VocabSpec spec;
  FERRY_RETURN_IF_ERROR(ReadTokens(gguf, &spec));
  FERRY_RETURN_IF_ERROR(ReadSpecialTokens(gguf, is_spm, &spec));
  FERRY_RETURN_IF_ERROR(ValidateVocabSpec(spec, gguf.name()));

  if (is_spm) {
    FERRY_ASSIGN_OR_RETURN(std::optional<bool> add_space_prefix,
                           Optional(gguf.GetBool("tokenizer.ggml.add_space_prefix")));
    return std::make_unique<SpmTokenizer>(std::move(spec), add_space_prefix.value_or(true));
  }

  FERRY_ASSIGN_OR_RETURN(std::vector<std::string_view> merges,
                         Required(gguf.GetStringArray("tokenizer.ggml.merges")));
  spec.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    auto parts = SplitMerge(merges[i]);
    if (!parts) {
      return absl::InvalidArgumentError(absl::StrCat(gguf.name(), ": tokenizer.ggml.merges[", i,
                                                     "] '", Sv(merges[i]),
                                                     "' is not 'left right'"));
    }
    spec.merges.push_back(*parts);
  }
  FERRY_ASSIGN_OR_RETURN(std::optional<std::string_view> pre,
                         Optional(gguf.GetString("tokenizer.ggml.pre")));
  auto pre_kind = PreTokenizerFromGgufName(pre.value_or(""));
  if (!pre_kind.ok()) {
    return absl::UnimplementedError(absl::StrCat(gguf.name(), ": ", pre_kind.status().message()));
  }
  ByteLevelBpeOptions options;
  options.pre_tokenizer = *pre_kind;
  options.ignore_merges = *pre_kind == PreTokenizerKind::kLlama3;
  return std::make_unique<ByteLevelBpeTokenizer>(std::move(spec), options);
}

}  // namespace ferry
