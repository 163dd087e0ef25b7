// Gateway::Completions and Gateway::ChatCompletions: parse, render and
// tokenize, fit the context, take an admission slot, then run.
#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/anthropic_api.h"
#include "server/gateway.h"
#include "server/generation_run.h"
#include "server/openai_error.h"
#include "server/responses_api.h"

namespace ferry {

absl::Status Gateway::FitContext(const GenerationOptions& options, bool chat, size_t prompt_len,
                                 int* max_tokens) const {
  const int64_t context = context_.context_length;
  const int64_t prompt = static_cast<int64_t>(prompt_len);
  const char* where = chat ? "messages" : "prompt";
  if (options.max_tokens) {
    if (prompt + *options.max_tokens > context) {
      return WithErrorCode(
          InvalidParamError(chat ? "max_completion_tokens" : "max_tokens",
                            absl::StrCat("This model's maximum context length is ", context,
                                         " tokens. However, you requested ", prompt + *options.max_tokens,
                                         " tokens (", prompt, " in the ", where, ", ", *options.max_tokens,
                                         " in the completion). Please reduce the length of the ", where,
                                         " or completion.")),
          "context_length_exceeded");
    }
    *max_tokens = static_cast<int>(*options.max_tokens);
    return absl::OkStatus();
  }
  if (prompt >= context) {
    return WithErrorCode(InvalidParamError(where, absl::StrCat("This model's maximum context length is ",
                                                               context, " tokens. However, your ", where,
                                                               " has ", prompt, " tokens, leaving no room for ",
                                                               "the completion.")),
                         "context_length_exceeded");
  }
  // OpenAI's default for completions is 16 tokens; chat may use the rest of
  // the context, or as much as the model's generation_config.json allows.
  int64_t room = context - prompt;
  int64_t limit = chat ? room : std::min<int64_t>(16, room);
  if (const auto& d = context_.assets->sampling_defaults();
      context_.options.use_generation_config && d.max_tokens) {
    limit = std::min(limit, *d.max_tokens);
  }
  *max_tokens = static_cast<int>(limit);
  return absl::OkStatus();
}

void Gateway::ApplySamplingDefaults(const Json& body, GenerationOptions* options) const {
  if (!context_.options.use_generation_config) return;
  const SamplingDefaults& d = context_.assets->sampling_defaults();
  auto absent = [&body](const char* key) {
    auto it = body.find(key);
    return it == body.end() || it->is_null();
  };
  v1::SamplingParams& p = options->params;
  if (d.temperature && absent("temperature")) p.set_temperature(static_cast<float>(*d.temperature));
  if (d.top_p && absent("top_p")) p.set_top_p(static_cast<float>(*d.top_p));
  if (d.top_k && absent("top_k")) p.set_top_k(static_cast<int32_t>(*d.top_k));
  if (d.min_p && absent("min_p")) p.set_min_p(static_cast<float>(*d.min_p));
  if (d.repetition_penalty && absent("repetition_penalty")) {
    p.set_repetition_penalty(static_cast<float>(*d.repetition_penalty));
  }
}

bool Gateway::TruncatePrompt(const GenerationOptions& options, std::vector<int32_t>* ids) const {
  if (!options.truncate_prompt_tokens) return false;
  const int64_t keep = *options.truncate_prompt_tokens < 0 ? context_.context_length
                                                           : *options.truncate_prompt_tokens;
  if (static_cast<int64_t>(ids->size()) <= keep) return false;
  ids->erase(ids->begin(), ids->end() - keep);
  return true;
}

void Gateway::TokenizeBadWords(GenerationOptions* options) const {
  const Tokenizer& tok = context_.assets->tokenizer();
  for (const std::string& word : options->bad_words) {
    // As vLLM does: the word as given, and with a space before it where
    // that makes other tokens of the same count (a word inside a sentence).
    const std::string w = word.substr(std::min(word.find_first_not_of(' '), word.size()));
    const std::vector<int32_t> plain =
        tok.Encode(w, /*add_special=*/false, /*parse_special=*/false);
    if (plain.empty()) continue;
    options->params.add_bad_words()->mutable_ids()->Add(plain.begin(), plain.end());
    const std::vector<int32_t> spaced =
        tok.Encode(" " + w, /*add_special=*/false, /*parse_special=*/false);
    if (!spaced.empty() && spaced[0] != plain[0] && spaced.size() == plain.size()) {
      options->params.add_bad_words()->mutable_ids()->Add(spaced.begin(), spaced.end());
    }
  }
}

absl::StatusOr<HttpResponse> Gateway::Completions(const HttpRequest& request, int key_index) {
  absl::Time arrival = absl::Now();
  if (draining_.load()) return absl::UnavailableError("the server is shutting down");
  FERRY_ASSIGN_OR_RETURN(Json body, ParseJsonBody(request.body));
  const Tokenizer& tok = context_.assets->tokenizer();
  FERRY_ASSIGN_OR_RETURN(CompletionRequest req, ParseCompletionRequest(body, tok.vocab_size()));
  FERRY_RETURN_IF_ERROR(CheckModel(req.options.model));
  ApplySamplingDefaults(body, &req.options);
  GenerationPlan plan;
  plan.header = ResponseHeader{false, NewId("cmpl-"), absl::ToUnixSeconds(arrival), context_.model_name};
  plan.endpoint = "/v1/completions";
  plan.echo = req.echo;
  plan.echo_only = req.echo && req.options.max_tokens && *req.options.max_tokens == 0;
  if (plan.echo_only) req.options.max_tokens = 1;
  for (PromptInput& p : req.prompts) {
    if (p.text) {
      p.ids = tok.Encode(*p.text, tok.add_bos(), /*parse_special=*/true);
      if (p.ids.empty()) return InvalidParamError("prompt", "the prompt is empty");
    }
    if (TruncatePrompt(req.options, &p.ids)) p.text.reset();  // echo the tokens kept
    int max_tokens = 0;
    FERRY_RETURN_IF_ERROR(FitContext(req.options, /*chat=*/false, p.ids.size(), &max_tokens));
    plan.max_tokens.push_back(max_tokens);
    if (req.echo) plan.echo_texts.push_back(p.text ? *p.text : tok.Decode(p.ids, /*skip_special=*/true));
    plan.prompts.push_back(std::move(p.ids));
  }
  TokenizeBadWords(&req.options);
  plan.options = std::move(req.options);
  // Echoed prompt tokens come with their logprobs too.
  int prompt_k = plan.options.prompt_logprobs;
  if (plan.echo && plan.options.logprobs >= 0) prompt_k = std::max(prompt_k, plan.options.logprobs);
  if (prompt_k >= 0) plan.options.params.set_prompt_logprobs(prompt_k);
  return RunGeneration(std::move(plan), key_index, arrival);
}

absl::StatusOr<std::string> Gateway::RenderChat(const Json& context, bool continue_final) const {
  const ChatTemplate* tmpl = context_.assets->chat_template();
  if (tmpl == nullptr) {
    return InvalidParamError("messages", absl::StrCat("the model '", context_.model_name,
                                                      "' has no chat template, so chat completions are not "
                                                      "available; use /v1/completions or start the server "
                                                      "with --chat-template FILE"));
  }
  Json ctx = context;
  ctx["bos_token"] = context_.assets->bos_text();
  ctx["eos_token"] = context_.assets->eos_text();
  absl::StatusOr<std::string> rendered = tmpl->Render(ctx);
  if (!rendered.ok()) {
    return InvalidParamError("messages", absl::StrCat("the chat template cannot render these messages: ",
                                                      rendered.status().message()));
  }
  if (continue_final) {
    // Cut what the template appends after the final assistant message, so
    // generation continues it.
    const Json& last = context["messages"].back()["content"];
    if (last.is_string()) {
      std::string content = last.get<std::string>();
      size_t pos = rendered->rfind(content);
      if (!content.empty() && pos != std::string::npos) rendered->resize(pos + content.size());
    }
  }
  return rendered;
}

absl::StatusOr<HttpResponse> Gateway::ChatCompletions(const HttpRequest& request, int key_index) {
  absl::Time arrival = absl::Now();
  if (draining_.load()) return absl::UnavailableError("the server is shutting down");
  FERRY_ASSIGN_OR_RETURN(Json body, ParseJsonBody(request.body));
  return Chat(body, key_index, "/v1/chat/completions", arrival);
}

absl::StatusOr<HttpResponse> Gateway::Responses(const HttpRequest& request, int key_index) {
  absl::Time arrival = absl::Now();
  if (draining_.load()) return absl::UnavailableError("the server is shutting down");
  FERRY_ASSIGN_OR_RETURN(Json body, ParseJsonBody(request.body));
  FERRY_ASSIGN_OR_RETURN(ResponsesRequest parsed, ParseResponsesRequest(body));
  auto responses = std::make_shared<const ResponsesRequest>(std::move(parsed));
  absl::StatusOr<HttpResponse> r =
      Chat(responses->chat_body, key_index, "/v1/responses", arrival, responses->truncate);
  if (!r.ok()) return ToResponsesError(r.status());
  if (r->stream) {
    r->stream = [chat = std::move(r->stream), responses](ChunkWriter& w) {
      ResponsesEventWriter events(w, *responses);
      chat(events);
    };
  } else if (r->status == 200) {
    r->body = Dump(ChatCompletionToResponse(Json::parse(r->body), *responses));
  }
  return r;
}

HttpResponse Gateway::Messages(const HttpRequest& request, int key_index) {
  absl::Time arrival = absl::Now();
  auto run = [&]() -> absl::StatusOr<HttpResponse> {
    if (draining_.load()) return absl::UnavailableError("the server is shutting down");
    FERRY_ASSIGN_OR_RETURN(Json body, ParseJsonBody(request.body));
    FERRY_ASSIGN_OR_RETURN(AnthropicRequest parsed,
                           ParseAnthropicRequest(body, /*count_tokens=*/false));
    if (parsed.thinking_budget && context_.options.reasoning_format != ReasoningFormat::kNone)
      parsed.chat_body["thinking_token_budget"] = *parsed.thinking_budget;
    auto messages = std::make_shared<const AnthropicRequest>(std::move(parsed));
    FERRY_ASSIGN_OR_RETURN(HttpResponse r,
                           Chat(messages->chat_body, key_index, "/v1/messages", arrival));
    if (r.stream) {
      r.stream = [chat = std::move(r.stream), messages](ChunkWriter& w) {
        AnthropicEventWriter events(w, *messages);
        chat(events);
      };
    } else if (r.status == 200) {
      r.body = Dump(ChatCompletionToMessage(Json::parse(r.body), *messages));
    }
    return r;
  };
  absl::StatusOr<HttpResponse> r = run();
  return r.ok() ? std::move(*r) : AnthropicErrorResponse(r.status());
}

HttpResponse Gateway::CountMessageTokens(const HttpRequest& request) const {
  auto run = [&]() -> absl::StatusOr<HttpResponse> {
    FERRY_ASSIGN_OR_RETURN(Json body, ParseJsonBody(request.body));
    FERRY_ASSIGN_OR_RETURN(AnthropicRequest parsed,
                           ParseAnthropicRequest(body, /*count_tokens=*/true));
    const Tokenizer& tok = context_.assets->tokenizer();
    FERRY_ASSIGN_OR_RETURN(ChatRequest chat, ParseChatRequest(parsed.chat_body, tok.vocab_size()));
    FERRY_RETURN_IF_ERROR(CheckModel(chat.options.model));
    FERRY_ASSIGN_OR_RETURN(std::string prompt, RenderChat(chat.template_context, false));
    HttpResponse r;
    r.body = Dump(Json{{"input_tokens",
                        tok.Encode(prompt, /*add_special=*/false, /*parse_special=*/true).size()}});
    return r;
  };
  absl::StatusOr<HttpResponse> r = run();
  return r.ok() ? std::move(*r) : AnthropicErrorResponse(r.status());
}

absl::Status Gateway::ApplyReasoning(GenerationOptions* options) const {
  const ReasoningFormat format = context_.options.reasoning_format;
  if (format == ReasoningFormat::kNone) {
    if (options->thinking_token_budget) {
      return InvalidParamError("thinking_token_budget",
                               "'thinking_token_budget' needs a reasoning model served with "
                               "--reasoning-parser");
    }
    return absl::OkStatus();
  }
  // The engine needs to know where the thinking ends when the answer after
  // it must follow a grammar (a response_format or a forced tool call), or
  // when the thinking is bounded.
  if (!options->params.has_structured() && !options->thinking_token_budget) return absl::OkStatus();
  const ReasoningTags tags = TagsOf(format);
  v1::ReasoningBounds* bounds = options->params.mutable_reasoning();
  bounds->set_start(std::string(tags.start));
  bounds->set_end(std::string(tags.end));
  if (options->thinking_token_budget) {
    bounds->set_budget_tokens(
        static_cast<int32_t>(std::min<int64_t>(*options->thinking_token_budget, INT32_MAX)));
  }
  return absl::OkStatus();
}

namespace {

// The first message a conversation too long for the context may lose: the
// oldest after the leading system (and developer) messages, never the
// last; -1 when there is none.
int OldestDroppable(const Json& messages) {
  const int n = static_cast<int>(messages.size());
  for (int i = 0; i + 1 < n; ++i) {
    const Json& role = messages[static_cast<size_t>(i)]["role"];
    if (role != "system" && role != "developer") return i;
  }
  return -1;
}

// Drops the turn that message `i` begins: it and what follows up to the
// next user message (answers, tool calls and their results), so that the
// conversation still opens with a user turn, as templates expect.
void DropTurn(Json& messages, int i) {
  messages.erase(messages.begin() + i);
  while (i + 1 < static_cast<int>(messages.size()) &&
         messages[static_cast<size_t>(i)]["role"] != "user") {
    messages.erase(messages.begin() + i);
  }
}

}  // namespace

absl::StatusOr<HttpResponse> Gateway::Chat(const Json& body, int key_index, const char* endpoint,
                                           absl::Time arrival, bool drop_oldest) {
  const Tokenizer& tok = context_.assets->tokenizer();
  FERRY_ASSIGN_OR_RETURN(ChatRequest req, ParseChatRequest(body, tok.vocab_size()));
  FERRY_RETURN_IF_ERROR(CheckModel(req.options.model));
  ApplySamplingDefaults(body, &req.options);
  FERRY_RETURN_IF_ERROR(ApplyReasoning(&req.options));
  std::vector<int32_t> ids;
  int max_tokens = 0;
  for (;;) {
    FERRY_ASSIGN_OR_RETURN(std::string prompt,
                           RenderChat(req.template_context, req.continue_final_message));
    // The template writes BOS itself where the model wants one.
    ids = tok.Encode(prompt, /*add_special=*/false, /*parse_special=*/true);
    if (ids.empty()) return InvalidParamError("messages", "the rendered chat prompt is empty");
    TruncatePrompt(req.options, &ids);
    absl::Status fits = FitContext(req.options, /*chat=*/true, ids.size(), &max_tokens);
    if (fits.ok()) break;
    Json& messages = req.template_context["messages"];
    const int oldest = drop_oldest ? OldestDroppable(messages) : -1;
    if (oldest < 0) return fits;
    DropTurn(messages, oldest);
  }
  GenerationPlan plan;
  plan.header = ResponseHeader{true, NewId("chatcmpl-"), absl::ToUnixSeconds(arrival), context_.model_name};
  plan.endpoint = endpoint;
  plan.max_tokens.push_back(max_tokens);
  plan.prompts.push_back(std::move(ids));
  TokenizeBadWords(&req.options);
  plan.options = std::move(req.options);
  if (plan.options.prompt_logprobs >= 0)
    plan.options.params.set_prompt_logprobs(plan.options.prompt_logprobs);
  return RunGeneration(std::move(plan), key_index, arrival);
}

absl::StatusOr<HttpResponse> Gateway::RunGeneration(GenerationPlan plan, int key_index, absl::Time arrival) {
  FERRY_ASSIGN_OR_RETURN(Admission::Permit permit, admission_.Acquire(key_index));
  const bool stream = plan.options.stream;
  auto run = std::make_shared<GenerationRun>(context_, std::move(plan), std::move(permit), arrival);
  FERRY_RETURN_IF_ERROR(run->Start());
  FERRY_RETURN_IF_ERROR(run->AwaitFirst());
  if (!stream) return run->Collect();
  HttpResponse r;
  r.content_type = "text/event-stream";
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.headers.emplace_back("X-Accel-Buffering", "no");
  r.stream = [run](ChunkWriter& w) { run->StreamTo(w); };
  return r;
}

}  // namespace ferry
