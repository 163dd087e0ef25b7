#include "server/structured_request.h"

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/structured/structured_output.h"
#include "server/openai_error.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;
using Kind = structured::OutputSpec::Kind;

// One structured-output request as given, with the parameter it came from.
struct Given {
  std::string param;
  structured::OutputSpec spec;
};

absl::StatusOr<std::string> SchemaText(const Json& schema, const std::string& param) {
  if (schema.is_string()) {
    Json parsed = Json::parse(schema.get<std::string>(), nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded())
      return InvalidParamError(param, absl::StrCat("'", param, "' is not valid JSON"));
    return parsed.dump();
  }
  if (!schema.is_object() && !schema.is_boolean()) {
    return InvalidParamError(param,
                             absl::StrCat("'", param, "' must be a JSON schema (an object), got ",
                                          JsonTypeName(schema)));
  }
  return schema.dump();
}

absl::StatusOr<std::vector<std::string>> Choices(const Json& v, const std::string& param) {
  if (!v.is_array() || v.empty())
    return InvalidParamError(param,
                             absl::StrCat("'", param, "' must be a non-empty list of strings"));
  std::vector<std::string> out;
  for (const Json& c : v) {
    if (!c.is_string() || c.get<std::string>().empty()) {
      return InvalidParamError(param, absl::StrCat("'", param, "' must hold non-empty strings"));
    }
    out.push_back(c.get<std::string>());
  }
  return out;
}

absl::Status ReadResponseFormat(const JsonFields& f, std::vector<Given>* given) {
  FERRY_ASSIGN_OR_RETURN(const Json* format, f.Object("response_format"));
  if (format == nullptr) return absl::OkStatus();
  JsonFields rf(*format, "response_format.");
  FERRY_ASSIGN_OR_RETURN(auto type, rf.String("type"));
  if (!type) return InvalidParamError("response_format.type", "'response_format.type' is required");
  if (*type == "text") return absl::OkStatus();
  if (*type == "json_object") {
    given->push_back({"response_format", {Kind::kJsonObject, "", {}}});
    return absl::OkStatus();
  }
  if (*type == "json_schema") {
    FERRY_ASSIGN_OR_RETURN(const Json* js, rf.Object("json_schema"));
    if (js == nullptr) {
      return InvalidParamError("response_format.json_schema",
                               "'response_format.json_schema' is required with type 'json_schema'");
    }
    auto schema = js->find("schema");
    std::string text = "{}";  // no schema: any JSON value
    if (schema != js->end() && !schema->is_null()) {
      FERRY_ASSIGN_OR_RETURN(text, SchemaText(*schema, "response_format.json_schema.schema"));
    }
    given->push_back({"response_format", {Kind::kJsonSchema, std::move(text), {}}});
    return absl::OkStatus();
  }
  return InvalidParamError(
      "response_format.type",
      absl::StrCat("response_format type '", *type,
                   "' is not supported (use 'text', 'json_object' or 'json_schema')"));
}

// vLLM's guided_* parameters and its newer structured_outputs object.
absl::Status ReadGuided(const JsonFields& f, std::vector<Given>* given) {
  if (const Json* v = f.Get("guided_json")) {
    FERRY_ASSIGN_OR_RETURN(std::string text, SchemaText(*v, "guided_json"));
    given->push_back({"guided_json", {Kind::kJsonSchema, std::move(text), {}}});
  }
  FERRY_ASSIGN_OR_RETURN(auto regex, f.String("guided_regex"));
  if (regex) given->push_back({"guided_regex", {Kind::kRegex, *regex, {}}});
  if (const Json* v = f.Get("guided_choice")) {
    FERRY_ASSIGN_OR_RETURN(auto choices, Choices(*v, "guided_choice"));
    given->push_back({"guided_choice", {Kind::kChoice, "", std::move(choices)}});
  }
  // GBNF, as vLLM's guided_grammar and llama.cpp's grammar take it.
  for (const char* key : {"guided_grammar", "grammar"}) {
    FERRY_ASSIGN_OR_RETURN(auto grammar, f.String(key));
    if (grammar) given->push_back({key, {Kind::kGrammar, *grammar, {}}});
  }
  FERRY_ASSIGN_OR_RETURN(const Json* so, f.Object("structured_outputs"));
  if (so == nullptr) return absl::OkStatus();
  JsonFields sf(*so, "structured_outputs.");
  if (const Json* v = sf.Get("json")) {
    FERRY_ASSIGN_OR_RETURN(std::string text, SchemaText(*v, "structured_outputs.json"));
    given->push_back({"structured_outputs", {Kind::kJsonSchema, std::move(text), {}}});
  }
  FERRY_ASSIGN_OR_RETURN(auto so_regex, sf.String("regex"));
  if (so_regex) given->push_back({"structured_outputs", {Kind::kRegex, *so_regex, {}}});
  if (const Json* v = sf.Get("choice")) {
    FERRY_ASSIGN_OR_RETURN(auto choices, Choices(*v, "structured_outputs.choice"));
    given->push_back({"structured_outputs", {Kind::kChoice, "", std::move(choices)}});
  }
  FERRY_ASSIGN_OR_RETURN(auto json_object, sf.Bool("json_object"));
  if (json_object.value_or(false))
    given->push_back({"structured_outputs", {Kind::kJsonObject, "", {}}});
  FERRY_ASSIGN_OR_RETURN(auto so_grammar, sf.String("grammar"));
  if (so_grammar) given->push_back({"structured_outputs", {Kind::kGrammar, *so_grammar, {}}});
  for (const char* unsupported : {"structural_tag"}) {
    if (sf.Get(unsupported) != nullptr) {
      return InvalidParamError(sf.Name(unsupported),
                               absl::StrCat("'", sf.Name(unsupported), "' is not supported"));
    }
  }
  return absl::OkStatus();
}

