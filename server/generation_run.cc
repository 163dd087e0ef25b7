#include "server/generation_run.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "server/openai_error.h"
#include "server/structured_request.h"

namespace ferry {
namespace {

// A stream with nothing to say for this long sends an SSE comment, which
// keeps proxies from timing out and finds clients that went away.
constexpr absl::Duration kKeepAliveInterval = absl::Seconds(10);

Json StopReasonJson(const std::string& stop_reason, int32_t stop_token) {
  if (!stop_reason.empty()) return stop_reason;
  if (stop_token >= 0) return stop_token;
  return nullptr;
}

}  // namespace

GenerationRun::GenerationRun(const GatewayContext& ctx, GenerationPlan plan, Admission::Permit permit,
                             absl::Time arrival)
    : ctx_(ctx),
      plan_(std::move(plan)),
      permit_(std::move(permit)),
      arrival_(arrival),
      deadline_(arrival + ctx.options.request_timeout) {
  const int n = plan_.options.n;
  const int total = static_cast<int>(plan_.prompts.size()) * n;
  stream_ = std::make_shared<RequestStream>(total);
  choices_.resize(total);
  cached_per_prompt_.assign(plan_.prompts.size(), 0);
  if (plan_.echo && !plan_.options.stream) {
    for (int i = 0; i < total; ++i) {
      int p = i / n;
      choices_[i].text = plan_.echo_texts[p];
    }
  }
}

GenerationRun::~GenerationRun() {
  if (!request_ids_.empty() && !finished_) {
    AbortAll();
    ctx_.metrics->aborted->Increment();
  }
  for (const std::string& id : request_ids_) ctx_.active->Remove(id);
  RecordMetrics();
}

absl::Status GenerationRun::Start() {
  for (size_t p = 0; p < plan_.prompts.size(); ++p) {
    v1::GenerateRequest request;
    request.set_request_id(absl::StrCat(plan_.header.id, "-", p));
    request.mutable_prompt_ids()->Add(plan_.prompts[p].begin(), plan_.prompts[p].end());
    *request.mutable_params() = plan_.options.params;
    request.mutable_params()->set_max_tokens(plan_.max_tokens[p]);
    request.set_priority(plan_.options.priority);
    request.set_stream(plan_.options.stream);
    ctx_.active->Add(request.request_id());
    absl::Status s = ctx_.backend->Generate(request, stream_->CallbackFor(static_cast<int>(p)));
    if (!s.ok()) {
      ctx_.active->Remove(request.request_id());
      AbortAll();
      finished_ = true;  // nothing of this request runs any more
      return s;
    }
    request_ids_.push_back(request.request_id());
  }
  return absl::OkStatus();
}

void GenerationRun::AbortAll() {
  if (aborted_) return;
  aborted_ = true;
  for (const std::string& id : request_ids_) ctx_.backend->Abort(id);
}

int GenerationRun::ChoiceIndex(const RequestStream::Item& item) const {
  int sample = item.event.sample_index();
  if (sample < 0 || sample >= plan_.options.n) return -1;
  return item.prompt_index * plan_.options.n + sample;
}

bool GenerationRun::Finished() const {
  return std::all_of(choices_.begin(), choices_.end(), [](const Choice& c) { return IsFinal(c.finish); });
}

int GenerationRun::Apply(const RequestStream::Item& item) {
  int index = ChoiceIndex(item);
  if (index < 0) return -1;
  Choice& c = choices_[index];
  const v1::TokenEvent& ev = item.event;
  if (IsFinal(c.finish)) return -1;  // nothing counts after a sample's end
  if (plan_.options.prompt_logprobs >= 0 && !c.prompt_logprobs_in) {
    // vLLM's prompt_logprobs, from the sample's first event.
    c.prompt_logprobs =
        PromptLogprobsJson(ctx_.assets->tokenizer(), plan_.prompts[item.prompt_index],
                           ev.prompt_logprobs(), plan_.options.prompt_logprobs);
    c.prompt_logprobs_in = true;
  }
  // The echoed prompt's tokens come first: the first event brings their logprobs.
  if (EchoLogprobs() && !plan_.options.stream && !c.prompt_logged) {
    c.completion_logprobs.AddPromptTokens(ctx_.assets->tokenizer(),
                                          plan_.prompts[item.prompt_index], ev.prompt_logprobs(),
                                          plan_.options.logprobs, &c.text_offset);
    c.prompt_logged = true;
  }
  if (plan_.echo_only) {
    // The token run for the prompt's logprobs is not the client's.
    if (IsFinal(ev.finish_reason())) {
      c.finish = ev.finish_reason() == v1::FINISH_REASON_ERROR ? ev.finish_reason() : v1::FINISH_REASON_LENGTH;
      c.error = ev.error();
      c.error_code = ev.error_code();
    }
    return index;  // c.tokens stays 0: no completion tokens in the usage
  }
  if (ev.token_ids_size() > 0) {
    absl::Time now = absl::Now();
    if (!first_token_time_) first_token_time_ = now;
    last_token_time_ = now;
    c.tokens += ev.token_ids_size();
  }
  if (SplitsReasoning()) {
    // c.text is the answer after the thinking: what is content, and where
    // tool calls are looked for.
    if (!c.thinking) c.thinking = std::make_unique<ReasoningStream>(ctx_.options.reasoning_format);
    const bool was_thinking = c.thinking->thinking();
    c.thinking->Append(ev.text(), IsFinal(ev.finish_reason()));
    // The tokens of the thinking, its end tag's included.
    if (was_thinking || c.thinking->thinking()) c.reasoning_tokens += ev.token_ids_size();
    // Each part only grows: append what is new.
    c.reasoning.append(c.thinking->reasoning().substr(c.reasoning.size()));
    c.text.append(c.thinking->content().substr(c.text.size()));
  } else {
    c.text += ev.text();
  }
  if (plan_.options.logprobs >= 0 && !plan_.options.stream) {
    for (const v1::TokenLogprob& lp : ev.logprobs()) {
      if (plan_.header.chat) {
        c.chat_logprobs.Add(ctx_.assets->tokenizer(), lp, plan_.options.logprobs);
      } else {
        c.completion_logprobs.Add(ctx_.assets->tokenizer(), lp, &c.text_offset);
      }
    }
  }
  if (IsFinal(ev.finish_reason())) {
    c.finish = ev.finish_reason();
    c.stop_reason = ev.stop_reason();
    c.stop_token = ev.stop_token() > 0 ? ev.stop_token() : -1;
    c.error = ev.error();
    c.error_code = ev.error_code();
    c.completion_tokens_reported = ev.usage().completion_tokens();
    int64_t& cached = cached_per_prompt_[item.prompt_index];
    cached = std::max<int64_t>(cached, ev.usage().cached_prompt_tokens());
  }
  return index;
}

UsageCounts GenerationRun::Usage() const {
  UsageCounts u;
  for (const auto& p : plan_.prompts) u.prompt_tokens += static_cast<int64_t>(p.size());
  for (const Choice& c : choices_) {
    u.completion_tokens += c.completion_tokens_reported > 0 ? c.completion_tokens_reported : c.tokens;
  }
  for (int64_t cached : cached_per_prompt_) u.cached_prompt_tokens += cached;
  if (SplitsReasoning()) {
    u.reasoning_tokens = 0;
    for (const Choice& c : choices_) *u.reasoning_tokens += c.reasoning_tokens;
  }
  return u;
}

absl::Status GenerationRun::ErrorOf(const Choice& c) const {
  absl::StatusCode code = c.error_code > 0 && c.error_code <= 16 ? static_cast<absl::StatusCode>(c.error_code)
                                                                 : absl::StatusCode::kInternal;
  std::string message = c.error.empty() ? "the generation failed" : c.error;
  return absl::Status(code, message);
}

absl::Status GenerationRun::TimeoutError() const {
  return absl::DeadlineExceededError(absl::StrCat("the request timed out after ",
                                                  absl::FormatDuration(ctx_.options.request_timeout)));
}

absl::Status GenerationRun::AwaitFirst() {
  while (buffered_.empty() && !stream_->finished()) {
    if (!stream_->WaitAndTake(deadline_, &buffered_)) {
      AbortAll();
      return TimeoutError();
    }
  }
  if (!buffered_.empty()) {
    const v1::TokenEvent& first = buffered_.front().event;
    if (first.finish_reason() == v1::FINISH_REASON_ERROR && first.token_ids_size() == 0) {
      AbortAll();
      finished_ = true;
      Choice c;
      c.error = first.error();
      c.error_code = first.error_code();
      return ErrorOf(c);
    }
  }
  return absl::OkStatus();
}

Json GenerationRun::ChoiceJson(int index) const {
  const Choice& c = choices_[index];
  Json j = Json::object();
  j["index"] = index;
  Json finish = FinishReasonJson(c.finish);
  if (plan_.header.chat) {
    Json message = Json{{"role", "assistant"}, {"content", c.text}};
    if (plan_.options.tool_call != GenerationOptions::ToolCall::kNone) {
      Json calls = ToolCallsJson(plan_.options, c.text, ToolCallId(index));
      if (!calls.is_null()) {
        message["content"] = nullptr;
        message["tool_calls"] = std::move(calls);
        if (plan_.options.tool_call == GenerationOptions::ToolCall::kRequired)
          finish = "tool_calls";
      }
    } else if (AutoToolCalls()) {
      auto parsed = FindAutoToolCalls(ctx_.options.tool_call_format, c.text);
      if (parsed) {
        std::string content = c.text.substr(0, parsed->content_end);
        const size_t b = content.find_first_not_of(" \t\r\n");
        message["content"] =
            b == std::string::npos
                ? Json(nullptr)
                : Json(content.substr(b, content.find_last_not_of(" \t\r\n") - b + 1));
        message["tool_calls"] = ToolCallsJson(parsed->calls, ToolCallId(index));
        finish = "tool_calls";
      }
    }
    if (SplitsReasoning()) {
      if (message["content"] == "") message["content"] = nullptr;
      message["reasoning_content"] = c.reasoning.empty() ? Json(nullptr) : Json(c.reasoning);
    }
    j["message"] = std::move(message);
    j["logprobs"] = plan_.options.logprobs >= 0 ? c.chat_logprobs.ToJson() : Json(nullptr);
  } else {
    j["text"] = c.text;
    j["logprobs"] = plan_.options.logprobs >= 0 ? c.completion_logprobs.ToJson() : Json(nullptr);
  }
  j["finish_reason"] = std::move(finish);
  j["stop_reason"] = StopReasonJson(c.stop_reason, c.stop_token);
  if (!plan_.header.chat && plan_.options.prompt_logprobs >= 0)
    j["prompt_logprobs"] = c.prompt_logprobs;
  return j;
}

absl::StatusOr<HttpResponse> GenerationRun::Collect() {
  for (const auto& item : buffered_) Apply(item);
  buffered_.clear();
  std::vector<RequestStream::Item> items;
  while (!Finished()) {
    items.clear();
    if (!stream_->WaitAndTake(deadline_, &items)) {
      AbortAll();
      return TimeoutError();
    }
    for (const auto& item : items) Apply(item);
  }
  finished_ = true;
  for (const Choice& c : choices_) {
    if (c.finish == v1::FINISH_REASON_ERROR) return ErrorOf(c);
  }
  Json body = ResponseTop(plan_.header, /*chunk=*/false);
  Json choices = Json::array();
  for (size_t i = 0; i < choices_.size(); ++i) choices.push_back(ChoiceJson(static_cast<int>(i)));
  body["choices"] = std::move(choices);
  body["usage"] = UsageJson(Usage());
  // Chat has one prompt: vLLM puts its logprobs beside the choices.
  if (plan_.header.chat && plan_.options.prompt_logprobs >= 0)
    body["prompt_logprobs"] = choices_[0].prompt_logprobs;
  HttpResponse r;
  r.body = Dump(body);
  return r;
}

Json GenerationRun::StartChunk(int index, const v1::TokenEvent* first) {
  Choice& c = choices_[index];
  c.started = true;
  Json choice = Json::object();
  choice["index"] = index;
  if (plan_.header.chat) {
    choice["delta"] = Json{{"role", "assistant"}, {"content", ""}};
    choice["logprobs"] = nullptr;
  } else {
    int p = index / plan_.options.n;
    choice["text"] = plan_.echo_texts[p];
    if (plan_.options.logprobs >= 0) {
      CompletionLogprobs lp;
      lp.AddPromptTokens(
          ctx_.assets->tokenizer(), plan_.prompts[p],
          first != nullptr ? first->prompt_logprobs() : v1::TokenEvent().prompt_logprobs(),
          plan_.options.logprobs, &c.text_offset);
      c.prompt_logged = true;
      choice["logprobs"] = lp.ToJson();
    } else {
      choice["logprobs"] = nullptr;
    }
  }
  choice["finish_reason"] = nullptr;
  Json chunk = ResponseTop(plan_.header, /*chunk=*/true);
  chunk["choices"] = Json::array({std::move(choice)});
  if (plan_.options.include_usage) chunk["usage"] = nullptr;
  return chunk;
}

std::string GenerationRun::ToolCallId(int index) const {
  return absl::StrCat("call_", IdSuffix(plan_.header.id), "_", index);
}

Json GenerationRun::ToolCallDelta(int index, const v1::TokenEvent& ev, Json* finish) {
  Choice& c = choices_[index];
  const bool final = IsFinal(ev.finish_reason());
  if (plan_.options.tool_call == GenerationOptions::ToolCall::kNamed) {
    // The arguments stream as they come (after any thinking); the first
    // piece names the call.
    const std::string piece = c.text.substr(c.content_sent);
    c.content_sent = c.text.size();
    if (piece.empty()) return final ? Json::object() : Json(nullptr);
    Json call = Json{{"index", 0}, {"function", {{"arguments", piece}}}};
    if (!c.tool_call_sent) {
      call = Json{{"index", 0},
                  {"id", absl::StrCat(ToolCallId(index), "-0")},
                  {"type", "function"},
                  {"function", {{"name", plan_.options.tool_name}, {"arguments", piece}}}};
      c.tool_call_sent = true;
    }
    return Json{{"tool_calls", Json::array({std::move(call)})}};
  }
  // A list of calls streams as it is written: each call's name once it is
  // complete, then its arguments.
  Json calls = Json::array();
  if (!final) {
    StreamToolCalls(index, *ScanToolCallList(c.text), nullptr, calls);
    if (calls.empty()) return nullptr;
    return Json{{"tool_calls", std::move(calls)}};
  }
  auto parsed = ForcedToolCalls(plan_.options, c.text);
  if (!parsed && c.tool_args_sent.empty())
    return c.text.empty() ? Json::object() : Json{{"content", c.text}};
  FinishToolCalls(index, parsed ? &*parsed : nullptr, ScanToolCallList(c.text), calls);
  if (parsed && c.finish == v1::FINISH_REASON_STOP) *finish = "tool_calls";
  if (calls.empty()) return Json::object();
  return Json{{"tool_calls", std::move(calls)}};
}

void GenerationRun::StreamToolCalls(int index, const PartialToolCalls& scan,
                                    const std::vector<std::string>* functions, Json& out) {
  Choice& c = choices_[index];
  if (c.tool_stream_stopped) return;
  const size_t max_calls = plan_.options.parallel_tool_calls ? scan.calls.size() : 1;
  for (size_t i = 0; i < std::min(scan.calls.size(), max_calls); ++i) {
    const PartialToolCall& call = scan.calls[i];
    if (call.name.empty()) break;  // later calls wait for this one's name
    if (functions != nullptr &&
        std::find(functions->begin(), functions->end(), call.name) == functions->end()) {
      c.tool_stream_stopped = true;  // not a call after all; the end decides
      return;
    }
    Json entry = Json{{"index", i}};
    bool send = false;
    if (i >= c.tool_args_sent.size()) {
      entry["id"] = absl::StrCat(ToolCallId(index), "-", i);
      entry["type"] = "function";
      entry["function"] = Json{{"name", call.name}, {"arguments", ""}};
      c.tool_args_sent.push_back(0);
      send = true;
    }
    if (!call.arguments_quoted && call.arguments.size() > c.tool_args_sent[i]) {
      entry["function"]["arguments"] = call.arguments.substr(c.tool_args_sent[i]);
      c.tool_args_sent[i] = call.arguments.size();
      send = true;
    }
    if (send) out.push_back(std::move(entry));
  }
  if (scan.malformed) c.tool_stream_stopped = true;
}

void GenerationRun::FinishToolCalls(int index, const std::vector<ParsedToolCall>* parsed,
                                    const std::optional<PartialToolCalls>& scan, Json& out) {
  Choice& c = choices_[index];
  const size_t n = parsed != nullptr ? parsed->size() : c.tool_args_sent.size();
  for (size_t i = 0; i < n; ++i) {
    Json entry = Json{{"index", i}};
    if (i >= c.tool_args_sent.size()) {
      // Not begun: the whole call.
      const ParsedToolCall& p = (*parsed)[i];
      entry["id"] = absl::StrCat(ToolCallId(index), "-", i);
      entry["type"] = "function";
      entry["function"] = Json{{"name", p.name}, {"arguments", p.arguments}};
      c.tool_args_sent.push_back(p.arguments.size());
      out.push_back(std::move(entry));
      continue;
    }
    const PartialToolCall* call = scan && i < scan->calls.size() ? &scan->calls[i] : nullptr;
    if (call != nullptr && !call->arguments_quoted && !call->arguments.empty() &&
        (parsed == nullptr || call->name == (*parsed)[i].name)) {
      // The rest of the arguments as written.
      if (call->arguments.size() <= c.tool_args_sent[i]) continue;
      entry["function"] = Json{{"arguments", call->arguments.substr(c.tool_args_sent[i])}};
      c.tool_args_sent[i] = call->arguments.size();
    } else if (parsed != nullptr && c.tool_args_sent[i] == 0) {
      // Arguments that could not stream as written (a JSON string, or none).
      entry["function"] = Json{{"arguments", (*parsed)[i].arguments}};
      c.tool_args_sent[i] = (*parsed)[i].arguments.size();
    } else {
      continue;
    }
    out.push_back(std::move(entry));
  }
}

std::optional<ParsedToolCalls> GenerationRun::FindAutoToolCalls(ToolCallFormat format,
                                                                const std::string& text) const {
  auto parsed = FindToolCalls(format, text, plan_.options.auto_tool_names);
  if (parsed && !plan_.options.parallel_tool_calls && parsed->calls.size() > 1) {
    parsed->calls.resize(1);  // parallel_tool_calls: false
  }
  return parsed;
}

bool GenerationRun::SplitsReasoning() const {
  // A grammar (a response_format or a forced call) applies to the answer
  // after the thinking: the engine holds it back until then.
  return plan_.header.chat && ctx_.options.reasoning_format != ReasoningFormat::kNone;
}

bool GenerationRun::AutoToolCalls() const {
  return plan_.header.chat && plan_.options.tool_call == GenerationOptions::ToolCall::kNone &&
         !plan_.options.auto_tool_names.empty() &&
         ctx_.options.tool_call_format != ToolCallFormat::kNone;
}

Json GenerationRun::AutoToolDelta(int index, const v1::TokenEvent& ev, Json* finish) {
  Choice& c = choices_[index];
  const ToolCallFormat format =
      c.tool_format != ToolCallFormat::kAuto ? c.tool_format : ctx_.options.tool_call_format;
  const std::vector<std::string>& names = plan_.options.auto_tool_names;
  Json delta = Json::object();
  Json calls = Json::array();
  if (!IsFinal(ev.finish_reason())) {
    // Content goes out as far as no call can have begun; a call's name once
    // it is complete (and names a listed function), then its arguments.
    const size_t safe = ContentPrefix(format, c.text);
    if (safe > c.content_sent) {
      delta["content"] = c.text.substr(c.content_sent, safe - c.content_sent);
      c.content_sent = safe;
    }
    if (auto scan = ScanToolCalls(format, c.text)) {
      StreamToolCalls(index, *scan, &names, calls);
      if (!c.tool_args_sent.empty()) c.tool_format = scan->format;
    }
    if (!calls.empty()) delta["tool_calls"] = std::move(calls);
    return delta.empty() ? Json(nullptr) : delta;
  }
  auto parsed = FindAutoToolCalls(format, c.text);
  const bool streamed = !c.tool_args_sent.empty();
  // Text after streamed calls that did not parse is not content either.
  const size_t end = parsed     ? std::max(parsed->content_end, c.content_sent)
                     : streamed ? c.content_sent
                                : c.text.size();
  std::string rest = c.text.substr(c.content_sent, end - c.content_sent);
  c.content_sent = end;
  if (!rest.empty() && (!parsed || rest.find_first_not_of(" \t\r\n") != std::string::npos)) {
    delta["content"] = std::move(rest);
  }
  if (parsed || streamed) {
    FinishToolCalls(index, parsed ? &parsed->calls : nullptr, ScanToolCalls(format, c.text), calls);
    if (!calls.empty()) delta["tool_calls"] = std::move(calls);
  }
  if (parsed) *finish = "tool_calls";
  return delta;
}

Json GenerationRun::StreamChunk(int index, const RequestStream::Item& item) {
  Choice& c = choices_[index];
  const v1::TokenEvent& ev = item.event;
  Json choice = Json::object();
  choice["index"] = index;
  Json logprobs = nullptr;
  if (plan_.options.logprobs >= 0 && ev.logprobs_size() > 0 && !plan_.echo_only) {
    if (plan_.header.chat) {
      ChatLogprobs lp;
      for (const auto& t : ev.logprobs()) lp.Add(ctx_.assets->tokenizer(), t, plan_.options.logprobs);
      logprobs = lp.ToJson();
    } else {
      CompletionLogprobs lp;
      for (const auto& t : ev.logprobs()) lp.Add(ctx_.assets->tokenizer(), t, &c.text_offset);
      logprobs = lp.ToJson();
    }
  }
  Json finish =
      FinishReasonJson(IsFinal(ev.finish_reason()) ? c.finish : v1::FINISH_REASON_UNSPECIFIED);
  if (plan_.header.chat && plan_.options.tool_call != GenerationOptions::ToolCall::kNone) {
    choice["delta"] = ToolCallDelta(index, ev, &finish);
  } else if (AutoToolCalls()) {
    choice["delta"] = AutoToolDelta(index, ev, &finish);
  } else if (plan_.header.chat && SplitsReasoning()) {
    // The content grows only once the thinking is over.
    choice["delta"] = IsFinal(ev.finish_reason()) ? Json::object() : Json(nullptr);
    if (c.text.size() > c.content_sent) {
      choice["delta"] = Json{{"content", c.text.substr(c.content_sent)}};
      c.content_sent = c.text.size();
    }
  } else if (plan_.header.chat) {
    choice["delta"] = ev.text().empty() && IsFinal(ev.finish_reason()) ? Json::object()
                                                                        : Json{{"content", ev.text()}};
  } else {
    choice["text"] = plan_.echo_only ? std::string() : ev.text();
  }
  if (SplitsReasoning() && c.reasoning.size() > c.reasoning_sent) {
    // The thinking streams ahead of any content in the same chunk.
    Json delta = Json{{"reasoning_content", c.reasoning.substr(c.reasoning_sent)}};
    if (choice["delta"].is_object()) {
      for (auto& [k, v] : choice["delta"].items()) delta[k] = std::move(v);
    }
    choice["delta"] = std::move(delta);
    c.reasoning_sent = c.reasoning.size();
  }
  // Nothing to say yet (text held back as a possible tool call).
  if (choice.contains("delta") && choice["delta"].is_null()) {
    if (logprobs.is_null()) return nullptr;
    choice["delta"] = Json::object();
  }
  choice["logprobs"] = std::move(logprobs);
  choice["finish_reason"] = std::move(finish);
  if (IsFinal(ev.finish_reason())) choice["stop_reason"] = StopReasonJson(c.stop_reason, c.stop_token);
  Json chunk = ResponseTop(plan_.header, /*chunk=*/true);
  chunk["choices"] = Json::array({std::move(choice)});
  if (plan_.options.include_usage) chunk["usage"] = nullptr;
  return chunk;
}

void GenerationRun::StreamTo(ChunkWriter& writer) {
  bool client_gone = false;
  auto send = [&](const std::string& data) {
    if (!client_gone && !writer.Write(data)) client_gone = true;
    return !client_gone;
  };
  auto give_up = [&]() {
    AbortAll();
    Logger("gateway")->debug("req={} client went away; aborted", plan_.header.id);
  };
  for (size_t i = 0; i < choices_.size(); ++i) {
    if (plan_.header.chat || (plan_.echo && !EchoLogprobs())) {
      if (!send(SseEvent(StartChunk(static_cast<int>(i))))) return give_up();
    }
  }
  std::vector<RequestStream::Item> items = std::move(buffered_);
  buffered_.clear();
  absl::Time last_write = absl::Now();
  while (true) {
    for (const auto& item : items) {
      int index = Apply(item);
      if (index < 0) continue;
      const v1::TokenEvent& ev = item.event;
      if (EchoLogprobs() && !choices_[index].started && ev.finish_reason() != v1::FINISH_REASON_ERROR) {
        if (!send(SseEvent(StartChunk(index, &ev)))) return give_up();
      }
      if (ev.finish_reason() == v1::FINISH_REASON_ERROR) {
        AbortAll();
        send(SseEvent(Json::parse(ErrorBody(ErrorOf(choices_[index])))));
        send(kSseDone);
        finished_ = true;
        return;
      }
      bool empty = ((ev.text().empty() && ev.logprobs_size() == 0) || plan_.echo_only) &&
                   !IsFinal(ev.finish_reason());
      if (empty) continue;
      Json chunk = StreamChunk(index, item);
      if (chunk.is_null()) continue;  // held back
      if (!send(SseEvent(chunk))) return give_up();
      last_write = absl::Now();
    }
    items.clear();
    if (Finished()) break;
    absl::Time wake = std::min(deadline_, last_write + kKeepAliveInterval);
    if (!stream_->WaitAndTake(wake, &items)) {
      if (absl::Now() >= deadline_) {
        AbortAll();
        send(SseEvent(Json::parse(ErrorBody(TimeoutError()))));
        send(kSseDone);
        return;
      }
      if (!send(": keep-alive\n\n")) return give_up();
      last_write = absl::Now();
    }
  }
  finished_ = true;
  if (plan_.options.include_usage) {
    Json chunk = ResponseTop(plan_.header, /*chunk=*/true);
    chunk["choices"] = Json::array();
    chunk["usage"] = UsageJson(Usage());
    if (!send(SseEvent(chunk))) return;
  }
  send(kSseDone);
}

void GenerationRun::RecordMetrics() {
  if (request_ids_.empty()) return;
  GatewayMetrics& m = *ctx_.metrics;
  const std::vector<std::string> labels = {plan_.endpoint};
  UsageCounts u = Usage();
  m.prompt_tokens->Increment(static_cast<double>(u.prompt_tokens));
  m.generation_tokens->Increment(static_cast<double>(u.completion_tokens));
  m.cached_prompt_tokens->Increment(static_cast<double>(u.cached_prompt_tokens));
  m.prompt_tokens_per_request->Observe(static_cast<double>(u.prompt_tokens));
  m.generation_tokens_per_request->Observe(static_cast<double>(u.completion_tokens));
  if (!first_token_time_) return;
  m.ttft->WithLabels(labels)->Observe(absl::ToDoubleSeconds(*first_token_time_ - arrival_));
  if (finished_) m.e2e_latency->WithLabels(labels)->Observe(absl::ToDoubleSeconds(last_token_time_ - arrival_));
  int64_t max_tokens = 0;
  for (const Choice& c : choices_) max_tokens = std::max(max_tokens, c.tokens);
  if (max_tokens > 1) {
    m.tpot->WithLabels(labels)->Observe(absl::ToDoubleSeconds(last_token_time_ - *first_token_time_) /
                                        static_cast<double>(max_tokens - 1));
  }
}

}  // namespace ferry
