// The parts every Tokenizer kind shares: the vocabulary, special tokens
// (matched as whole strings before normal encoding), BOS/EOS handling and
// decoding from per-token byte strings. Subclasses encode plain text.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "engine/tokenizer/tokenizer.h"

namespace ferry {

// What a loader (GGUF or tokenizer.json) found, before a tokenizer is built.
struct VocabSpec {
  std::vector<std::string> tokens;
  std::vector<TokenType> types;  // same size as tokens
  std::vector<float> scores;     // same size as tokens, or empty
  // BPE merges in rank order (rank = index). Views into the loader's source,
  // which must outlive only the tokenizer's constructor.
  std::vector<std::pair<std::string_view, std::string_view>> merges;
  std::optional<int32_t> bos_id;
  std::optional<int32_t> eos_id;
  std::optional<int32_t> eot_id;
  std::optional<int32_t> unk_id;
  bool add_bos = false;
  bool add_eos = false;
  std::string chat_template;
};

// Checks sizes and ids in `spec` (InvalidArgument naming `source`).
absl::Status ValidateVocabSpec(const VocabSpec& spec, std::string_view source);

class VocabTokenizer : public Tokenizer {
 public:
  // Takes the tokens, types, special ids and chat template from `spec`; the
  // scores and merges stay there for the subclass to read.
  explicit VocabTokenizer(VocabSpec&& spec);

  std::vector<int32_t> Encode(std::string_view text, bool add_special,
                              bool parse_special) const override;
  std::string Decode(std::span<const int32_t> ids, bool skip_special = true) const override;
  std::string TokenBytes(int32_t id) const override;

  int32_t vocab_size() const override { return static_cast<int32_t>(tokens_.size()); }
  std::string_view TokenText(int32_t id) const override;
  std::optional<int32_t> TokenId(std::string_view text) const override;
  bool IsControl(int32_t id) const override;

  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::optional<int32_t> eos_id() const override { return eos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }
  bool add_bos() const override { return add_bos_; }
  const std::string& chat_template() const override { return chat_template_; }

 protected:
  // Encodes text that holds no special token. `after_special` is true at the
  // start of the input and right after a special token.
  virtual void EncodeText(std::string_view text, bool after_special,
                          std::vector<int32_t>* ids) const = 0;

  // Subclass constructors fill the bytes each token decodes to.
  void SetTokenPieces(std::vector<std::string> pieces) { pieces_ = std::move(pieces); }
  // SentencePiece's dummy prefix: Decode drops the space it put first.
  void set_strip_leading_space(bool strip) { strip_leading_space_ = strip; }

  bool IsValidId(int32_t id) const { return id >= 0 && id < vocab_size(); }
  TokenType type(int32_t id) const { return types_[id]; }
  const std::vector<std::string>& tokens() const { return tokens_; }
  const absl::flat_hash_map<std::string_view, int32_t>& token_to_id() const { return token_to_id_; }
  std::optional<int32_t> unk_id() const { return unk_id_; }

 private:
  struct SpecialMatch {
    int32_t id;
    size_t num_bytes;
  };
  std::optional<SpecialMatch> MatchSpecial(std::string_view text, bool parse_special) const;

  std::vector<std::string> tokens_;
  std::vector<TokenType> types_;
  absl::flat_hash_map<std::string_view, int32_t> token_to_id_;  // views into tokens_
  std::vector<std::string> pieces_;
  // Special tokens grouped by first byte, longest first.
  std::array<std::vector<int32_t>, 256> specials_by_first_byte_;
  std::optional<int32_t> bos_id_;
  std::optional<int32_t> eos_id_;
  std::optional<int32_t> unk_id_;
  std::vector<int32_t> eos_ids_;
  bool add_bos_ = false;
  bool add_eos_ = false;
  bool strip_leading_space_ = false;
  std::string chat_template_;
};

}  // namespace ferry