// Compiles the spec (as the engine will) so that a bad one is a 400 here.
absl::Status Apply(const Given& g, GenerationOptions* o) {
  auto grammar = structured::Compile(g.spec);
  if (!grammar.ok()) return InvalidParamError(g.param, std::string(grammar.status().message()));
  v1::StructuredOutput* so = o->params.mutable_structured();
  so->Clear();
  switch (g.spec.kind) {
    case Kind::kNone:
      break;
    case Kind::kJsonSchema:
      so->set_json_schema(g.spec.text);
      break;
    case Kind::kJsonObject:
      so->set_json_object(true);
      break;
    case Kind::kRegex:
      so->set_regex(g.spec.text);
      break;
    case Kind::kChoice:
      for (const std::string& c : g.spec.choices) so->add_choice(c);
      break;
    case Kind::kGrammar:
      so->set_grammar(g.spec.text);
      break;
  }
  return absl::OkStatus();
}

bool HasStructured(const GenerationOptions& o) {
  const v1::StructuredOutput& so = o.params.structured();
  return !so.json_schema().empty() || so.json_object() || !so.regex().empty() ||
         so.choice_size() > 0 || !so.grammar().empty();
}

}  // namespace

absl::Status ParseStructuredOutput(const JsonFields& f, GenerationOptions* o) {
  std::vector<Given> given;
  FERRY_RETURN_IF_ERROR(ReadResponseFormat(f, &given));
  FERRY_RETURN_IF_ERROR(ReadGuided(f, &given));
  if (given.empty()) return absl::OkStatus();
  if (given.size() > 1) {
    return InvalidParamError(given[1].param,
                             absl::StrCat("'", given[0].param, "' and '", given[1].param,
                                          "' both ask for structured output; give one"));
  }
  return Apply(given[0], o);
}

