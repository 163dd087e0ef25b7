// Tool calls in a chat model's free text (tool_choice "auto"): the formats
// instruction-tuned models write them in, turned into OpenAI's
// message.tool_calls.
//
//   hermes       <tool_call>{"name": ..., "arguments": {...}}</tool_call>, one
//                block per call (Hermes 2/3, Qwen 2.5, many fine-tunes)
//   mistral      [TOOL_CALLS] [{"name": ..., "arguments": {...}}, ...]
//   llama3_json  the whole answer is {"name": ..., "parameters": {...}}
//                (optionally after <|python_tag|>; calls joined by ';')
//   auto         whichever of these the text holds
//
// Only calls to functions the request lists count, so that a model asked
// to write JSON about a topic is not mistaken for a call.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry {

enum class ToolCallFormat { kNone, kAuto, kHermes, kMistral, kLlama3Json };

// "none", "auto", "hermes", "mistral" or "llama3_json".
absl::StatusOr<ToolCallFormat> ParseToolCallFormat(std::string_view name);

struct ParsedToolCall {
  std::string name;
  std::string arguments;  // JSON text of an object
};

struct ParsedToolCalls {
  size_t content_end = 0;  // the text before the first call is the content
  std::vector<ParsedToolCall> calls;
};

// The calls in a finished answer; nullopt when it holds none (or one that
// does not parse, or names a function not in `functions`).
std::optional<ParsedToolCalls> FindToolCalls(ToolCallFormat format, std::string_view text,
                                             const std::vector<std::string>& functions);

// Streaming: the length of the prefix of `text` (the answer so far) that is
// content whatever comes next; the rest may be the start of a call and is
// held back until the answer ends.
size_t ContentPrefix(ToolCallFormat format, std::string_view text);

}  // namespace ferry
