// ParseChatRequest: messages (system, developer, user, assistant, tool) with
// content as a string or a list of text parts, tools, and the template
// switches, turned into a chat template's variables.
#include <algorithm>
#include <iterator>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "server/json_fields.h"
#include "server/openai_error.h"
#include "server/openai_request.h"
#include "server/structured_request.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxLogprobs = 20;

absl::StatusOr<std::string> ContentText(const Json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) {
    return InvalidParamError("messages", absl::StrCat("'", where,
                                                      ".content' must be a string or an array of text parts"));
  }
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const Json& part = content[i];
    std::string at = absl::StrCat(where, ".content[", i, "]");
    if (!part.is_object()) return InvalidParamError("messages", absl::StrCat("'", at, "' must be an object"));
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) {
      return InvalidParamError("messages", absl::StrCat("'", at, ".type' must be a string"));
    }
    if (*type != "text") {
      return InvalidParamError("messages", absl::StrCat("content part type '", type->get<std::string>(),
                                                        "' in '", at, "' is not supported (text only)"));
    }
    auto t = part.find("text");
    if (t == part.end() || !t->is_string()) {
      return InvalidParamError("messages", absl::StrCat("'", at, ".text' must be a string"));
    }
    if (!text.empty()) text += "\n";
    text += t->get<std::string>();
  }
  return text;
}

// OpenAI sends tool-call arguments as a JSON string; templates index them
// as a mapping, so a string holding a JSON object becomes that object.
absl::StatusOr<Json> ToolCalls(const Json& calls, const std::string& where) {
  if (!calls.is_array()) {
    return InvalidParamError("messages", absl::StrCat("'", where, ".tool_calls' must be an array"));
  }
  Json out = calls;
  for (Json& call : out) {
    if (!call.is_object()) {
      return InvalidParamError("messages", absl::StrCat("'", where, ".tool_calls' entries must be objects"));
    }
    auto fn = call.find("function");
    if (fn == call.end() || !fn->is_object()) continue;
    auto args = fn->find("arguments");
    if (args != fn->end() && args->is_string()) {
      Json parsed = Json::parse(args->get<std::string>(), nullptr, /*allow_exceptions=*/false);
      if (!parsed.is_discarded() && parsed.is_object()) *args = std::move(parsed);
    }
  }
  return out;
}

absl::StatusOr<Json> ConvertMessage(const Json& m, size_t index) {
  std::string where = absl::StrCat("messages[", index, "]");
  if (!m.is_object()) return InvalidParamError("messages", absl::StrCat("'", where, "' must be an object"));
  auto role = m.find("role");
  if (role == m.end() || !role->is_string()) {
    return InvalidParamError("messages", absl::StrCat("'", where, ".role' must be a string"));
  }
  const std::string r = role->get<std::string>();
  if (r != "system" && r != "developer" && r != "user" && r != "assistant" && r != "tool" && r != "function") {
    return InvalidParamError("messages", absl::StrCat("'", where, ".role' must be system, developer, user, "
                                                      "assistant or tool, got '", r, "'"));
  }
  Json out = Json::object();
  out["role"] = r;
  auto content = m.find("content");
  bool has_tool_calls = m.contains("tool_calls") && !m["tool_calls"].is_null();
  if (content == m.end() || content->is_null()) {
    if (r != "assistant" || !has_tool_calls) {
      return InvalidParamError("messages", absl::StrCat("'", where, ".content' is required"));
    }
    out["content"] = nullptr;
  } else {
    FERRY_ASSIGN_OR_RETURN(std::string text, ContentText(*content, where));
    out["content"] = std::move(text);
  }
  for (const char* key : {"name", "tool_call_id"}) {
    auto it = m.find(key);
    if (it == m.end() || it->is_null()) continue;
    if (!it->is_string()) {
      return InvalidParamError("messages", absl::StrCat("'", where, ".", key, "' must be a string"));
    }
    out[key] = *it;
  }
  if (has_tool_calls) {
    FERRY_ASSIGN_OR_RETURN(out["tool_calls"], ToolCalls(m["tool_calls"], where));
  }
  return out;
}

