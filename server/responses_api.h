// OpenAI's Responses API (POST /v1/responses) on top of chat completions: a
// request becomes the equivalent chat request (input items as messages,
// instructions as the system message, flat function tools as chat tools,
// text.format as response_format), and the chat answer becomes a Response
// object, or, streaming, the Response events (response.created, output
// items, text and function-call argument deltas, response.completed).
// Nothing is stored: previous_response_id, conversations and background
// runs are refused with a 400 that says so.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "server/http_types.h"

namespace ferry {

struct ResponsesRequest {
  nlohmann::ordered_json chat_body;  // the equivalent /v1/chat/completions body
  // The request's settings as a Response reports them (instructions,
  // max_output_tokens, temperature, tools, text, metadata, ...).
  nlohmann::ordered_json settings;
  bool stream = false;
  bool logprobs = false;  // output_text parts carry logprobs
  bool truncate = false;  // truncation "auto": drop the oldest items to fit
};

// Every error is an InvalidArgument naming the Responses parameter.
absl::StatusOr<ResponsesRequest> ParseResponsesRequest(const nlohmann::ordered_json& body);

// A chat request's error, its parameter named as the Responses request
// names it (messages -> input, max_completion_tokens -> max_output_tokens,
// response_format -> text.format, logprobs -> top_logprobs).
absl::Status ToResponsesError(absl::Status status);

// A whole chat completion (its JSON body) as a Response.
nlohmann::ordered_json ChatCompletionToResponse(const nlohmann::ordered_json& completion,
                                                const ResponsesRequest& request);

// Turns a chat completion's server-sent events, written to it one event per
// call, into the Response's events on `out`. A chat error event becomes an
// "error" event and response.failed.
class ResponsesEventWriter : public ChunkWriter {
 public:
  ResponsesEventWriter(ChunkWriter& out, const ResponsesRequest& request)
      : out_(out), request_(request) {}
  bool Write(std::string_view data) override;

 private:
  bool Emit(const char* type, nlohmann::ordered_json fields);
  void Start(const nlohmann::ordered_json& chunk);
  // Adds an output item holding one content part, announcing both; its
  // output index.
  int OpenItem(nlohmann::ordered_json item, nlohmann::ordered_json part);
  // Appends to item `at`'s part and sends `event` with the delta (and
  // `fields`).
  void AppendText(int at, const char* event, const std::string& text,
                  nlohmann::ordered_json fields);
  // Sends `event` with the part's whole text (and `fields`), then the part's
  // and the item's done events.
  void CloseItem(int at, const char* event, const std::string& status,
                 nlohmann::ordered_json fields);
  void ReasoningDelta(const std::string& text);
  void TextDelta(const std::string& text, const nlohmann::ordered_json& logprobs);
  void ToolCallDelta(const nlohmann::ordered_json& call);
  void CloseReasoning();
  void CloseMessage();
  void CloseCalls();
  void Finish();
  void Fail(const nlohmann::ordered_json& error);

  ChunkWriter& out_;
  const ResponsesRequest& request_;
  bool ok_ = true;  // false once `out` refused a write (the client left)
  bool started_ = false;
  bool ended_ = false;
  int64_t sequence_ = 0;
  std::string id_;      // resp_...
  std::string suffix_;  // what follows the prefix, for the items' ids
  std::string model_;
  int64_t created_at_ = 0;
  nlohmann::ordered_json output_ = nlohmann::ordered_json::array();
  int reasoning_ = -1;  // output index of the open reasoning item, -1 when none
  int message_ = -1;    // output index of the open message, -1 when none
  int messages_ = 0;    // messages opened so far
  std::vector<std::pair<int64_t, int>> calls_;  // open calls: chat index, output index
  std::string finish_reason_;
  nlohmann::ordered_json usage_;
};

}  // namespace ferry
