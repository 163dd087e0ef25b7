// Fuzz target: the gateway's request parsing and validation
// (/v1/completions and /v1/chat/completions bodies) on arbitrary bytes: any
// JSON must give a request or an error, never a crash or a hang; the same
// bytes as a model's answer are searched for tool calls.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "nlohmann/json.hpp"
#include "server/openai_request.h"
#include "server/tool_call_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 16)) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // The same bytes as a model's answer searched for tool calls.
  for (ferry::ToolCallFormat f :
       {ferry::ToolCallFormat::kAuto, ferry::ToolCallFormat::kHermes,
        ferry::ToolCallFormat::kMistral, ferry::ToolCallFormat::kLlama3Json}) {
    (void)ferry::FindToolCalls(f, text, {"f", "get_weather"});
    (void)ferry::ContentPrefix(f, text);
  }
  nlohmann::ordered_json body = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;
  (void)ferry::ParseCompletionRequest(body, 32000);
  (void)ferry::ParseChatRequest(body, 32000);
  (void)ferry::ParseCompletionRequest(body, 1);
  return 0;
}
