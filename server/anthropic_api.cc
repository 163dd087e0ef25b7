#include "server/anthropic_api.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/json_fields.h"
#include "server/openai_error.h"
#include "server/openai_response.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;

absl::Status Bad(const char* param, std::string_view message) {
  return InvalidParamError(param, message);
}

// The text of a content (a string or a list of text blocks) at `where`.
absl::StatusOr<std::string> BlockText(const Json& content, const std::string& where,
                                      const char* param) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array())
    return Bad(param, absl::StrCat("'", where, "' must be a string or an array of blocks"));
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& b = content[i];
    const std::string at = absl::StrCat(where, "[", i, "]");
    const std::string type = JsonStringAt(b, "type");
    if (type != "text") {
      return Bad(param, absl::StrCat("content block type '", type, "' in '", at,
                                     "' is not supported here (text only)"));
    }
    if (!JsonAt(b, "text").is_string())
      return Bad(param, absl::StrCat("'", at, ".text' must be a string"));
    text += JsonStringAt(b, "text");
  }
  return text;
}

// One Messages API message as chat messages: a user's tool_result blocks
// become tool messages (ahead of its text); an assistant's tool_use blocks,
// tool_calls.
absl::Status AddMessage(const Json& m, size_t index, Json* out) {
  const std::string where = absl::StrCat("messages[", index, "]");
  if (!m.is_object()) return Bad("messages", absl::StrCat("'", where, "' must be an object"));
  const std::string role = JsonStringAt(m, "role");
  if (role != "user" && role != "assistant") {
    return Bad("messages", absl::StrCat("'", where, ".role' must be user or assistant"));
  }
  const Json& content = JsonAt(m, "content");
  if (content.is_string()) {
    out->push_back(Json{{"role", role}, {"content", content}});
    return absl::OkStatus();
  }
  if (!content.is_array()) {
    return Bad("messages",
               absl::StrCat("'", where, ".content' must be a string or an array of blocks"));
  }
  std::string text;
  Json calls = Json::array();
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& b = content[i];
    const std::string at = absl::StrCat(where, ".content[", i, "]");
    const std::string type = JsonStringAt(b, "type");
    if (type == "text") {
      if (!JsonAt(b, "text").is_string())
        return Bad("messages", absl::StrCat("'", at, ".text' must be a string"));
      text += JsonStringAt(b, "text");
    } else if (type == "tool_result" && role == "user") {
      const std::string id = JsonStringAt(b, "tool_use_id");
      if (id.empty())
        return Bad("messages", absl::StrCat("'", at, ".tool_use_id' must be a non-empty string"));
      std::string result;
      if (const Json& c = JsonAt(b, "content"); !c.is_null()) {
        FERRY_ASSIGN_OR_RETURN(result, BlockText(c, at + ".content", "messages"));
      }
      out->push_back(Json{{"role", "tool"}, {"tool_call_id", id}, {"content", std::move(result)}});
    } else if (type == "tool_use" && role == "assistant") {
      const std::string id = JsonStringAt(b, "id");
      const std::string name = JsonStringAt(b, "name");
      if (id.empty() || name.empty()) {
        return Bad("messages", absl::StrCat("'", at, "' needs a string 'id' and 'name'"));
      }
      const Json& input = JsonAt(b, "input");
      if (!input.is_object())
        return Bad("messages", absl::StrCat("'", at, ".input' must be an object"));
      calls.push_back(Json{{"id", id},
                           {"type", "function"},
                           {"function", {{"name", name}, {"arguments", Dump(input)}}}});
    } else if ((type == "thinking" || type == "redacted_thinking") && role == "assistant") {
      continue;  // earlier thinking is not part of the prompt
    } else {
      return Bad("messages",
                 absl::StrCat("content block type '", type, "' in '", at, "' is not supported"));
    }
  }
  if (role == "assistant") {
    Json a = Json{{"role", "assistant"},
                  {"content", calls.empty() || !text.empty() ? Json(text) : Json(nullptr)}};
    if (!calls.empty()) a["tool_calls"] = std::move(calls);
    out->push_back(std::move(a));
  } else if (!text.empty() || out->empty() || out->back()["role"] != "tool") {
    out->push_back(Json{{"role", "user"}, {"content", std::move(text)}});
  }
  return absl::OkStatus();
}

