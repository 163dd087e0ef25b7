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

// Streaming: the calls of an answer as far as they are written, so that a
// call's name goes out as soon as it is complete and its arguments as they
// come (as vLLM streams them).
struct PartialToolCall {
  std::string name;       // empty until the name's string is complete
  std::string arguments;  // the arguments' JSON text so far, as written
  bool arguments_done = false;
  // The arguments are a JSON string holding the object (some models write
  // them so): they cannot be streamed as written, only sent whole.
  bool arguments_quoted = false;
  bool done = false;  // the call's object is closed
};

struct PartialToolCalls {
  // The format the calls are in (for kAuto, the one the text has so far:
  // a stream keeps to it once a call went out).
  ToolCallFormat format = ToolCallFormat::kAuto;
  std::vector<PartialToolCall> calls;  // in order; the last may be partial
  // Something that cannot be a call was seen (bad JSON, a name of the wrong
  // type): nothing more of it should stream; the end of the answer decides.
  bool malformed = false;
};

// The calls begun in `text` (the answer so far) for `format`; nullopt when
// none has begun.
std::optional<PartialToolCalls> ScanToolCalls(ToolCallFormat format, std::string_view text);
// The same for a forced list of calls: `[{"name": ..., "parameters": {...}}, ...]`.
std::optional<PartialToolCalls> ScanToolCallList(std::string_view text);

}  // namespace ferry
