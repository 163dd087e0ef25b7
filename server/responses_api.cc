#include "server/responses_api.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/json_fields.h"
#include "server/openai_error.h"
#include "server/openai_response.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxLogprobs = 20;
constexpr char kLogprobsInclude[] = "message.output_text.logprobs";

// Sampling and vLLM parameters a Responses body may carry, passed to the
// chat request as they are (it validates them).
constexpr const char* kPassThrough[] = {"model",
                                        "temperature",
                                        "top_p",
                                        "parallel_tool_calls",
                                        "seed",
                                        "top_k",
                                        "min_p",
                                        "presence_penalty",
                                        "frequency_penalty",
                                        "repetition_penalty",
                                        "stop",
                                        "stop_token_ids",
                                        "logit_bias",
                                        "min_tokens",
                                        "ignore_eos",
                                        "priority",
                                        "user",
                                        "chat_template_kwargs",
                                        "skip_special_tokens",
                                        "include_stop_str_in_output",
                                        "bad_words",
                                        "allowed_token_ids",
                                        "truncate_prompt_tokens"};

absl::Status Unsupported(const char* param, std::string_view what) {
  return InvalidParamError(param, absl::StrCat(std::string(what),
                                               " (this server keeps no responses or conversations; "
                                               "send the whole conversation as 'input')"));
}

// The text of a message's content (or a call's output), `where` in the
// request: a string, or a list of text parts.
absl::StatusOr<std::string> ContentText(const Json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) {
    return InvalidParamError("input",
                             absl::StrCat("'", where, "' must be a string or an array of parts"));
  }
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    const std::string at = absl::StrCat(where, "[", i, "]");
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      return InvalidParamError("input",
                               absl::StrCat("'", at, "' must be an object with a string 'type'"));
    }
    const std::string type = part["type"].get<std::string>();
    const char* field = type == "refusal" ? "refusal" : "text";
    if (type != "input_text" && type != "output_text" && type != "text" && type != "refusal") {
      return InvalidParamError("input", absl::StrCat("content part type '", type, "' in '", at,
                                                     "' is not supported (text only)"));
    }
    if (!part.contains(field) || !part[field].is_string()) {
      return InvalidParamError("input", absl::StrCat("'", at, ".", field, "' must be a string"));
    }
    text += part[field].get<std::string>();
  }
  return text;
}

absl::StatusOr<std::string> RequiredString(const Json& item, const char* key,
                                           const std::string& where) {
  auto it = item.find(key);
  if (it == item.end() || !it->is_string()) {
    return InvalidParamError("input", absl::StrCat("'", where, ".", key, "' must be a string"));
  }
  return it->get<std::string>();
}

