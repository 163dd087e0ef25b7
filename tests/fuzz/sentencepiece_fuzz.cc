// Fuzz target: SentencePiece tokenizer.model (first byte even) and llama2.c
// tokenizer.bin (odd) parsers on arbitrary bytes. What parses and validates
// must build a tokenizer that encodes and decodes text without fault, and
// plain text with byte fallback must decode back to itself.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/sentencepiece_model.h"
#include "engine/tokenizer/spm_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0 || size > (1 << 16)) return 0;
  std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  ferry::VocabSpec spec;
  bool add_space_prefix = true;
  if ((data[0] & 1) == 0) {
    auto model = ferry::ParseSentencePieceModel(bytes, "fuzz.model");
    if (!model.ok()) return 0;
    spec = std::move(model->spec);
    add_space_prefix = model->add_dummy_prefix;
  } else {
    auto parsed = ferry::ParseLlama2cVocab(bytes, data[0] >> 1, "fuzz.bin");
    if (!parsed.ok()) return 0;
    spec = *std::move(parsed);
  }
  if (spec.tokens.empty() || spec.tokens.size() != spec.types.size()) __builtin_trap();
  if (!ferry::ValidateVocabSpec(spec, "fuzz").ok()) return 0;
  ferry::SpmTokenizer tok(std::move(spec), add_space_prefix);
  const std::string text = "Once upon a time, 42 \xE2\x96\x81\xC3\xA9\n";
  const std::vector<int32_t> ids = tok.Encode(text, true, true);
  for (int32_t id : ids) {
    if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
  }
  volatile size_t sink = tok.Decode(ids, false).size();
  (void)sink;
  return 0;
}
