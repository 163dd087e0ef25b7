// Tokenizers for Llama-family models: SentencePiece-style (score-based merges,
// byte fallback, dummy prefix) and byte-level BPE (GPT-2, Llama 3, Qwen2:
// pre-tokenizer regex + ranked merges), loaded from GGUF metadata or from a
// Hugging Face tokenizer.json (+ tokenizer_config.json).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry {

class GgufFile;

enum class TokenizerKind { kSentencePiece, kByteLevelBpe };

// GGUF token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6,
};

// Immutable once loaded: every method is const and safe to call from
// several threads at once.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // From GGUF metadata (tokenizer.ggml.*). InvalidArgument/Unimplemented
  // (naming the file and key) for a missing or unsupported vocabulary.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const GgufFile& gguf);
  // From tokenizer.json and, if non-empty, tokenizer_config.json (special
  // tokens, add_bos_token, chat_template). NotFound for a file that cannot be
  // opened; InvalidArgument (naming the file and field) for malformed JSON or
  // a field of the wrong type; Unimplemented for a model type, normalizer or
  // pre-tokenizer pattern that is not supported (naming it).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromHuggingFace(
      const std::string& tokenizer_json_path, const std::string& tokenizer_config_path);
  // From SentencePiece's tokenizer.model (BPE) and, if non-empty,
  // tokenizer_config.json, which it reads as FromHuggingFace does. NotFound
  // for a file that cannot be opened; InvalidArgument for a malformed model;
  // Unimplemented for a unigram model.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromSentencePiece(
      const std::string& model_path, const std::string& tokenizer_config_path);
  // The tokenizer of a Hugging Face model directory: tokenizer.json, else
  // tokenizer.model, with tokenizer_config.json when there is one. NotFound
  // naming both files when neither is there.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromHfDirectory(const std::string& dir);
  // From llama2.c's tokenizer.bin, reading `vocab_size` tokens (0: all).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromLlama2c(const std::string& path,
                                                                int vocab_size);
  // The tokenizer of a llama2.c checkpoint with `vocab_size` tokens: the
  // first of tokenizer.model, tok{vocab_size}.model, tokenizer.bin and
  // tok{vocab_size}.bin next to it. NotFound naming them when none is there;
  // InvalidArgument when its size is not the checkpoint's.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> ForLlama2cCheckpoint(
      const std::string& checkpoint_path, int vocab_size);

  // Encodes `text`. `add_special` adds BOS (and EOS) as the vocabulary asks;
  // `parse_special` turns special-token text (e.g. "<|im_start|>") into its id
  // instead of encoding it as plain text. Any bytes are accepted.
  virtual std::vector<int32_t> Encode(std::string_view text, bool add_special,
                                      bool parse_special) const = 0;
  // Decodes ids to text. Control tokens (BOS/EOS...) are dropped when
  // `skip_special`. Invalid ids decode to nothing.
  virtual std::string Decode(std::span<const int32_t> ids, bool skip_special = true) const = 0;
  // The raw bytes a token stands for (byte tokens as their byte, SPM's
  // U+2581 as a space, byte-level BPE's mapped characters as bytes).
  virtual std::string TokenBytes(int32_t id) const = 0;

  virtual TokenizerKind kind() const = 0;
  virtual int32_t vocab_size() const = 0;
  // The token's text as stored in the vocabulary ("▁the", "Ġthe", "<s>").
  virtual std::string_view TokenText(int32_t id) const = 0;
  virtual std::optional<int32_t> TokenId(std::string_view text) const = 0;
  virtual bool IsControl(int32_t id) const = 0;

  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
  // Every id that ends generation (eos, eot, im_end, ...).
  virtual std::vector<int32_t> eos_ids() const = 0;
  virtual bool add_bos() const = 0;
  // The Jinja chat template shipped with the model, or empty.
  virtual const std::string& chat_template() const = 0;
};

// Turns a stream of token ids into text pieces for streaming. It never emits
// a partial UTF-8 character (it holds bytes back until the character is
// complete) and handles SPM's leading-space rule as Decode does. Whenever
// Decode(all ids) is valid UTF-8, the Add() outputs plus Flush() concatenate
// to exactly it; bytes that can never form a character come out as U+FFFD so
// that every piece is valid UTF-8.
class IncrementalDetokenizer {
 public:
  // `previous` is the token the stream continues (for generation: the
  // prompt's last token), so the first piece keeps the leading space that
  // Decode drops only at the very start of a text.
  explicit IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special = true,
                                  std::optional<int32_t> previous = std::nullopt);
  // Appends one token; returns the newly completed text (possibly empty).
  std::string Add(int32_t id);
  // Returns what is left (invalid trailing bytes as U+FFFD).
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  // Decoding a token depends only on the one before it (the leading-space
  // rule looks at the first token after an optional BOS).
  std::optional<int32_t> prev_id_;
  std::string pending_;  // decoded bytes not yet returned
};

}  // namespace ferry
