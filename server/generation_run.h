// One generation request from HTTP to the backend and back: it starts one
// backend request per prompt, waits for the first event (so an error before
// any output is still a proper HTTP error), then either collects the whole
// answer or streams it as server-sent events. Destroying a run that has not
// finished aborts it upstream, which frees its KV blocks.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/admission.h"
#include "server/gateway_context.h"
#include "server/http_types.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/request_stream.h"

namespace ferry {

struct GenerationPlan {
  ResponseHeader header;
  std::string endpoint;  // metrics label
  GenerationOptions options;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<int> max_tokens;         // per prompt
  bool echo = false;
  // echo with max_tokens 0: the prompt only (and its logprobs); the backend
  // still runs one token, which is not returned.
  bool echo_only = false;
  std::vector<std::string> echo_texts;  // per prompt, with echo
};

class GenerationRun {
 public:
  GenerationRun(const GatewayContext& ctx, GenerationPlan plan, Admission::Permit permit, absl::Time arrival);
  ~GenerationRun();
  GenerationRun(const GenerationRun&) = delete;
  GenerationRun& operator=(const GenerationRun&) = delete;

  // Sends the requests. The backend's errors (InvalidArgument, Unavailable,
  // ResourceExhausted) are returned and nothing keeps running.
  absl::Status Start();
  // Waits for the first events. An error that arrives before any token is
  // returned as a status (mapped from the backend's error code).
  absl::Status AwaitFirst();
  // Waits for the end and builds the whole response (non-streaming).
  absl::StatusOr<HttpResponse> Collect();
  // Writes the SSE stream until [DONE], the client goes away (the request
  // is aborted) or the request times out.
  void StreamTo(ChunkWriter& writer);

 private:
  struct Choice {
    std::string text;
    int64_t tokens = 0;
    v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
    std::string stop_reason;
    int32_t stop_token = -1;
    std::string error;
    int error_code = 0;
    int64_t completion_tokens_reported = 0;
    int64_t text_offset = 0;
    CompletionLogprobs completion_logprobs;
    Json prompt_logprobs;             // vLLM's prompt_logprobs (null until they come)
    bool prompt_logprobs_in = false;  // the first event was read for them
    ChatLogprobs chat_logprobs;
    bool started = false;  // streaming: the first chunk went out
    bool prompt_logged = false;  // echo with logprobs: the prompt's tokens are in
    bool tool_call_sent = false;  // streaming a named tool call: its first delta went out
    size_t content_sent =
        0;  // streaming with auto tool calls or reasoning: bytes of text sent as content
    // With a reasoning parser: the answer split as it comes, its thinking,
    // and the bytes of that thinking streamed (text holds what follows it).
    std::unique_ptr<ReasoningStream> thinking;
    std::string reasoning;
    size_t reasoning_sent = 0;
    int64_t reasoning_tokens = 0;
    // Streaming tool calls: one entry per call whose name went out, the
    // bytes of its arguments sent so far.
    std::vector<size_t> tool_args_sent;
    bool tool_stream_stopped = false;  // what followed could not be a call
    // tool_choice "auto": the format of the calls streamed (kAuto until
    // one went out; then the answer is read in that format to its end).
    ToolCallFormat tool_format = ToolCallFormat::kAuto;
  };
  // Echo with logprobs: the prompt's tokens carry logprobs from the first
  // event of their sample, so they are added (and, streaming, the first
  // chunk sent) when it comes.
  bool EchoLogprobs() const { return plan_.echo && plan_.options.logprobs >= 0; }

  int ChoiceIndex(const RequestStream::Item& item) const;
  // Forced tool calls: the ids of a choice's calls, and a stream chunk's
  // delta (may set the chunk's finish reason to "tool_calls").
  std::string ToolCallId(int index) const;
  // Null when there is nothing to send yet.
  Json ToolCallDelta(int index, const v1::TokenEvent& ev, Json* finish);
  // tool_choice "auto" with tools: calls found in the answer.
  bool AutoToolCalls() const;
  // Chat with a reasoning parser: the thinking is returned apart from the
  // content (where a forced call or a grammar's answer is).
  bool SplitsReasoning() const;
  // The calls in an answer (at most one with parallel_tool_calls false).
  std::optional<ParsedToolCalls> FindAutoToolCalls(ToolCallFormat format,
                                                   const std::string& text) const;
  Json AutoToolDelta(int index, const v1::TokenEvent& ev, Json* finish);
  // Streaming tool calls: delta entries (appended to `out`) for what `scan`
  // holds beyond what went out; calls to functions not in `functions` (when
  // given) stop the streaming.
  void StreamToolCalls(int index, const PartialToolCalls& scan,
                       const std::vector<std::string>* functions, Json& out);
  // At the end: the rest of each call. `parsed` are the calls of the whole
  // answer (null when it holds none that parse: then only the rest of what
  // was streamed goes out), `scan` the calls as written.
  void FinishToolCalls(int index, const std::vector<ParsedToolCall>* parsed,
                       const std::optional<PartialToolCalls>& scan, Json& out);
  // Folds an event into its choice; returns the choice index.
  int Apply(const RequestStream::Item& item);
  bool Finished() const;
  void AbortAll();
  UsageCounts Usage() const;
  absl::Status ErrorOf(const Choice& c) const;
  absl::Status TimeoutError() const;

  Json ChoiceJson(int index) const;
  Json StreamChunk(int index, const RequestStream::Item& item);
  // `first`: the sample's first event (echo with logprobs), else null.
  Json StartChunk(int index, const v1::TokenEvent* first = nullptr);
  void RecordMetrics();

  const GatewayContext& ctx_;
  GenerationPlan plan_;
  Admission::Permit permit_;
  absl::Time arrival_;
  absl::Time deadline_;
  std::shared_ptr<RequestStream> stream_;
  std::vector<std::string> request_ids_;  // started backend requests
  std::vector<RequestStream::Item> buffered_;
  std::vector<Choice> choices_;
  std::vector<int64_t> cached_per_prompt_;
  std::optional<absl::Time> first_token_time_;
  absl::Time last_token_time_;
  bool finished_ = false;
  bool aborted_ = false;
};

}  // namespace ferry
