// Fuzz target: the gateway's request parsing and validation
// (/v1/completions, /v1/chat/completions and /v1/responses bodies) on
// arbitrary bytes: any JSON must give a request or an error, never a crash
// or a hang; the same bytes as a model's answer are searched for tool calls,
// whole and as a stream scans them, and as a chat completion stream they are
// turned into Response events.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "nlohmann/json.hpp"
#include "server/anthropic_api.h"
#include "server/openai_request.h"
#include "server/reasoning_parser.h"
#include "server/responses_api.h"
#include "server/tool_call_parser.h"

namespace {

class NullWriter : public ferry::ChunkWriter {
 public:
  bool Write(std::string_view data) override {
    bytes += data.size();
    return true;
  }
  size_t bytes = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 16)) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // The same bytes as a model's answer searched for tool calls.
  for (ferry::ToolCallFormat f :
       {ferry::ToolCallFormat::kAuto, ferry::ToolCallFormat::kHermes,
        ferry::ToolCallFormat::kMistral, ferry::ToolCallFormat::kLlama3Json}) {
    (void)ferry::FindToolCalls(f, text, {"f", "get_weather"});
    (void)ferry::ContentPrefix(f, text);
    // Streaming: what the first half of the answer shows of a call (its
    // name, its arguments so far) is never taken back by the rest.
    auto half = ferry::ScanToolCalls(f, text.substr(0, text.size() / 2));
    auto whole = ferry::ScanToolCalls(f, text);
    if (half && whole && half->format == whole->format) {
      for (size_t i = 0; i < half->calls.size(); ++i) {
        const ferry::PartialToolCall& a = half->calls[i];
        if (a.name.empty()) break;
        if (i >= whole->calls.size() || whole->calls[i].name != a.name) __builtin_trap();
        if (!a.arguments_quoted && whole->calls[i].arguments.rfind(a.arguments, 0) != 0)
          __builtin_trap();
      }
    }
  }
  (void)ferry::ScanToolCallList(text);
  // The same bytes as a reasoning model's answer, split as it streams in
  // pieces: each part only grows, and it ends as the whole answer's split.
  for (ferry::ReasoningFormat f :
       {ferry::ReasoningFormat::kDeepSeekR1, ferry::ReasoningFormat::kQwen3}) {
    ferry::ReasoningStream stream(f);
    size_t reasoning = 0, content = 0;
    for (size_t at = 0; at < text.size(); at += 3) {
      stream.Append(text.substr(at, 3), at + 3 >= text.size());
      if (stream.reasoning().size() < reasoning || stream.content().size() < content)
        __builtin_trap();
      reasoning = stream.reasoning().size();
      content = stream.content().size();
    }
    const ferry::ReasoningSplit whole = ferry::SplitReasoning(f, text, /*final=*/true);
    if (!text.empty() &&
        (whole.reasoning != stream.reasoning() || whole.content != stream.content())) {
      __builtin_trap();
    }
  }
  {
    // As a chat stream (events split at blank lines) made into Response events.
    const ferry::ResponsesRequest request;
    NullWriter sink;
    ferry::ResponsesEventWriter events(sink, request);
    const ferry::AnthropicRequest anthropic_request;
    ferry::AnthropicEventWriter anthropic_events(sink, anthropic_request);
    for (size_t pos = 0; pos <= text.size();) {
      size_t end = text.find("\n\n", pos);
      if (end == std::string_view::npos) end = text.size();
      events.Write(text.substr(pos, end - pos));
      anthropic_events.Write(text.substr(pos, end - pos));
      pos = end + 2;
    }
  }
  nlohmann::ordered_json body =
      nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;
  (void)ferry::ParseCompletionRequest(body, 32000);
  (void)ferry::ParseChatRequest(body, 32000);
  auto responses = ferry::ParseResponsesRequest(body);
  if (responses.ok()) (void)ferry::ParseChatRequest(responses->chat_body, 32000);
  for (bool count_tokens : {false, true}) {
    auto anthropic = ferry::ParseAnthropicRequest(body, count_tokens);
    if (anthropic.ok()) (void)ferry::ParseChatRequest(anthropic->chat_body, 32000);
  }
  (void)ferry::ParseCompletionRequest(body, 1);
  return 0;
}
