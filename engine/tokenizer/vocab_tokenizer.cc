#include "engine/tokenizer/vocab_tokenizer.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace ferry {
namespace {

// Tokens that end a turn in common chat formats; generation stops on them
// as on EOS when the vocabulary marks them special.
constexpr std::string_view kEndOfTurnTexts[] = {
    "<|eot_id|>", "<|im_end|>",    "<|end_of_text|>", "<|endoftext|>",
    "<|eom_id|>", "<end_of_turn>", "<|end|>",
};

bool IsSpecialType(TokenType type) {
  return type == TokenType::kControl || type == TokenType::kUserDefined;
}

}  // namespace

absl::Status ValidateVocabSpec(const VocabSpec& spec, std::string_view source) {
  if (spec.tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(source), ": the vocabulary is empty"));
  }
  if (spec.tokens.size() > static_cast<size_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(source), ": the vocabulary is too large"));
  }
  if (spec.types.size() != spec.tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Sv(source), ": ", spec.types.size(), " token types for ", spec.tokens.size(), " tokens"));
  }
  if (!spec.scores.empty() && spec.scores.size() != spec.tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Sv(source), ": ", spec.scores.size(), " token scores for ", spec.tokens.size(), " tokens"));
  }
  const auto check_id = [&](const std::optional<int32_t>& id,
                            std::string_view what) -> absl::Status {
    if (id && (*id < 0 || static_cast<size_t>(*id) >= spec.tokens.size())) {
      return absl::InvalidArgumentError(absl::StrCat(Sv(source), ": ", Sv(what), " id ", *id,
                                                     " is outside the vocabulary of ",
                                                     spec.tokens.size()));
    }
    return absl::OkStatus();
  };
  if (auto s = check_id(spec.bos_id, "bos"); !s.ok()) return s;
  if (auto s = check_id(spec.eos_id, "eos"); !s.ok()) return s;
  if (auto s = check_id(spec.eot_id, "eot"); !s.ok()) return s;
  return check_id(spec.unk_id, "unk");
}

VocabTokenizer::VocabTokenizer(VocabSpec&& spec)
    : tokens_(std::move(spec.tokens)),
      types_(std::move(spec.types)),
      bos_id_(spec.bos_id),
      eos_id_(spec.eos_id),
      unk_id_(spec.unk_id),
      add_bos_(spec.add_bos && spec.bos_id.has_value()),
      add_eos_(spec.add_eos && spec.eos_id.has_value()),
      chat_template_(std::move(spec.chat_template)) {
  token_to_id_.reserve(tokens_.size());
  for (size_t id = 0; id < tokens_.size(); ++id) {
    if (tokens_[id].empty()) continue;  // a gap in the ids
    // A repeated text maps to its last id, as in llama.cpp.
    token_to_id_[tokens_[id]] = static_cast<int32_t>(id);
  }
  for (size_t id = 0; id < tokens_.size(); ++id) {
    if (IsSpecialType(types_[id]) && !tokens_[id].empty()) {
      specials_by_first_byte_[static_cast<uint8_t>(tokens_[id][0])].push_back(
          static_cast<int32_t>(id));
    }
  }
  for (auto& ids : specials_by_first_byte_) {
    std::stable_sort(ids.begin(), ids.end(),
                     [&](int32_t a, int32_t b) { return tokens_[a].size() > tokens_[b].size(); });
  }
  const auto add_eos_id = [&](std::optional<int32_t> id) {
    if (id && std::find(eos_ids_.begin(), eos_ids_.end(), *id) == eos_ids_.end()) {
      eos_ids_.push_back(*id);
    }
  };
  add_eos_id(eos_id_);
  add_eos_id(spec.eot_id);
  for (std::string_view text : kEndOfTurnTexts) {
    auto it = token_to_id_.find(text);
    if (it != token_to_id_.end() && IsSpecialType(types_[it->second])) add_eos_id(it->second);
  }
}

std::optional<VocabTokenizer::SpecialMatch> VocabTokenizer::MatchSpecial(std::string_view text,
                                                                         bool parse_special) const {
  for (int32_t id : specials_by_first_byte_[static_cast<uint8_t>(text[0])]) {
    // User-defined tokens always split the text, as in llama.cpp and Hugging
    // Face (non-special added tokens); control tokens only when asked.
    if (!parse_special && types_[id] != TokenType::kUserDefined) continue;
    if (text.starts_with(tokens_[id])) return SpecialMatch{id, tokens_[id].size()};
  }
  return std::nullopt;
}

std::vector<int32_t> VocabTokenizer::Encode(std::string_view text, bool add_special,
                                            bool parse_special) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 2);
  if (add_special && add_bos_) ids.push_back(*bos_id_);
  bool after_special = true;
  size_t fragment_start = 0;
  for (size_t pos = 0; pos < text.size();) {
    std::optional<SpecialMatch> match = MatchSpecial(text.substr(pos), parse_special);
    if (!match) {
      ++pos;
      continue;
    }
    if (pos > fragment_start) {
      EncodeText(text.substr(fragment_start, pos - fragment_start), after_special, &ids);
    }
    ids.push_back(match->id);
    after_special = true;
    pos += match->num_bytes;
    fragment_start = pos;
  }
  if (fragment_start < text.size()) {
    EncodeText(text.substr(fragment_start), after_special, &ids);
  }
  if (add_special && add_eos_) ids.push_back(*eos_id_);
  return ids;
}

std::string VocabTokenizer::Decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string text;
  // The dummy prefix belongs to the first token, after a BOS that is dropped.
  size_t first = 0;
  if (skip_special && !ids.empty() && bos_id_ && ids[0] == *bos_id_) first = 1;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (!IsValidId(id)) continue;
    const TokenType t = types_[id];
    if (skip_special && (t == TokenType::kControl || t == TokenType::kUnknown)) continue;
    std::string_view piece = pieces_[id];
    if (i == first && strip_leading_space_ && piece.starts_with(' ')) piece.remove_prefix(1);
    text.append(piece);
  }
  return text;
}

std::string VocabTokenizer::TokenBytes(int32_t id) const {
  return IsValidId(id) ? pieces_[id] : std::string();
}

std::string_view VocabTokenizer::TokenText(int32_t id) const {
  return IsValidId(id) ? std::string_view(tokens_[id]) : std::string_view();
}

std::optional<int32_t> VocabTokenizer::TokenId(std::string_view text) const {
  auto it = token_to_id_.find(text);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

bool VocabTokenizer::IsControl(int32_t id) const {
  return IsValidId(id) && types_[id] == TokenType::kControl;
}

}  // namespace ferry