absl::Status ParseToolChoice(const Json& body, GenerationOptions* o) {
  // Function name -> its parameters schema.
  std::vector<std::pair<std::string, Json>> functions;
  auto tools = body.find("tools");
  if (tools != body.end() && !tools->is_null()) {
    if (!tools->is_array()) return InvalidParamError("tools", "'tools' must be an array");
    for (size_t i = 0; i < tools->size(); ++i) {
      const Json& t = (*tools)[i];
      const std::string where = absl::StrCat("tools[", i, "]");
      if (!t.is_object())
        return InvalidParamError("tools", absl::StrCat("'", where, "' must be an object"));
      auto type = t.find("type");
      if (type != t.end() && !(type->is_string() && type->get<std::string>() == "function")) {
        return InvalidParamError("tools", absl::StrCat("'", where, ".type' must be 'function'"));
      }
      auto fn = t.find("function");
      if (fn == t.end() || !fn->is_object()) {
        return InvalidParamError("tools", absl::StrCat("'", where, ".function' must be an object"));
      }
      auto name = fn->find("name");
      if (name == fn->end() || !name->is_string() || name->get<std::string>().empty()) {
        return InvalidParamError(
            "tools", absl::StrCat("'", where, ".function.name' must be a non-empty string"));
      }
      Json params = Json{{"type", "object"}};
      if (auto p = fn->find("parameters"); p != fn->end() && !p->is_null()) {
        if (!p->is_object()) {
          return InvalidParamError(
              "tools", absl::StrCat("'", where, ".function.parameters' must be an object"));
        }
        if (!p->empty()) params = *p;
      }
      functions.emplace_back(name->get<std::string>(), std::move(params));
    }
  }
  if (auto parallel = body.find("parallel_tool_calls");
      parallel != body.end() && !parallel->is_null()) {
    if (!parallel->is_boolean()) {
      return InvalidParamError("parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
    }
    o->parallel_tool_calls = parallel->get<bool>();
  }
  auto choice = body.find("tool_choice");
  const bool is_auto =
      choice == body.end() || choice->is_null() || (choice->is_string() && *choice == "auto");
  if (is_auto) {
    for (const auto& [name, params] : functions) o->auto_tool_names.push_back(name);
    return absl::OkStatus();
  }
  Json schema;
  if (choice->is_string()) {
    const std::string c = choice->get<std::string>();
    if (c == "none") return absl::OkStatus();
    if (c != "required") {
      return InvalidParamError("tool_choice",
                               absl::StrCat("'tool_choice' must be 'none', 'auto', 'required' or "
                                            "a named function, got '",
                                            c, "'"));
    }
    if (functions.empty())
      return InvalidParamError("tool_choice", "'tool_choice' 'required' needs 'tools'");
    // A list of calls, each {"name": ..., "parameters": {...}}.
    Json any_of = Json::array();
    for (const auto& [name, params] : functions) {
      any_of.push_back(Json{{"type", "object"},
                            {"properties", {{"name", {{"const", name}}}, {"parameters", params}}},
                            {"required", {"name", "parameters"}}});
    }
    schema = Json{{"type", "array"}, {"minItems", 1}, {"items", {{"anyOf", any_of}}}};
    if (!o->parallel_tool_calls) schema["maxItems"] = 1;
    o->tool_call = GenerationOptions::ToolCall::kRequired;
  } else if (choice->is_object()) {
    auto fn = choice->find("function");
    const Json* name =
        fn != choice->end() && fn->is_object() && fn->contains("name") ? &(*fn)["name"] : nullptr;
    if (name == nullptr || !name->is_string()) {
      return InvalidParamError("tool_choice",
                               "'tool_choice' must name a function: {\"type\": \"function\", "
                               "\"function\": {\"name\": ...}}");
    }
    for (const auto& [n, params] : functions) {
      if (n == name->get<std::string>()) schema = params;
    }
    if (schema.is_null()) {
      return InvalidParamError(
          "tool_choice", absl::StrCat("'tool_choice' names the function '",
                                      name->get<std::string>(), "', which is not in 'tools'"));
    }
    o->tool_call = GenerationOptions::ToolCall::kNamed;
    o->tool_name = name->get<std::string>();
  } else {
    return InvalidParamError("tool_choice", "'tool_choice' must be a string or an object");
  }
  if (HasStructured(*o)) {
    return InvalidParamError(
        "tool_choice", "a forced tool call cannot be combined with another structured output");
  }
  return Apply({"tool_choice", {Kind::kJsonSchema, schema.dump(), {}}}, o);
}

Json ToolCallsJson(const std::vector<ParsedToolCall>& calls, const std::string& id_prefix) {
  Json out = Json::array();
  for (const ParsedToolCall& c : calls) {
    out.push_back(Json{{"id", absl::StrCat(id_prefix, "-", out.size())},
                       {"type", "function"},
                       {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  }
  return out;
}

std::optional<std::vector<ParsedToolCall>> ForcedToolCalls(const GenerationOptions& o,
                                                           const std::string& text) {
  Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return std::nullopt;
  std::vector<ParsedToolCall> calls;
  if (o.tool_call == GenerationOptions::ToolCall::kNamed) {
    calls.push_back({o.tool_name, parsed.dump()});
  } else if (o.tool_call == GenerationOptions::ToolCall::kRequired && parsed.is_array()) {
    for (const Json& c : parsed) {
      if (!c.is_object() || !c.contains("name") || !c["name"].is_string()) return std::nullopt;
      calls.push_back(
          {c["name"].get<std::string>(), c.contains("parameters") ? c["parameters"].dump() : "{}"});
    }
  } else {
    return std::nullopt;
  }
  return calls;
}

Json ToolCallsJson(const GenerationOptions& o, const std::string& text,
                   const std::string& id_prefix) {
  auto calls = ForcedToolCalls(o, text);
  if (!calls) return nullptr;
  return ToolCallsJson(*calls, id_prefix);
}

}  // namespace ferry
