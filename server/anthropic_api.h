// Anthropic's Messages API (POST /v1/messages, POST
// /v1/messages/count_tokens) on top of chat completions, for clients built
// on Anthropic's SDKs: a request becomes the equivalent chat request
// (system, text, tool_use and tool_result blocks as messages; tools with
// input_schema as function tools; stop_sequences as stop), and the chat
// answer becomes a Message (thinking, text and tool_use blocks, stop_reason)
// or its stream of events (message_start, content blocks and their deltas,
// message_delta, message_stop). Errors take Anthropic's shape.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "server/http_types.h"

namespace ferry {

struct AnthropicRequest {
  nlohmann::ordered_json chat_body;  // the equivalent /v1/chat/completions body
  std::vector<std::string> stop_sequences;
  bool stream = false;
  // thinking.budget_tokens (the gateway passes it on when it serves a
  // reasoning model; other models have no thinking to bound).
  std::optional<int64_t> thinking_budget;
};

// `count_tokens`: the body of /v1/messages/count_tokens (no max_tokens).
// Every error is an InvalidArgument naming the Messages parameter.
absl::StatusOr<AnthropicRequest> ParseAnthropicRequest(const nlohmann::ordered_json& body,
                                                       bool count_tokens);

// A whole chat completion (its JSON body) as a Message.
nlohmann::ordered_json ChatCompletionToMessage(const nlohmann::ordered_json& completion,
                                               const AnthropicRequest& request);

// An error as Anthropic's clients read it:
// {"type": "error", "error": {"type": ..., "message": ...}}.
HttpResponse AnthropicErrorResponse(const absl::Status& status);

// Turns a chat completion's server-sent events, written to it one event per
// call, into a Message's events on `out`.
class AnthropicEventWriter : public ChunkWriter {
 public:
  AnthropicEventWriter(ChunkWriter& out, const AnthropicRequest& request)
      : out_(out), request_(request) {}
  bool Write(std::string_view data) override;

 private:
  bool Emit(const char* type, nlohmann::ordered_json fields);
  void Start(const nlohmann::ordered_json& chunk);
  // Opens a content block of `type` unless the open one is of that type
  // (tool_use blocks are never continued this way).
  void OpenBlock(const nlohmann::ordered_json& block);
  void CloseBlock();
  void ToolCallDelta(const nlohmann::ordered_json& call);
  void Finish();

  ChunkWriter& out_;
  const AnthropicRequest& request_;
  bool ok_ = true;
  bool started_ = false;
  bool ended_ = false;
  int blocks_ = 0;          // content blocks opened so far
  std::string open_type_;   // the open block's type, empty when none
  int64_t open_call_ = -1;  // the chat tool-call index of an open tool_use block
  std::string finish_reason_;
  nlohmann::ordered_json stop_reason_;  // the chat choice's stop_reason
  nlohmann::ordered_json usage_;
};

}  // namespace ferry
