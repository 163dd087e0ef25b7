#include "engine/tokenizer/spm_tokenizer.h"

#include <charconv>
#include <string>

#include "engine/tokenizer/bpe_merge.h"
#include "engine/tokenizer/unicode.h"

namespace ferry {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

// "<0x0A>" -> 0x0A; -1 when `text` is not a byte token.
int ParseByteToken(std::string_view text) {
  if (text.size() != 6 || !text.starts_with("<0x") || text[5] != '>') return -1;
  int value = 0;
  auto [end, ec] = std::from_chars(text.data() + 3, text.data() + 5, value, 16);
  if (ec != std::errc() || end != text.data() + 5) return -1;
  return value;
}

// Whether "▁" occurs in `text` right after a character other than "▁".
bool HasInnerSpaceMark(std::string_view text) {
  for (size_t k = text.find(kSpaceMark, 1); k != std::string_view::npos;
       k = text.find(kSpaceMark, k + 1)) {
    if (k < kSpaceMark.size() ||
        text.substr(k - kSpaceMark.size(), kSpaceMark.size()) != kSpaceMark) {
      return true;
    }
  }
  return false;
}

std::string UnescapeSpaces(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    if (text.substr(pos).starts_with(kSpaceMark)) {
      out.push_back(' ');
      pos += kSpaceMark.size();
    } else {
      out.push_back(text[pos++]);
    }
  }
  return out;
}

}  // namespace

SpmTokenizer::SpmTokenizer(VocabSpec&& spec, bool add_space_prefix)
    : VocabTokenizer(std::move(spec)), add_space_prefix_(add_space_prefix) {
  const size_t n = tokens().size();
  scores_ = std::move(spec.scores);
  scores_.resize(n, 0.0f);
  if (!spec.merges.empty()) merge_ranks_ = MergeRanks(spec.merges, token_to_id());
  byte_ids_.fill(-1);
  std::vector<std::string> pieces(n);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    const std::string& text = tokens()[i];
    switch (type(id)) {
      case TokenType::kByte:
        if (int byte = ParseByteToken(text); byte >= 0) {
          pieces[i] = std::string(1, static_cast<char>(byte));
          if (byte_ids_[byte] < 0) byte_ids_[byte] = id;
        } else {
          pieces[i] = text;
        }
        break;
      case TokenType::kNormal:
        pieces[i] = UnescapeSpaces(text);
        break;
      case TokenType::kUnused:
        break;
      default:  // control, unknown and user-defined tokens decode as written
        pieces[i] = text;
        break;
    }
  }
  SetTokenPieces(std::move(pieces));
  set_strip_leading_space(add_space_prefix_);
  words_are_independent_ = true;
  for (size_t i = 0; i < n && words_are_independent_; ++i) {
    const TokenType t = type(static_cast<int32_t>(i));
    if ((t == TokenType::kNormal || t == TokenType::kUserDefined) &&
        HasInnerSpaceMark(tokens()[i])) {
      words_are_independent_ = false;
    }
  }
}

int32_t SpmTokenizer::FindPiece(std::string_view piece) const {
  auto it = token_to_id().find(piece);
  if (it == token_to_id().end()) return -1;
  const TokenType t = type(it->second);
  if (t == TokenType::kNormal || t == TokenType::kUserDefined) return it->second;
  return -1;
}

void SpmTokenizer::EncodeText(std::string_view text, bool after_special,
                              std::vector<int32_t>* ids) const {
  std::string normalized;
  normalized.reserve(text.size() + 8);
  if (add_space_prefix_ && after_special) normalized.append(kSpaceMark);
  for (char c : text) {
    if (c == ' ') {
      normalized.append(kSpaceMark);
    } else {
      normalized.push_back(c);
    }
  }

  MergeScratch scratch;
  const std::string_view all(normalized);
  if (!words_are_independent_) {
    EncodeChunk(all, 0, all.size(), &scratch, ids);
    return;
  }
  // Cut before each "▁" run that follows another character.
  size_t begin = 0;
  for (size_t k = all.find(kSpaceMark, 1); k != std::string_view::npos;
       k = all.find(kSpaceMark, k + 1)) {
    if (k >= kSpaceMark.size() &&
        all.substr(k - kSpaceMark.size(), kSpaceMark.size()) == kSpaceMark) {
      continue;
    }
    EncodeChunk(all, begin, k, &scratch, ids);
    begin = k;
  }
  EncodeChunk(all, begin, all.size(), &scratch, ids);
}

void SpmTokenizer::EncodeChunk(std::string_view normalized, size_t begin, size_t end,
                               MergeScratch* scratch, std::vector<int32_t>* ids) const {
  auto& symbols = scratch->symbols;
  symbols.clear();
  for (size_t pos = begin; pos < end;) {
    const uint32_t len = DecodeUtf8(normalized.substr(0, end), pos).num_bytes;
    const auto index = static_cast<int32_t>(symbols.size());
    const bool last = pos + len == end;
    symbols.push_back({FindPiece(normalized.substr(pos, len)), static_cast<uint32_t>(pos), len,
                       index - 1, last ? -1 : index + 1});
    pos += len;
  }
  if (symbols.empty()) return;

  if (merge_ranks_.empty()) {
    MergeSymbols(
        scratch,
        [&](const MergeSymbol& left, const MergeSymbol& right) -> std::optional<MergeResult> {
          const int32_t id =
              FindPiece(normalized.substr(left.start, left.num_bytes + right.num_bytes));
          if (id < 0) return std::nullopt;
          return MergeResult{scores_[id], id};
        });
  } else {
    MergeSymbols(scratch, [&](const MergeSymbol& left, const MergeSymbol& right) {
      return merge_ranks_.Find(left.id, right.id);
    });
  }

  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const MergeSymbol& s = symbols[i];
    if (s.id >= 0) {
      ids->push_back(s.id);
      continue;
    }
    for (uint32_t b = 0; b < s.num_bytes; ++b) {
      const int32_t byte_id = byte_ids_[static_cast<uint8_t>(normalized[s.start + b])];
      if (byte_id >= 0) {
        ids->push_back(byte_id);
      } else {
        // No byte tokens in this vocabulary: one <unk> for the character.
        if (unk_id()) ids->push_back(*unk_id());
        break;
      }
    }
  }
}

}  // namespace ferry