// Input items as chat messages. Consecutive function calls become one
// assistant message with several tool_calls; their outputs, tool messages.
absl::StatusOr<Json> InputMessages(const Json& input) {
  Json messages = Json::array();
  if (input.is_string()) {
    messages.push_back(Json{{"role", "user"}, {"content", input}});
    return messages;
  }
  if (!input.is_array())
    return InvalidParamError("input", "'input' must be a string or an array of items");
  if (input.empty()) return InvalidParamError("input", "'input' must not be empty");
  bool calls_open = false;  // the last message holds function calls
  for (size_t i = 0; i < input.size(); ++i) {
    const Json& item = input[i];
    const std::string where = absl::StrCat("input[", i, "]");
    if (!item.is_object())
      return InvalidParamError("input", absl::StrCat("'", where, "' must be an object"));
    std::string type = "message";
    if (auto t = item.find("type"); t != item.end() && !t->is_null()) {
      if (!t->is_string())
        return InvalidParamError("input", absl::StrCat("'", where, ".type' must be a string"));
      type = t->get<std::string>();
    }
    if (type == "message") {
      FERRY_ASSIGN_OR_RETURN(std::string role, RequiredString(item, "role", where));
      if (role != "user" && role != "assistant" && role != "system" && role != "developer") {
        return InvalidParamError("input", absl::StrCat("'", where,
                                                       ".role' must be user, assistant, system or "
                                                       "developer, not '",
                                                       role, "'"));
      }
      auto content = item.find("content");
      if (content == item.end()) {
        return InvalidParamError("input", absl::StrCat("'", where, ".content' is required"));
      }
      FERRY_ASSIGN_OR_RETURN(std::string text, ContentText(*content, where + ".content"));
      messages.push_back(Json{{"role", role}, {"content", std::move(text)}});
      calls_open = false;
    } else if (type == "function_call") {
      FERRY_ASSIGN_OR_RETURN(std::string call_id, RequiredString(item, "call_id", where));
      FERRY_ASSIGN_OR_RETURN(std::string name, RequiredString(item, "name", where));
      FERRY_ASSIGN_OR_RETURN(std::string arguments, RequiredString(item, "arguments", where));
      Json call = Json{{"id", call_id},
                       {"type", "function"},
                       {"function", {{"name", name}, {"arguments", arguments}}}};
      if (!calls_open) {
        messages.push_back(
            Json{{"role", "assistant"}, {"content", nullptr}, {"tool_calls", Json::array()}});
        calls_open = true;
      }
      messages.back()["tool_calls"].push_back(std::move(call));
    } else if (type == "function_call_output") {
      FERRY_ASSIGN_OR_RETURN(std::string call_id, RequiredString(item, "call_id", where));
      auto output = item.find("output");
      if (output == item.end())
        return InvalidParamError("input", absl::StrCat("'", where, ".output' is required"));
      FERRY_ASSIGN_OR_RETURN(std::string text, ContentText(*output, where + ".output"));
      messages.push_back(
          Json{{"role", "tool"}, {"tool_call_id", call_id}, {"content", std::move(text)}});
      calls_open = false;
    } else if (type == "reasoning") {
      continue;  // a model's reasoning from an earlier turn: not part of the prompt
    } else if (type == "item_reference") {
      return Unsupported("input", absl::StrCat("'", where, "' refers to a stored item"));
    } else {
      return InvalidParamError("input", absl::StrCat("input item type '", type, "' in '", where,
                                                     "' is not supported (message, function_call, "
                                                     "function_call_output)"));
    }
  }
  return messages;
}

