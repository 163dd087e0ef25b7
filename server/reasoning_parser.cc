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

ReasoningSplit SplitReasoning(ReasoningFormat format, std::string_view text, bool final) {
  ReasoningSplit out;
  if (format == ReasoningFormat::kNone) {
    out.content = std::string(text);
    return out;
  }
  // Leading whitespace before an opening tag is the model's, not content.
  const size_t lead = std::min(text.find_first_not_of(" \t\r\n"), text.size());
  std::string_view rest = text.substr(lead);
  bool opened = rest.starts_with(kStart);
  if (!opened && !final && kStart.starts_with(rest)) return out;  // "<thi": may be the tag
  if (opened) {
    rest = rest.substr(kStart.size());
  } else if (format == ReasoningFormat::kQwen3) {
    out.content = std::string(text);  // no thinking in this answer
    return out;
  } else {
    rest = text;
  }
  const size_t end = rest.find(kEnd);
  if (end == std::string_view::npos) {
    // Still thinking (or never stopped: it is all reasoning).
    const size_t hold = final ? 0 : PartialMarkerLength(rest, kEnd);
    out.reasoning = std::string(rest.substr(0, rest.size() - hold));
    return out;
  }
  out.reasoning = std::string(rest.substr(0, end));
  out.content = std::string(rest.substr(end + kEnd.size()));
  return out;
}

}  // namespace ferry
