// Vocabularies stored outside GGUF and tokenizer.json: SentencePiece's
// tokenizer.model (a serialized ModelProto, read here with a bounded
// protobuf wire-format reader, no protobuf library) and llama2.c's
// tokenizer.bin. Both become the VocabSpec an SpmTokenizer runs, the same
// one a GGUF converter would write from them.
#pragma once

#include <string_view>

#include "absl/status/statusor.h"
#include "engine/tokenizer/vocab_tokenizer.h"

namespace ferry {

struct SentencePieceModel {
  // Tokens, types and scores, with BOS/EOS/UNK from the trainer spec
  // (SentencePiece's defaults 1, 2, 0 when it is silent); add_bos set.
  VocabSpec spec;
  // NormalizerSpec.add_dummy_prefix: a space is put before the text.
  bool add_dummy_prefix = true;
};

// Parses a tokenizer.model. InvalidArgument naming `source` for bytes that
// are not a well-formed ModelProto (truncated fields, bad wire types, an
// empty piece, a piece type out of range); Unimplemented for a model type
// other than BPE (unigram vocabularies need a different segmentation).
absl::StatusOr<SentencePieceModel> ParseSentencePieceModel(std::string_view bytes,
                                                           std::string_view source);

// Parses llama2.c's tokenizer.bin: an int32 max_token_length, then for each
// token a float score, an int32 length and the token's bytes (spaces as
// ' ', BOS and EOS as "\n<s>\n" and "\n</s>\n"). The file does not store the
// vocabulary size: `vocab_size` > 0 reads exactly that many tokens (the
// checkpoint's), 0 reads to the end. Token types are recovered as a GGUF
// converter does: <unk>, <s>, </s> and <0xXX> byte tokens. InvalidArgument
// naming `source` for a truncated or malformed file.
absl::StatusOr<VocabSpec> ParseLlama2cVocab(std::string_view bytes, int vocab_size,
                                            std::string_view source);

}  // namespace ferry
