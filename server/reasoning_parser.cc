#include "server/reasoning_parser.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace ferry {
namespace {

constexpr std::string_view kStart = "<think>";
constexpr std::string_view kEnd = "</think>";

}  // namespace

absl::StatusOr<ReasoningFormat> ParseReasoningFormat(std::string_view name) {
  if (name == "none" || name.empty()) return ReasoningFormat::kNone;
  if (name == "deepseek_r1") return ReasoningFormat::kDeepSeekR1;
  if (name == "qwen3") return ReasoningFormat::kQwen3;
  return absl::InvalidArgumentError(absl::StrCat("unknown reasoning parser '", std::string(name),
                                                 "' (none, deepseek_r1 or qwen3)"));
}

ReasoningTags TagsOf(ReasoningFormat format) {
  switch (format) {
    case ReasoningFormat::kNone:
      return {};
    case ReasoningFormat::kDeepSeekR1:
      return {"", kEnd};
    case ReasoningFormat::kQwen3:
      return {kStart, kEnd};
  }
  return {};
}

ReasoningSplit SplitReasoning(ReasoningFormat format, std::string_view text, bool final) {
  ReasoningStream stream(format);
  stream.Append(text, final);
  return ReasoningSplit{std::string(stream.reasoning()), std::string(stream.content())};
}

void ReasoningStream::Append(std::string_view text, bool final) {
  raw_.append(text);
  const std::string_view raw = raw_;
  if (state_ == State::kOpening) {
    if (format_ == ReasoningFormat::kNone) {
      state_ = State::kAnswer;
    } else {
      // Leading whitespace before an opening tag is the model's, not content.
      const size_t lead = std::min(raw.find_first_not_of(" \t\r\n"), raw.size());
      const std::string_view rest = raw.substr(lead);
      if (rest.starts_with(kStart)) {
        state_ = State::kThinking;
        reasoning_begin_ = lead + kStart.size();
      } else if (!final && kStart.starts_with(rest)) {
        return;  // "<thi": may still be the tag
      } else if (format_ == ReasoningFormat::kQwen3) {
        state_ = State::kAnswer;  // no thinking in this answer
      } else {
        state_ = State::kThinking;  // DeepSeek-R1: the prompt opened it
      }
    }
    search_from_ = reasoning_begin_;
  }
  if (state_ == State::kThinking) {
    const size_t end = raw.find(kEnd, search_from_);
    if (end == std::string_view::npos) {
      // Still thinking (or, at the end, never stopped: it was all reasoning).
      const size_t hold = final ? 0 : PartialMarkerLength(raw.substr(reasoning_begin_), kEnd);
      reasoning_end_ = raw.size() - hold;
      search_from_ = std::max(reasoning_begin_, raw.size() - std::min(raw.size(), kEnd.size() - 1));
      return;
    }
    reasoning_end_ = end;
    content_begin_ = end + kEnd.size();
    state_ = State::kAnswer;
  }
  content_end_ = raw.size();
}

std::string_view ReasoningStream::reasoning() const {
  return std::string_view(raw_).substr(reasoning_begin_, reasoning_end_ - reasoning_begin_);
}

std::string_view ReasoningStream::content() const {
  return std::string_view(raw_).substr(content_begin_, content_end_ - content_begin_);
}

}  // namespace ferry
