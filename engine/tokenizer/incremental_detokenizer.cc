#include <string>

#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/unicode.h"

namespace ferry {
namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Copies `bytes` with every invalid byte replaced by U+FFFD.
void AppendSanitized(std::string_view bytes, std::string* out) {
  for (size_t pos = 0; pos < bytes.size();) {
    const Utf8Char c = DecodeUtf8(bytes, pos);
    if (c.codepoint == kInvalidCodepoint) {
      out->append(kReplacementChar);
    } else {
      out->append(bytes.substr(pos, c.num_bytes));
    }
    pos += c.num_bytes;
  }
}

}  // namespace

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tokenizer, bool skip_special,
                                               std::optional<int32_t> previous)
    : tokenizer_(tokenizer), skip_special_(skip_special), prev_id_(previous) {}

std::string IncrementalDetokenizer::Add(int32_t id) {
  if (!prev_id_) {
    pending_.append(tokenizer_.Decode(std::span<const int32_t>(&id, 1), skip_special_));
  } else {
    // What this token adds after its predecessor.
    const int32_t pair[2] = {*prev_id_, id};
    const std::string before = tokenizer_.Decode(std::span<const int32_t>(pair, 1), skip_special_);
    const std::string both = tokenizer_.Decode(pair, skip_special_);
    if (both.starts_with(before)) {
      pending_.append(both, before.size());
    } else {
      pending_.append(tokenizer_.Decode(std::span<const int32_t>(&id, 1), skip_special_));
    }
  }
  prev_id_ = id;
  const size_t complete = CompleteUtf8Prefix(pending_);
  std::string out;
  AppendSanitized(std::string_view(pending_).substr(0, complete), &out);
  pending_.erase(0, complete);
  return out;
}

std::string IncrementalDetokenizer::Flush() {
  std::string out;
  AppendSanitized(pending_, &out);
  pending_.clear();
  return out;
}

}  // namespace ferry