// Flat function tools ({type, name, description, parameters, strict}) as
// chat tools.
absl::StatusOr<Json> ChatTools(const Json& tools) {
  if (!tools.is_array()) return InvalidParamError("tools", "'tools' must be an array");
  Json out = Json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    const std::string where = absl::StrCat("tools[", i, "]");
    if (!t.is_object())
      return InvalidParamError("tools", absl::StrCat("'", where, "' must be an object"));
    auto type = t.find("type");
    if (type == t.end() || !type->is_string()) {
      return InvalidParamError("tools", absl::StrCat("'", where, ".type' must be a string"));
    }
    if (*type != "function") {
      return InvalidParamError(
          "tools", absl::StrCat("tool type '", type->get<std::string>(), "' in '", where,
                                "' is not supported (function tools only)"));
    }
    auto name = t.find("name");
    if (name == t.end() || !name->is_string() || name->get<std::string>().empty()) {
      return InvalidParamError("tools",
                               absl::StrCat("'", where, ".name' must be a non-empty string"));
    }
    Json fn = Json{{"name", *name}};
    for (const char* key : {"description", "parameters", "strict"}) {
      if (auto v = t.find(key); v != t.end() && !v->is_null()) fn[key] = *v;
    }
    out.push_back(Json{{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

absl::StatusOr<Json> ChatToolChoice(const Json& choice) {
  if (choice.is_string()) return choice;  // auto, none, required (checked by the chat request)
  if (choice.is_object()) {
    auto type = choice.find("type");
    auto name = choice.find("name");
    if (type != choice.end() && *type == "function" && name != choice.end() && name->is_string()) {
      return Json{{"type", "function"}, {"function", {{"name", *name}}}};
    }
  }
  return InvalidParamError("tool_choice",
                           "'tool_choice' must be \"auto\", \"none\", \"required\" or "
                           "{\"type\": \"function\", \"name\": ...}");
}

// text.format as a chat response_format.
absl::StatusOr<Json> ResponseFormat(const Json& text) {
  if (!text.is_object()) return InvalidParamError("text", "'text' must be an object");
  auto format = text.find("format");
  if (format == text.end() || format->is_null()) return Json();
  if (!format->is_object() || !format->contains("type") || !(*format)["type"].is_string()) {
    return InvalidParamError("text.format", "'text.format' must be an object with a string 'type'");
  }
  const std::string type = (*format)["type"].get<std::string>();
  if (type == "text") return Json();
  if (type == "json_object") return Json{{"type", "json_object"}};
  if (type == "json_schema") {
    Json schema = Json::object();
    for (const char* key : {"name", "description", "schema", "strict"}) {
      if (auto v = format->find(key); v != format->end()) schema[key] = *v;
    }
    return Json{{"type", "json_schema"}, {"json_schema", std::move(schema)}};
  }
  return InvalidParamError(
      "text.format",
      absl::StrCat("'text.format.type' must be text, json_object or json_schema, not '", type,
                   "'"));
}

Json Usage(const Json& chat_usage) {
  if (!chat_usage.is_object()) return nullptr;
  const int64_t in = JsonIntAt(chat_usage, "prompt_tokens");
  const int64_t out = JsonIntAt(chat_usage, "completion_tokens");
  const int64_t cached = JsonIntAt(JsonAt(chat_usage, "prompt_tokens_details"), "cached_tokens");
  const int64_t reasoning =
      JsonIntAt(JsonAt(chat_usage, "completion_tokens_details"), "reasoning_tokens");
  return Json{{"input_tokens", in},
              {"input_tokens_details", {{"cached_tokens", cached}}},
              {"output_tokens", out},
              {"output_tokens_details", {{"reasoning_tokens", reasoning}}},
              {"total_tokens", in + out}};
}

// The Response object around `output`.
Json ResponseObject(const ResponsesRequest& request, const std::string& id, int64_t created_at,
                    const std::string& model, const std::string& status, Json output, Json usage) {
  Json r = Json::object();
  r["id"] = id;
  r["object"] = "response";
  r["created_at"] = created_at;
  r["status"] = status;
  r["background"] = false;
  r["error"] = nullptr;
  r["incomplete_details"] =
      status == "incomplete" ? Json{{"reason", "max_output_tokens"}} : Json(nullptr);
  r["model"] = model;
  r["output"] = std::move(output);
  for (const auto& [k, v] : request.settings.items()) r[k] = v;
  r["usage"] = std::move(usage);
  return r;
}

Json OutputText(std::string text, Json logprobs) {
  return Json{{"type", "output_text"},
              {"annotations", Json::array()},
              {"logprobs", std::move(logprobs)},
              {"text", std::move(text)}};
}

std::string MessageId(const std::string& suffix, int n) {
  return n == 0 ? absl::StrCat("msg_", suffix) : absl::StrCat("msg_", suffix, "_", n);
}

std::string ReasoningId(const std::string& suffix) { return absl::StrCat("rs_", suffix); }

Json ReasoningText(std::string text) {
  return Json{{"type", "reasoning_text"}, {"text", std::move(text)}};
}

std::string CallItemId(const std::string& suffix, int64_t index) {
  return absl::StrCat("fc_", suffix, "_", index);
}

}  // namespace

absl::StatusOr<ResponsesRequest> ParseResponsesRequest(const Json& body) {
  JsonFields f(body);
  if (f.Get("previous_response_id"))
    return Unsupported("previous_response_id", "'previous_response_id' is not supported");
  if (f.Get("conversation")) return Unsupported("conversation", "'conversation' is not supported");
  if (f.Get("prompt"))
    return Unsupported("prompt", "stored prompt templates ('prompt') are not supported");
  FERRY_ASSIGN_OR_RETURN(auto background, f.Bool("background"));
  if (background.value_or(false))
    return InvalidParamError("background", "background responses are not supported");
  FERRY_ASSIGN_OR_RETURN(auto store, f.Bool("store"));
  (void)store;  // nothing is stored either way; a Response says "store": false
  ResponsesRequest r;
  Json& chat = r.chat_body;
  chat = Json::object();
  for (const char* key : kPassThrough) {
    if (const Json* v = f.Get(key)) chat[key] = *v;
  }

  FERRY_ASSIGN_OR_RETURN(auto instructions, f.String("instructions"));
  const Json* input = f.Get("input");
  if (input == nullptr) return InvalidParamError("input", "'input' is required");
  FERRY_ASSIGN_OR_RETURN(Json messages, InputMessages(*input));
  if (instructions)
    messages.insert(messages.begin(), Json{{"role", "system"}, {"content", *instructions}});
  chat["messages"] = std::move(messages);

  FERRY_ASSIGN_OR_RETURN(auto max_output, f.Int("max_output_tokens"));
  if (max_output) {
    FERRY_RETURN_IF_ERROR(
        CheckRange("max_output_tokens", static_cast<double>(*max_output), 1, 1 << 30));
    chat["max_completion_tokens"] = *max_output;
  }
  FERRY_ASSIGN_OR_RETURN(auto stream, f.Bool("stream"));
  r.stream = stream.value_or(false);
  if (r.stream) {
    chat["stream"] = true;
    chat["stream_options"] = Json{{"include_usage", true}};
  }
  if (const Json* tools = f.Get("tools")) {
    FERRY_ASSIGN_OR_RETURN(chat["tools"], ChatTools(*tools));
  }
  if (const Json* choice = f.Get("tool_choice")) {
    FERRY_ASSIGN_OR_RETURN(chat["tool_choice"], ChatToolChoice(*choice));
  }
  if (const Json* text = f.Get("text")) {
    FERRY_ASSIGN_OR_RETURN(Json format, ResponseFormat(*text));
    if (!format.is_null()) chat["response_format"] = std::move(format);
  }
  FERRY_ASSIGN_OR_RETURN(auto top_logprobs, f.Int("top_logprobs"));
  if (top_logprobs) {
    FERRY_RETURN_IF_ERROR(
        CheckRange("top_logprobs", static_cast<double>(*top_logprobs), 0, kMaxLogprobs));
  }
  FERRY_ASSIGN_OR_RETURN(auto include, f.StringOrList("include"));
  for (const std::string& what : include.value_or(std::vector<std::string>{})) {
    if (what == kLogprobsInclude) r.logprobs = true;
  }
  r.logprobs = r.logprobs || top_logprobs.has_value();
  if (r.logprobs) {
    chat["logprobs"] = true;
    chat["top_logprobs"] = top_logprobs.value_or(0);
  }
  FERRY_ASSIGN_OR_RETURN(auto truncation, f.String("truncation"));
  if (truncation && *truncation != "disabled" && *truncation != "auto") {
    return InvalidParamError("truncation", "'truncation' must be \"auto\" or \"disabled\"");
  }
  r.truncate = truncation == "auto";
  FERRY_ASSIGN_OR_RETURN(const Json* metadata, f.Object("metadata"));
  FERRY_ASSIGN_OR_RETURN(const Json* reasoning, f.Object("reasoning"));
  if (reasoning != nullptr) {
    JsonFields rf(*reasoning, "reasoning.");
    FERRY_ASSIGN_OR_RETURN(auto effort, rf.String("effort"));
    if (effort) chat["reasoning_effort"] = *effort;
  }

  // What a Response reports of its request.
  Json& s = r.settings;
  s = Json::object();
  s["instructions"] = instructions ? Json(*instructions) : Json(nullptr);
  s["max_output_tokens"] = max_output ? Json(*max_output) : Json(nullptr);
  s["parallel_tool_calls"] = body.value("parallel_tool_calls", Json(true));
  s["previous_response_id"] = nullptr;
  s["reasoning"] =
      reasoning != nullptr ? *reasoning : Json{{"effort", nullptr}, {"summary", nullptr}};
  s["store"] = false;
  s["temperature"] = body.contains("temperature") && !body["temperature"].is_null()
                         ? body["temperature"]
                         : Json(1.0);
  s["text"] = body.contains("text") && !body["text"].is_null()
                  ? body["text"]
                  : Json{{"format", {{"type", "text"}}}};
  s["tool_choice"] = body.contains("tool_choice") && !body["tool_choice"].is_null()
                         ? body["tool_choice"]
                         : Json("auto");
  s["tools"] = body.contains("tools") && !body["tools"].is_null() ? body["tools"] : Json::array();
  if (top_logprobs) s["top_logprobs"] = *top_logprobs;
  s["top_p"] = body.contains("top_p") && !body["top_p"].is_null() ? body["top_p"] : Json(1.0);
  s["truncation"] = truncation.value_or("disabled");
  s["user"] = body.contains("user") ? body["user"] : Json(nullptr);
  s["metadata"] = metadata != nullptr ? *metadata : Json::object();
  return r;
}

absl::Status ToResponsesError(absl::Status status) {
  static constexpr std::pair<const char*, const char*> kRenamed[] = {
      {"messages", "input"},
      {"max_completion_tokens", "max_output_tokens"},
      {"max_tokens", "max_output_tokens"},
      {"response_format", "text.format"},
      {"logprobs", "top_logprobs"},
      {"reasoning_effort", "reasoning.effort"},
  };
  auto payload = status.GetPayload("ferry/param");
  if (!payload) return status;
  const std::string param(*payload);
  for (const auto& [chat, responses] : kRenamed) {
    if (param == chat || absl::StartsWith(param, absl::StrCat(chat, "."))) {
      return WithParam(std::move(status),
                       absl::StrCat(responses, param.substr(std::string_view(chat).size())));
    }
  }
  return status;
}

Json ChatCompletionToResponse(const Json& completion, const ResponsesRequest& request) {
  const std::string suffix = IdSuffix(JsonStringAt(completion, "id"));
  Json output = Json::array();
  std::string status = "completed";
  if (auto choices = completion.find("choices"); choices != completion.end() && !choices->empty()) {
    const Json& choice = (*choices)[0];
    const Json& message = JsonAt(choice, "message");
    if (JsonStringAt(choice, "finish_reason") == "length") status = "incomplete";
    if (auto r = message.find("reasoning_content");
        r != message.end() && r->is_string() && !r->empty()) {
      output.push_back(Json{{"id", ReasoningId(suffix)},
                            {"type", "reasoning"},
                            {"summary", Json::array()},
                            {"content", Json::array({ReasoningText(*r)})},
                            {"status", "completed"}});
    }
    if (const std::string content = JsonStringAt(message, "content"); !content.empty()) {
      Json logprobs = Json::array();
      if (request.logprobs && JsonAt(JsonAt(choice, "logprobs"), "content").is_array()) {
        logprobs = JsonAt(JsonAt(choice, "logprobs"), "content");
      }
      output.push_back(Json{{"id", MessageId(suffix, 0)},
                            {"type", "message"},
                            {"status", status},
                            {"role", "assistant"},
                            {"content", Json::array({OutputText(content, std::move(logprobs))})}});
    }
    if (const Json& calls = JsonAt(message, "tool_calls"); calls.is_array()) {
      int64_t k = 0;
      for (const Json& call : calls) {
        output.push_back(Json{{"id", CallItemId(suffix, k++)},
                              {"type", "function_call"},
                              {"status", "completed"},
                              {"arguments", JsonStringAt(JsonAt(call, "function"), "arguments")},
                              {"call_id", JsonStringAt(call, "id")},
                              {"name", JsonStringAt(JsonAt(call, "function"), "name")}});
      }
    }
  }
  return ResponseObject(request, absl::StrCat("resp_", suffix), JsonIntAt(completion, "created"),
                        JsonStringAt(completion, "model"), status, std::move(output),
                        Usage(JsonAt(completion, "usage")));
}

bool ResponsesEventWriter::Emit(const char* type, Json fields) {
  Json event = Json{{"type", type}};
  for (auto& [k, v] : fields.items()) event[k] = std::move(v);
  event["sequence_number"] = sequence_++;
  if (ok_) ok_ = out_.Write(absl::StrCat("event: ", type, "\ndata: ", Dump(event), "\n\n"));
  return ok_;
}

void ResponsesEventWriter::Start(const Json& chunk) {
  started_ = true;
  suffix_ = IdSuffix(JsonStringAt(chunk, "id"));
  id_ = absl::StrCat("resp_", suffix_);
  model_ = JsonStringAt(chunk, "model");
  created_at_ = JsonIntAt(chunk, "created");
  Json response =
      ResponseObject(request_, id_, created_at_, model_, "in_progress", Json::array(), nullptr);
  Emit("response.created", Json{{"response", response}});
  Emit("response.in_progress", Json{{"response", std::move(response)}});
}

int ResponsesEventWriter::OpenItem(Json item, Json part) {
  const int at = static_cast<int>(output_.size());
  output_.push_back(item);
  Emit("response.output_item.added", Json{{"output_index", at}, {"item", std::move(item)}});
  output_[at]["content"].push_back(part);
  Emit("response.content_part.added", Json{{"item_id", output_[at]["id"]},
                                           {"output_index", at},
                                           {"content_index", 0},
                                           {"part", std::move(part)}});
  return at;
}

void ResponsesEventWriter::AppendText(int at, const char* event, const std::string& text,
                                      Json fields) {
  Json& part = output_[at]["content"][0];
  part["text"] = part["text"].get<std::string>() + text;
  Json e = Json{
      {"item_id", output_[at]["id"]}, {"output_index", at}, {"content_index", 0}, {"delta", text}};
  for (auto& [k, v] : fields.items()) e[k] = std::move(v);
  Emit(event, std::move(e));
}

void ResponsesEventWriter::CloseItem(int at, const char* event, const std::string& status,
                                     Json fields) {
  Json& item = output_[at];
  item["status"] = status;
  const Json& part = item["content"][0];
  Json e = Json{
      {"item_id", item["id"]}, {"output_index", at}, {"content_index", 0}, {"text", part["text"]}};
  for (auto& [k, v] : fields.items()) e[k] = std::move(v);
  Emit(event, std::move(e));
  Emit("response.content_part.done",
       Json{{"item_id", item["id"]}, {"output_index", at}, {"content_index", 0}, {"part", part}});
  Emit("response.output_item.done", Json{{"output_index", at}, {"item", item}});
}

void ResponsesEventWriter::ReasoningDelta(const std::string& text) {
  if (reasoning_ < 0) {
    CloseMessage();
    CloseCalls();
    reasoning_ = OpenItem(Json{{"id", ReasoningId(suffix_)},
                               {"type", "reasoning"},
                               {"summary", Json::array()},
                               {"content", Json::array()},
                               {"status", "in_progress"}},
                          ReasoningText(""));
  }
  AppendText(reasoning_, "response.reasoning_text.delta", text, Json::object());
}

void ResponsesEventWriter::CloseReasoning() {
  if (reasoning_ < 0) return;
  CloseItem(reasoning_, "response.reasoning_text.done", "completed", Json::object());
  reasoning_ = -1;
}

void ResponsesEventWriter::TextDelta(const std::string& text, const Json& logprobs) {
  if (message_ < 0) {
    CloseReasoning();
    CloseCalls();
    message_ = OpenItem(Json{{"id", MessageId(suffix_, messages_++)},
                             {"type", "message"},
                             {"status", "in_progress"},
                             {"role", "assistant"},
                             {"content", Json::array()}},
                        OutputText("", Json::array()));
  }
  Json delta_logprobs = Json::array();
  if (request_.logprobs && logprobs.is_array()) {
    for (const Json& lp : logprobs) {
      output_[message_]["content"][0]["logprobs"].push_back(lp);
      delta_logprobs.push_back(lp);
    }
  }
  AppendText(message_, "response.output_text.delta", text,
             Json{{"logprobs", std::move(delta_logprobs)}});
}

void ResponsesEventWriter::ToolCallDelta(const Json& call) {
  const int64_t index = JsonIntAt(call, "index");
  int at = -1;
  for (const auto& [chat_index, output_index] : calls_) {
    if (chat_index == index) at = output_index;
  }
  const Json& fn = JsonAt(call, "function");
  if (at < 0) {
    CloseReasoning();
    CloseMessage();
    at = static_cast<int>(output_.size());
    calls_.emplace_back(index, at);
    Json item = Json{{"id", CallItemId(suffix_, index)},
                     {"type", "function_call"},
                     {"status", "in_progress"},
                     {"arguments", ""},
                     {"call_id", JsonStringAt(call, "id")},
                     {"name", JsonStringAt(fn, "name")}};
    output_.push_back(item);
    Emit("response.output_item.added", Json{{"output_index", at}, {"item", std::move(item)}});
  }
  const std::string args = JsonStringAt(fn, "arguments");
  if (args.empty()) return;
  Json& item = output_[at];
  item["arguments"] = item["arguments"].get<std::string>() + args;
  Emit("response.function_call_arguments.delta",
       Json{{"item_id", item["id"]}, {"output_index", at}, {"delta", args}});
}

void ResponsesEventWriter::CloseMessage() {
  if (message_ < 0) return;
  const Json logprobs = output_[message_]["content"][0]["logprobs"];
  CloseItem(message_, "response.output_text.done",
            finish_reason_ == "length" ? "incomplete" : "completed", Json{{"logprobs", logprobs}});
  message_ = -1;
}

void ResponsesEventWriter::CloseCalls() {
  for (const auto& [chat_index, at] : calls_) {
    Json& item = output_[at];
    item["status"] = "completed";
    Emit("response.function_call_arguments.done",
         Json{{"item_id", item["id"]}, {"output_index", at}, {"arguments", item["arguments"]}});
    Emit("response.output_item.done", Json{{"output_index", at}, {"item", item}});
  }
  calls_.clear();
}

void ResponsesEventWriter::Finish() {
  ended_ = true;
  CloseReasoning();
  CloseMessage();
  CloseCalls();
  const bool incomplete = finish_reason_ == "length";
  Json response = ResponseObject(request_, id_, created_at_, model_,
                                 incomplete ? "incomplete" : "completed", output_, usage_);
  Emit(incomplete ? "response.incomplete" : "response.completed",
       Json{{"response", std::move(response)}});
}

void ResponsesEventWriter::Fail(const Json& error) {
  ended_ = true;
  std::string message = JsonStringAt(error, "message");
  if (message.empty()) message = "the response failed";
  Emit("error", Json{{"code", JsonAt(error, "code")},
                     {"message", message},
                     {"param", JsonAt(error, "param")}});
  if (!started_) return;
  Json response = ResponseObject(request_, id_, created_at_, model_, "failed", output_, usage_);
  response["error"] = Json{{"code", "server_error"}, {"message", message}};
  Emit("response.failed", Json{{"response", std::move(response)}});
}

bool ResponsesEventWriter::Write(std::string_view data) {
  if (ended_ || !ok_) return ok_;
  ChatSseEvent event = ReadChatSseEvent(data);
  if (event.kind == ChatSseEvent::Kind::kComment) {  // a keep-alive
    ok_ = out_.Write(data);
    return ok_;
  }
  if (event.kind == ChatSseEvent::Kind::kDone && started_) Finish();
  if (event.kind != ChatSseEvent::Kind::kChunk) return ok_;
  const Json& chunk = event.chunk;
  if (auto error = chunk.find("error"); error != chunk.end()) {
    Fail(error->is_object() ? *error : Json::object());
    return ok_;
  }
  if (!started_) Start(chunk);
  if (auto usage = chunk.find("usage"); usage != chunk.end() && usage->is_object())
    usage_ = Usage(*usage);
  auto choices = chunk.find("choices");
  if (choices == chunk.end() || !choices->is_array()) return ok_;
  for (const Json& choice : *choices) {
    if (JsonIntAt(choice, "index") != 0) continue;  // a Response has one answer
    const Json& delta = JsonAt(choice, "delta");
    if (auto r = delta.find("reasoning_content");
        r != delta.end() && r->is_string() && !r->empty()) {
      ReasoningDelta(r->get<std::string>());
    }
    if (auto content = delta.find("content");
        content != delta.end() && content->is_string() && !content->get<std::string>().empty()) {
      Json logprobs;
      if (auto lp = choice.find("logprobs"); lp != choice.end() && lp->is_object()) {
        logprobs = lp->value("content", Json());
      }
      TextDelta(content->get<std::string>(), logprobs);
    }
    if (auto calls = delta.find("tool_calls"); calls != delta.end() && calls->is_array()) {
      for (const Json& call : *calls) ToolCallDelta(call);
    }
    if (auto finish = choice.find("finish_reason"); finish != choice.end() && finish->is_string()) {
      finish_reason_ = finish->get<std::string>();
    }
  }
  return ok_;
}

}  // namespace ferry
