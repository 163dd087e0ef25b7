#include "engine/tokenizer/bpe_tokenizer.h"

#include <string>

#include "engine/tokenizer/byte_level.h"
#include "engine/tokenizer/unicode.h"

namespace ferry {
namespace {

// A token's text in byte-level characters back to the bytes it stands for.
// Characters outside the map (added tokens written in plain text) are kept.
std::string ByteLevelToBytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const Utf8Char c = DecodeUtf8(text, pos);
    const int byte = c.codepoint == kInvalidCodepoint ? -1 : ByteFromCodepoint(c.codepoint);
    if (byte >= 0) {
      out.push_back(static_cast<char>(byte));
    } else {
      out.append(text.substr(pos, c.num_bytes));
    }
    pos += c.num_bytes;
  }
  return out;
}

}  // namespace

ByteLevelBpeTokenizer::ByteLevelBpeTokenizer(VocabSpec&& spec, const ByteLevelBpeOptions& options)
    : VocabTokenizer(std::move(spec)), options_(options) {
  merge_ranks_ = MergeRanks(spec.merges, token_to_id());
  std::string mapped;
  for (int b = 0; b < 256; ++b) {
    mapped.clear();
    AppendUtf8(ByteToCodepoint(static_cast<uint8_t>(b)), &mapped);
    auto it = token_to_id().find(std::string_view(mapped));
    byte_ids_[b] = it == token_to_id().end() ? -1 : it->second;
  }
  const size_t n = tokens().size();
  std::vector<std::string> pieces(n);
  for (size_t i = 0; i < n; ++i) {
    const TokenType t = type(static_cast<int32_t>(i));
    if (t == TokenType::kNormal || t == TokenType::kByte) {
      pieces[i] = ByteLevelToBytes(tokens()[i]);
    } else if (t != TokenType::kUnused) {
      pieces[i] = tokens()[i];  // control, unknown, user-defined: as written
    }
  }
  SetTokenPieces(std::move(pieces));
}

void ByteLevelBpeTokenizer::EncodeText(std::string_view text, bool /*after_special*/,
                                       std::vector<int32_t>* ids) const {
  std::string prefixed;
  if (options_.add_prefix_space && !text.starts_with(' ')) {
    prefixed.reserve(text.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(text);
    text = prefixed;
  }
  std::vector<std::string_view> words;
  SplitWords(text, options_.pre_tokenizer, &words);
  MergeScratch scratch;
  std::string mapped;
  for (std::string_view word : words) EncodeWord(word, &scratch, &mapped, ids);
}

void ByteLevelBpeTokenizer::EncodeWord(std::string_view word, MergeScratch* scratch,
                                       std::string* mapped, std::vector<int32_t>* ids) const {
  if (options_.ignore_merges) {
    mapped->clear();
    AppendByteLevel(word, mapped);
    auto it = token_to_id().find(std::string_view(*mapped));
    if (it != token_to_id().end()) {
      ids->push_back(it->second);
      return;
    }
  }
  auto& symbols = scratch->symbols;
  symbols.clear();
  const auto n = static_cast<int32_t>(word.size());
  for (int32_t i = 0; i < n; ++i) {
    symbols.push_back({byte_ids_[static_cast<uint8_t>(word[i])], static_cast<uint32_t>(i), 1, i - 1,
                       i + 1 == n ? -1 : i + 1});
  }
  if (symbols.empty()) return;
  MergeSymbols(scratch, [&](const MergeSymbol& left, const MergeSymbol& right) {
    return merge_ranks_.Find(left.id, right.id);
  });
  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    // A byte without a token (a vocabulary missing part of the byte map) is
    // dropped: there is nothing to encode it as.
    if (symbols[i].id >= 0) ids->push_back(symbols[i].id);
  }
}

}  // namespace ferry
