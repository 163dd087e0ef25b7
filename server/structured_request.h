// Structured output in OpenAI requests: response_format (json_object,
// json_schema), vLLM's guided_json / guided_regex / guided_choice and
// structured_outputs, and chat's forced tool calls (tool_choice "required"
// or a named function), all turned into the grammar the engine enforces.
// A bad or unsupported schema is a 400 naming the parameter, found here
// before any work is queued.
#pragma once

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "server/json_fields.h"
#include "server/openai_request.h"
#include "server/tool_call_parser.h"

namespace ferry {

// Reads the structured-output parameters into o->params.structured.
absl::Status ParseStructuredOutput(const JsonFields& f, GenerationOptions* o);

// Chat's tools and tool_choice: checks the tool definitions and, for
// "required" or a named function, constrains the output to the call(s).
// "auto" and "none" leave the output free (tools still reach the template);
// with "auto" (the default when tools are given) the answer is searched
// for calls (o->auto_tool_names).
absl::Status ParseToolChoice(const nlohmann::ordered_json& body, GenerationOptions* o);

// The calls of a forced call's output `text`; nullopt when the text is not
// complete (it ran out of tokens).
std::optional<std::vector<ParsedToolCall>> ForcedToolCalls(const GenerationOptions& o,
                                                           const std::string& text);
// The message's tool_calls for a forced call's output `text` (ids from
// `id_prefix` and the call's index); null when the text is not a complete
// call (it ran out of tokens).
nlohmann::ordered_json ToolCallsJson(const GenerationOptions& o, const std::string& text,
                                     const std::string& id_prefix);
// tool_calls for calls found in an answer.
nlohmann::ordered_json ToolCallsJson(const std::vector<ParsedToolCall>& calls,
                                     const std::string& id_prefix);

}  // namespace ferry