absl::StatusOr<Json> ChatTools(const Json& tools) {
  if (!tools.is_array()) return Bad("tools", "'tools' must be an array");
  Json out = Json::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const Json& t = tools[i];
    const std::string where = absl::StrCat("tools[", i, "]");
    if (!t.is_object()) return Bad("tools", absl::StrCat("'", where, "' must be an object"));
    const std::string type = JsonStringAt(t, "type");
    if (!type.empty() && type != "custom") {
      return Bad("tools", absl::StrCat("tool type '", type, "' in '", where,
                                       "' is not supported (custom tools only)"));
    }
    const std::string name = JsonStringAt(t, "name");
    if (name.empty())
      return Bad("tools", absl::StrCat("'", where, ".name' must be a non-empty string"));
    Json fn = Json{{"name", name}};
    if (JsonAt(t, "description").is_string()) fn["description"] = JsonAt(t, "description");
    const Json& schema = JsonAt(t, "input_schema");
    if (!schema.is_null()) {
      if (!schema.is_object())
        return Bad("tools", absl::StrCat("'", where, ".input_schema' must be an object"));
      fn["parameters"] = schema;
    }
    out.push_back(Json{{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

absl::Status ToolChoice(const Json& choice, Json* chat) {
  if (!choice.is_object()) return Bad("tool_choice", "'tool_choice' must be an object");
  const std::string type = JsonStringAt(choice, "type");
  if (type == "auto") {
    (*chat)["tool_choice"] = "auto";
  } else if (type == "any") {
    (*chat)["tool_choice"] = "required";
  } else if (type == "none") {
    (*chat)["tool_choice"] = "none";
  } else if (type == "tool" && !JsonStringAt(choice, "name").empty()) {
    (*chat)["tool_choice"] =
        Json{{"type", "function"}, {"function", {{"name", JsonStringAt(choice, "name")}}}};
  } else {
    return Bad("tool_choice", "'tool_choice.type' must be auto, any, none or tool (with a name)");
  }
  if (const Json& d = JsonAt(choice, "disable_parallel_tool_use");
      d.is_boolean() && d.get<bool>()) {
    (*chat)["parallel_tool_calls"] = false;
  }
  return absl::OkStatus();
}

// The Message's stop_reason and stop_sequence for a chat choice's
// finish_reason and stop_reason.
std::pair<std::string, Json> StopReason(const std::string& finish, const Json& stop_reason,
                                        const std::vector<std::string>& stop_sequences) {
  if (finish == "tool_calls") return {"tool_use", nullptr};
  if (finish == "length") return {"max_tokens", nullptr};
  if (stop_reason.is_string() &&
      std::find(stop_sequences.begin(), stop_sequences.end(), stop_reason.get<std::string>()) !=
          stop_sequences.end()) {
    return {"stop_sequence", stop_reason};
  }
  return {"end_turn", nullptr};
}

Json Usage(const Json& chat_usage) {
  return Json{{"input_tokens", JsonIntAt(chat_usage, "prompt_tokens")},
              {"output_tokens", JsonIntAt(chat_usage, "completion_tokens")},
              {"cache_read_input_tokens",
               JsonIntAt(JsonAt(chat_usage, "prompt_tokens_details"), "cached_tokens")}};
}

Json ToolInput(const std::string& arguments) {
  Json input = Json::parse(arguments, nullptr, /*allow_exceptions=*/false);
  return input.is_object() ? input : Json::object();
}

}  // namespace

absl::StatusOr<AnthropicRequest> ParseAnthropicRequest(const Json& body, bool count_tokens) {
  JsonFields f(body);
  AnthropicRequest r;
  Json& chat = r.chat_body;
  chat = Json::object();
  FERRY_ASSIGN_OR_RETURN(auto model, f.String("model"));
  if (model) chat["model"] = *model;
  FERRY_ASSIGN_OR_RETURN(auto max_tokens, f.Int("max_tokens"));
  if (max_tokens) {
    FERRY_RETURN_IF_ERROR(CheckRange("max_tokens", static_cast<double>(*max_tokens), 1, 1 << 30));
    chat["max_completion_tokens"] = *max_tokens;
  } else if (!count_tokens) {
    return Bad("max_tokens", "'max_tokens' is required");
  }
  const Json* messages = f.Get("messages");
  if (messages == nullptr) return Bad("messages", "'messages' is required");
  if (!messages->is_array() || messages->empty())
    return Bad("messages", "'messages' must be a non-empty array");
  Json chat_messages = Json::array();
  if (const Json* system = f.Get("system")) {
    FERRY_ASSIGN_OR_RETURN(std::string text, BlockText(*system, "system", "system"));
    chat_messages.push_back(Json{{"role", "system"}, {"content", std::move(text)}});
  }
  for (size_t i = 0; i < messages->size(); ++i)
    FERRY_RETURN_IF_ERROR(AddMessage((*messages)[i], i, &chat_messages));
  chat["messages"] = std::move(chat_messages);
  FERRY_ASSIGN_OR_RETURN(auto stops, f.StringOrList("stop_sequences"));
  if (stops && !stops->empty()) {
    r.stop_sequences = *stops;
    chat["stop"] = *stops;
  }
  for (const char* key : {"temperature", "top_p", "top_k"}) {
    if (const Json* v = f.Get(key)) chat[key] = *v;
  }
  FERRY_ASSIGN_OR_RETURN(auto stream, f.Bool("stream"));
  r.stream = stream.value_or(false) && !count_tokens;
  if (r.stream) {
    chat["stream"] = true;
    chat["stream_options"] = Json{{"include_usage", true}};
  }
  if (const Json* tools = f.Get("tools")) {
    FERRY_ASSIGN_OR_RETURN(chat["tools"], ChatTools(*tools));
  }
  if (const Json* choice = f.Get("tool_choice")) FERRY_RETURN_IF_ERROR(ToolChoice(*choice, &chat));
  // Extended thinking: a reasoning model thinks by itself (a reasoning
  // parser returns it as thinking blocks); the budget bounds it, and
  // "disabled" asks the template for no thinking (Qwen3's enable_thinking).
  FERRY_ASSIGN_OR_RETURN(const Json* thinking, f.Object("thinking"));
  if (thinking != nullptr) {
    JsonFields t(*thinking, "thinking.");
    FERRY_ASSIGN_OR_RETURN(auto type, t.String("type"));
    if (type == "enabled") {
      FERRY_ASSIGN_OR_RETURN(auto budget, t.Int("budget_tokens"));
      if (!budget) return Bad("thinking.budget_tokens", "'thinking.budget_tokens' is required");
      if (*budget < 1024) {
        return Bad("thinking.budget_tokens", "'thinking.budget_tokens' must be >= 1024");
      }
      if (max_tokens && *budget >= *max_tokens) {
        return Bad("thinking.budget_tokens",
                   "'max_tokens' must be greater than 'thinking.budget_tokens'");
      }
      r.thinking_budget = *budget;
    } else if (type == "disabled") {
      Json& kwargs = chat["chat_template_kwargs"];
      if (!kwargs.is_object()) kwargs = Json::object();
      if (!kwargs.contains("enable_thinking")) kwargs["enable_thinking"] = false;
    } else {
      return Bad("thinking.type", "'thinking.type' must be 'enabled' or 'disabled'");
    }
  }
  FERRY_ASSIGN_OR_RETURN(const Json* metadata, f.Object("metadata"));
  (void)metadata;
  return r;
}

Json ChatCompletionToMessage(const Json& completion, const AnthropicRequest& request) {
  Json content = Json::array();
  std::string finish;
  Json stop_reason;
  if (const Json& choices = JsonAt(completion, "choices"); choices.is_array() && !choices.empty()) {
    const Json& choice = choices[0];
    const Json& message = JsonAt(choice, "message");
    finish = JsonStringAt(choice, "finish_reason");
    stop_reason = JsonAt(choice, "stop_reason");
    if (const std::string thinking = JsonStringAt(message, "reasoning_content");
        !thinking.empty()) {
      content.push_back(Json{{"type", "thinking"}, {"thinking", thinking}, {"signature", ""}});
    }
    if (const std::string text = JsonStringAt(message, "content"); !text.empty()) {
      content.push_back(Json{{"type", "text"}, {"text", text}});
    }
    if (const Json& calls = JsonAt(message, "tool_calls"); calls.is_array()) {
      for (const Json& call : calls) {
        content.push_back(
            Json{{"type", "tool_use"},
                 {"id", JsonStringAt(call, "id")},
                 {"name", JsonStringAt(JsonAt(call, "function"), "name")},
                 {"input", ToolInput(JsonStringAt(JsonAt(call, "function"), "arguments"))}});
      }
    }
  }
  auto [reason, sequence] = StopReason(finish, stop_reason, request.stop_sequences);
  return Json{{"id", absl::StrCat("msg_", IdSuffix(JsonStringAt(completion, "id")))},
              {"type", "message"},
              {"role", "assistant"},
              {"model", JsonStringAt(completion, "model")},
              {"content", std::move(content)},
              {"stop_reason", reason},
              {"stop_sequence", sequence},
              {"usage", Usage(JsonAt(completion, "usage"))}};
}

HttpResponse AnthropicErrorResponse(const absl::Status& status) {
  HttpResponse r = ErrorResponse(status);  // status code and headers (Retry-After)
  const char* type = "api_error";
  switch (r.status) {
    case 400:
      type = "invalid_request_error";
      break;
    case 401:
      type = "authentication_error";
      break;
    case 403:
      type = "permission_error";
      break;
    case 404:
      type = "not_found_error";
      break;
    case 405:
      type = "invalid_request_error";
      break;
    case 413:
      type = "request_too_large";
      break;
    case 429:
      type = "rate_limit_error";
      break;
    case 503:
      type = "overloaded_error";
      break;
    default:
      break;
  }
  r.body = Dump(Json{{"type", "error"},
                     {"error", {{"type", type}, {"message", std::string(status.message())}}}});
  return r;
}

bool AnthropicEventWriter::Emit(const char* type, Json fields) {
  Json event = Json{{"type", type}};
  for (auto& [k, v] : fields.items()) event[k] = std::move(v);
  if (ok_) ok_ = out_.Write(absl::StrCat("event: ", type, "\ndata: ", Dump(event), "\n\n"));
  return ok_;
}

void AnthropicEventWriter::Start(const Json& chunk) {
  started_ = true;
  // The prompt's size comes with the usage at the end (message_delta).
  Emit("message_start", Json{{"message",
                              {{"id", absl::StrCat("msg_", IdSuffix(JsonStringAt(chunk, "id")))},
                               {"type", "message"},
                               {"role", "assistant"},
                               {"model", JsonStringAt(chunk, "model")},
                               {"content", Json::array()},
                               {"stop_reason", nullptr},
                               {"stop_sequence", nullptr},
                               {"usage", {{"input_tokens", 0}, {"output_tokens", 0}}}}}});
}

void AnthropicEventWriter::OpenBlock(const Json& block) {
  CloseBlock();
  open_type_ = JsonStringAt(block, "type");
  Emit("content_block_start", Json{{"index", blocks_++}, {"content_block", block}});
}

void AnthropicEventWriter::CloseBlock() {
  if (open_type_.empty()) return;
  Emit("content_block_stop", Json{{"index", blocks_ - 1}});
  open_type_.clear();
  open_call_ = -1;
}

void AnthropicEventWriter::ToolCallDelta(const Json& call) {
  const int64_t index = JsonIntAt(call, "index");
  const Json& fn = JsonAt(call, "function");
  if (open_type_ != "tool_use" || open_call_ != index) {
    OpenBlock(Json{{"type", "tool_use"},
                   {"id", JsonStringAt(call, "id")},
                   {"name", JsonStringAt(fn, "name")},
                   {"input", Json::object()}});
    open_call_ = index;
  }
  if (const std::string args = JsonStringAt(fn, "arguments"); !args.empty()) {
    Emit("content_block_delta",
         Json{{"index", blocks_ - 1},
              {"delta", {{"type", "input_json_delta"}, {"partial_json", args}}}});
  }
}

void AnthropicEventWriter::Finish() {
  ended_ = true;
  CloseBlock();
  auto [reason, sequence] = StopReason(finish_reason_, stop_reason_, request_.stop_sequences);
  Emit("message_delta", Json{{"delta", {{"stop_reason", reason}, {"stop_sequence", sequence}}},
                             {"usage", usage_.is_null() ? Json{{"output_tokens", 0}} : usage_}});
  Emit("message_stop", Json::object());
}

bool AnthropicEventWriter::Write(std::string_view data) {
  if (ended_ || !ok_) return ok_;
  ChatSseEvent event = ReadChatSseEvent(data);
  if (event.kind == ChatSseEvent::Kind::kComment) {
    ok_ = out_.Write(data);
    return ok_;
  }
  if (event.kind == ChatSseEvent::Kind::kDone && started_) Finish();
  if (event.kind != ChatSseEvent::Kind::kChunk) return ok_;
  const Json& chunk = event.chunk;
  if (const Json& error = JsonAt(chunk, "error"); !error.is_null()) {
    ended_ = true;
    std::string message = JsonStringAt(error, "message");
    Emit("error", Json{{"error",
                        {{"type", "api_error"},
                         {"message", message.empty() ? "the request failed" : message}}}});
    return ok_;
  }
  if (!started_) Start(chunk);
  if (const Json& usage = JsonAt(chunk, "usage"); usage.is_object()) usage_ = Usage(usage);
  const Json& choices = JsonAt(chunk, "choices");
  if (!choices.is_array()) return ok_;
  for (const Json& choice : choices) {
    if (JsonIntAt(choice, "index") != 0) continue;
    const Json& delta = JsonAt(choice, "delta");
    if (const std::string thinking = JsonStringAt(delta, "reasoning_content"); !thinking.empty()) {
      if (open_type_ != "thinking")
        OpenBlock(Json{{"type", "thinking"}, {"thinking", ""}, {"signature", ""}});
      Emit("content_block_delta",
           Json{{"index", blocks_ - 1},
                {"delta", {{"type", "thinking_delta"}, {"thinking", thinking}}}});
    }
    if (const std::string text = JsonStringAt(delta, "content"); !text.empty()) {
      if (open_type_ != "text") OpenBlock(Json{{"type", "text"}, {"text", ""}});
      Emit("content_block_delta",
           Json{{"index", blocks_ - 1}, {"delta", {{"type", "text_delta"}, {"text", text}}}});
    }
    if (const Json& calls = JsonAt(delta, "tool_calls"); calls.is_array()) {
      for (const Json& call : calls) ToolCallDelta(call);
    }
    if (const std::string finish = JsonStringAt(choice, "finish_reason"); !finish.empty()) {
      finish_reason_ = finish;
      stop_reason_ = JsonAt(choice, "stop_reason");
    }
  }
  return ok_;
}

}  // namespace ferry