absl::Status ParseLogprobs(const JsonFields& f, GenerationOptions* o) {
  FERRY_ASSIGN_OR_RETURN(auto logprobs, f.Bool("logprobs"));
  FERRY_ASSIGN_OR_RETURN(auto top, f.Int("top_logprobs"));
  if (top) FERRY_RETURN_IF_ERROR(CheckRange("top_logprobs", static_cast<double>(*top), 0, kMaxLogprobs));
  if (top && *top > 0 && !logprobs.value_or(false)) {
    return InvalidParamError("top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
  }
  if (logprobs.value_or(false)) {
    o->logprobs = static_cast<int>(top.value_or(0));
    o->params.set_logprobs(o->logprobs);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ChatRequest> ParseChatRequest(const Json& body, int vocab_size) {
  ChatRequest r;
  FERRY_RETURN_IF_ERROR(ParseGenerationOptions(body, /*chat=*/true, vocab_size, &r.options));
  JsonFields f(body);
  FERRY_RETURN_IF_ERROR(ParseLogprobs(f, &r.options));
  if (f.Has("echo")) FERRY_RETURN_IF_ERROR(f.Bool("echo").status());
  auto messages = body.find("messages");
  if (messages == body.end() || messages->is_null()) {
    return InvalidParamError("messages", "'messages' is required");
  }
  if (!messages->is_array()) return InvalidParamError("messages", "'messages' must be an array");
  if (messages->empty()) return InvalidParamError("messages", "'messages' must not be empty");
  Json converted = Json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    FERRY_ASSIGN_OR_RETURN(Json m, ConvertMessage((*messages)[i], i));
    converted.push_back(std::move(m));
  }
  FERRY_ASSIGN_OR_RETURN(auto add_generation_prompt, f.Bool("add_generation_prompt"));
  FERRY_ASSIGN_OR_RETURN(auto continue_final, f.Bool("continue_final_message"));
  r.continue_final_message = continue_final.value_or(false);
  r.add_generation_prompt = add_generation_prompt.value_or(!r.continue_final_message);
  if (r.continue_final_message && r.add_generation_prompt) {
    return InvalidParamError("continue_final_message",
                             "'continue_final_message' and 'add_generation_prompt' cannot both be true");
  }
  if (r.continue_final_message && converted.back()["role"] != "assistant") {
    return InvalidParamError("continue_final_message",
                             "'continue_final_message' needs the last message to be from the assistant");
  }
  Json context = Json::object();
  FERRY_ASSIGN_OR_RETURN(const Json* kwargs, f.Object("chat_template_kwargs"));
  if (kwargs != nullptr) {
    for (const auto& [k, v] : kwargs->items()) context[k] = v;
  }
  // OpenAI's reasoning_effort reaches the template (gpt-oss's reads it), as
  // in vLLM; chat_template_kwargs win.
  FERRY_ASSIGN_OR_RETURN(auto effort, f.String("reasoning_effort"));
  if (effort) {
    constexpr std::string_view kEfforts[] = {"none", "minimal", "low", "medium", "high", "xhigh"};
    if (std::find(std::begin(kEfforts), std::end(kEfforts), *effort) == std::end(kEfforts)) {
      return InvalidParamError(
          "reasoning_effort",
          "'reasoning_effort' must be none, minimal, low, medium, high or xhigh");
    }
    if (!context.contains("reasoning_effort")) context["reasoning_effort"] = *effort;
  }
  FERRY_RETURN_IF_ERROR(ParseToolChoice(body, &r.options));
  FERRY_ASSIGN_OR_RETURN(r.options.thinking_token_budget, f.Int("thinking_token_budget"));
  if (r.options.thinking_token_budget && *r.options.thinking_token_budget < 0) {
    return InvalidParamError("thinking_token_budget", "'thinking_token_budget' must be >= 0");
  }
  if (auto tools = body.find("tools"); tools != body.end() && !tools->is_null())
    context["tools"] = *tools;
  context["messages"] = std::move(converted);
  context["add_generation_prompt"] = r.add_generation_prompt;
  r.template_context = std::move(context);
  return r;
}

}  // namespace ferry
