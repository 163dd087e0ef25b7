#include "engine/tokenizer/sentencepiece_model.h"

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace ferry {
namespace {

constexpr size_t kMaxTokens = size_t{1} << 22;
constexpr size_t kMaxTokenBytes = size_t{1} << 16;

// One field of a protobuf message as it is on the wire.
struct WireField {
  uint32_t number = 0;
  int wire_type = 0;       // 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
  uint64_t varint = 0;     // wire type 0
  uint32_t fixed32 = 0;    // wire type 5
  std::string_view bytes;  // wire type 2
};

// Reads the fields of one message in order. Every length is checked against
// what is left; groups (wire types 3 and 4, long deprecated) are refused.
class WireReader {
 public:
  explicit WireReader(std::string_view bytes) : rest_(bytes) {}

  bool done() const { return rest_.empty(); }

  // Fills `field`; an error message (no source) for malformed bytes.
  std::optional<std::string> Next(WireField* field) {
    uint64_t key;
    if (!Varint(&key)) return "truncated or overlong field key";
    field->number = static_cast<uint32_t>(key >> 3);
    field->wire_type = static_cast<int>(key & 7);
    if (field->number == 0 || (key >> 3) > 0x1FFFFFFF) return "field number out of range";
    switch (field->wire_type) {
      case 0:
        if (!Varint(&field->varint)) return "truncated or overlong varint";
        return std::nullopt;
      case 1:
        if (rest_.size() < 8) return "truncated fixed64 field";
        rest_.remove_prefix(8);
        return std::nullopt;
      case 2: {
        uint64_t n;
        if (!Varint(&n)) return "truncated length";
        if (n > rest_.size()) return absl::StrCat("field ", field->number, " runs past the end");
        field->bytes = rest_.substr(0, n);
        rest_.remove_prefix(n);
        return std::nullopt;
      }
      case 5:
        if (rest_.size() < 4) return "truncated fixed32 field";
        std::memcpy(&field->fixed32, rest_.data(), 4);
        rest_.remove_prefix(4);
        return std::nullopt;
      default:
        return absl::StrCat("field ", field->number, " has wire type ", field->wire_type,
                            ", which is not supported");
    }
  }

 private:
  bool Varint(uint64_t* out) {
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      if (rest_.empty()) return false;
      const uint8_t b = static_cast<uint8_t>(rest_[0]);
      rest_.remove_prefix(1);
      v |= static_cast<uint64_t>(b & 0x7F) << (7 * i);
      if ((b & 0x80) == 0) {
        *out = v;
        return true;
      }
    }
    return false;
  }

  std::string_view rest_;
};

class ModelParser {
 public:
  explicit ModelParser(std::string_view source) : source_(source) {}

  absl::StatusOr<SentencePieceModel> Parse(std::string_view bytes) {
    SentencePieceModel model;
    WireReader reader(bytes);
    bool saw_trainer = false;
    while (!reader.done()) {
      WireField f;
      if (auto e = reader.Next(&f)) return Error("ModelProto", *e);
      if (f.number == 1) {
        FERRY_RETURN_IF_ERROR(Expect(f, 2, "pieces"));
        if (model.spec.tokens.size() >= kMaxTokens) return Error("pieces", "too many pieces");
        FERRY_RETURN_IF_ERROR(ParsePiece(f.bytes, &model.spec));
      } else if (f.number == 2) {
        FERRY_RETURN_IF_ERROR(Expect(f, 2, "trainer_spec"));
        FERRY_RETURN_IF_ERROR(ParseTrainer(f.bytes));
        saw_trainer = true;
      } else if (f.number == 3) {
        FERRY_RETURN_IF_ERROR(Expect(f, 2, "normalizer_spec"));
        FERRY_RETURN_IF_ERROR(ParseNormalizer(f.bytes, &model.add_dummy_prefix));
      }
    }
    if (model.spec.tokens.empty()) return Error("pieces", "there are none");
    if (model_type_ != 2) {
      static const char* kNames[] = {"", "UNIGRAM", "BPE", "WORD", "CHAR"};
      const std::string name = model_type_ >= 1 && model_type_ <= 4
                                   ? std::string(kNames[model_type_])
                                   : absl::StrCat(model_type_);
      return absl::UnimplementedError(
          absl::StrCat(Sv(source_), ": SentencePiece model_type ", name,
                       saw_trainer ? "" : " (no trainer_spec: the default)",
                       " is not supported; BPE vocabularies (Llama, Mistral) are"));
    }
    const int64_t n = static_cast<int64_t>(model.spec.tokens.size());
    const auto id = [&](int64_t v) {
      return v >= 0 && v < n ? std::optional<int32_t>(static_cast<int32_t>(v)) : std::nullopt;
    };
    model.spec.unk_id = id(unk_id_);
    model.spec.bos_id = id(bos_id_);
    model.spec.eos_id = id(eos_id_);
    model.spec.add_bos = model.spec.bos_id.has_value();
    return model;
  }

 private:
  absl::Status Error(std::string_view field, std::string_view problem) const {
    return absl::InvalidArgumentError(absl::StrCat(
        Sv(source_), ": malformed SentencePiece model: ", Sv(field), ": ", Sv(problem)));
  }
  absl::Status Expect(const WireField& f, int wire_type, std::string_view field) const {
    if (f.wire_type == wire_type) return absl::OkStatus();
    return Error(field, absl::StrCat("wire type ", f.wire_type, " where ", wire_type, " belongs"));
  }

  absl::Status ParsePiece(std::string_view bytes, VocabSpec* spec) {
    const std::string where = absl::StrCat("pieces[", spec->tokens.size(), "]");
    std::optional<std::string_view> piece;
    float score = 0;
    uint64_t type = static_cast<uint64_t>(TokenType::kNormal);
    WireReader reader(bytes);
    while (!reader.done()) {
      WireField f;
      if (auto e = reader.Next(&f)) return Error(where, *e);
      if (f.number == 1) {
        FERRY_RETURN_IF_ERROR(Expect(f, 2, where + ".piece"));
        piece = f.bytes;
      } else if (f.number == 2) {
        FERRY_RETURN_IF_ERROR(Expect(f, 5, where + ".score"));
        std::memcpy(&score, &f.fixed32, sizeof(score));
      } else if (f.number == 3) {
        FERRY_RETURN_IF_ERROR(Expect(f, 0, where + ".type"));
        type = f.varint;
      }
    }
    if (!piece || piece->empty()) return Error(where, "the piece is empty");
    if (piece->size() > kMaxTokenBytes) return Error(where, "the piece is too long");
    if (type < static_cast<uint64_t>(TokenType::kNormal) ||
        type > static_cast<uint64_t>(TokenType::kByte)) {
      return Error(where + ".type", absl::StrCat(type, " is not a piece type"));
    }
    spec->tokens.emplace_back(*piece);
    spec->scores.push_back(score);
    spec->types.push_back(static_cast<TokenType>(type));
    return absl::OkStatus();
  }

  absl::Status ParseTrainer(std::string_view bytes) {
    WireReader reader(bytes);
    while (!reader.done()) {
      WireField f;
      if (auto e = reader.Next(&f)) return Error("trainer_spec", *e);
      int64_t* target = f.number == 3    ? &model_type_
                        : f.number == 40 ? &unk_id_
                        : f.number == 41 ? &bos_id_
                        : f.number == 42 ? &eos_id_
                                         : nullptr;
      if (target == nullptr) continue;
      FERRY_RETURN_IF_ERROR(Expect(f, 0, absl::StrCat("trainer_spec field ", f.number)));
      // int32 and enum fields: negative values travel as 64-bit two's complement.
      *target = static_cast<int32_t>(static_cast<uint32_t>(f.varint));
    }
    return absl::OkStatus();
  }

  absl::Status ParseNormalizer(std::string_view bytes, bool* add_dummy_prefix) {
    WireReader reader(bytes);
    while (!reader.done()) {
      WireField f;
      if (auto e = reader.Next(&f)) return Error("normalizer_spec", *e);
      if (f.number != 3) continue;
      FERRY_RETURN_IF_ERROR(Expect(f, 0, "normalizer_spec.add_dummy_prefix"));
      *add_dummy_prefix = f.varint != 0;
    }
    return absl::OkStatus();
  }

  std::string_view source_;
  // SentencePiece's defaults.
  int64_t model_type_ = 1;  // UNIGRAM
  int64_t unk_id_ = 0;
  int64_t bos_id_ = 1;
  int64_t eos_id_ = 2;
};

// "<0x0A>": a byte token.
bool IsByteToken(std::string_view t) {
  const auto hex = [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f');
  };
  return t.size() == 6 && t.substr(0, 3) == "<0x" && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

}  // namespace

absl::StatusOr<SentencePieceModel> ParseSentencePieceModel(std::string_view bytes,
                                                           std::string_view source) {
  return ModelParser(source).Parse(bytes);
}

absl::StatusOr<VocabSpec> ParseLlama2cVocab(std::string_view bytes, int vocab_size,
                                            std::string_view source) {
  const auto error = [&](std::string_view problem) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(source), ": malformed llama2.c tokenizer: ", Sv(problem)));
  };
  if (vocab_size < 0 || static_cast<size_t>(vocab_size) > kMaxTokens) {
    return error(absl::StrCat("vocabulary size ", vocab_size, " is out of range"));
  }
  size_t pos = 0;
  const auto read_i32 = [&](int32_t* v) {
    if (bytes.size() - pos < 4) return false;
    std::memcpy(v, bytes.data() + pos, 4);
    pos += 4;
    return true;
  };
  int32_t max_token_length;
  if (!read_i32(&max_token_length)) return error("no header");
  if (max_token_length < 1 || static_cast<size_t>(max_token_length) > kMaxTokenBytes) {
    return error(absl::StrCat("max_token_length ", max_token_length, " is out of range"));
  }
  VocabSpec spec;
  while (vocab_size == 0 ? pos < bytes.size()
                         : spec.tokens.size() < static_cast<size_t>(vocab_size)) {
    const size_t id = spec.tokens.size();
    if (id >= kMaxTokens) return error("too many tokens");
    int32_t score_bits, length;
    if (!read_i32(&score_bits) || !read_i32(&length)) {
      return error(absl::StrCat("token ", id, " is truncated (the file holds ", id, " tokens)"));
    }
    if (length < 1 || length > max_token_length ||
        bytes.size() - pos < static_cast<size_t>(length)) {
      return error(absl::StrCat("token ", id, " has length ", length));
    }
    std::string_view text = bytes.substr(pos, static_cast<size_t>(length));
    pos += static_cast<size_t>(length);
    float score;
    std::memcpy(&score, &score_bits, sizeof(score));
    TokenType type = TokenType::kNormal;
    std::string token;
    if (text == "\n<s>\n" || text == "\n</s>\n") {
      token = std::string(text.substr(1, text.size() - 2));
      type = TokenType::kControl;
      (token == "<s>" ? spec.bos_id : spec.eos_id) = static_cast<int32_t>(id);
    } else if (text == "<unk>") {
      token = std::string(text);
      type = TokenType::kUnknown;
      spec.unk_id = static_cast<int32_t>(id);
    } else if (IsByteToken(text)) {
      token = std::string(text);
      type = TokenType::kByte;
    } else {
      for (char c : text) token += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
    }
    spec.tokens.push_back(std::move(token));
    spec.types.push_back(type);
    spec.scores.push_back(score);
  }
  if (spec.tokens.empty()) return error("no tokens");
  // run.c's fixed ids where the file does not mark them.
  const size_t n = spec.tokens.size();
  if (!spec.bos_id && n > 1) spec.bos_id = 1;
  if (!spec.eos_id && n > 2) spec.eos_id = 2;
  spec.add_bos = spec.bos_id.has_value();
  return spec;
}

}  // namespace ferry
