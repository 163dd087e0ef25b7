#include "server/tool_call_parser.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kMistralMarker = "[TOOL_CALLS]";
constexpr std::string_view kPythonTag = "<|python_tag|>";

std::string_view Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// {"name": ..., "arguments" or "parameters": {...} or a JSON string}.
std::optional<ParsedToolCall> CallOf(const Json& j, const std::vector<std::string>& functions) {
  if (!j.is_object()) return std::nullopt;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string()) return std::nullopt;
  if (std::find(functions.begin(), functions.end(), name->get<std::string>()) == functions.end())
    return std::nullopt;
  auto args = j.find("arguments");
  if (args == j.end()) args = j.find("parameters");
  ParsedToolCall call{name->get<std::string>(), "{}"};
  if (args != j.end()) {
    if (args->is_string()) {
      Json parsed = Json::parse(args->get<std::string>(), nullptr, /*allow_exceptions=*/false);
      if (!parsed.is_object()) return std::nullopt;
      call.arguments = parsed.dump();
    } else if (args->is_object()) {
      call.arguments = args->dump();
    } else {
      return std::nullopt;
    }
  }
  return call;
}

std::optional<ParsedToolCalls> Hermes(std::string_view text,
                                      const std::vector<std::string>& functions) {
  const size_t first = text.find(kHermesOpen);
  if (first == std::string_view::npos) return std::nullopt;
  ParsedToolCalls out{first, {}};
  size_t at = first;
  while ((at = text.find(kHermesOpen, at)) != std::string_view::npos) {
    at += kHermesOpen.size();
    size_t end = text.find(kHermesClose, at);
    // The last block may be cut by the end of sequence.
    std::string_view body =
        text.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
    Json j = Json::parse(Trim(body), nullptr, /*allow_exceptions=*/false);
    auto call = CallOf(j, functions);
    if (!call) return std::nullopt;
    out.calls.push_back(std::move(*call));
    if (end == std::string_view::npos) break;
    at = end + kHermesClose.size();
  }
  return out;
}

std::optional<ParsedToolCalls> Mistral(std::string_view text,
                                       const std::vector<std::string>& functions) {
  const size_t marker = text.find(kMistralMarker);
  if (marker == std::string_view::npos) return std::nullopt;
  Json j = Json::parse(Trim(text.substr(marker + kMistralMarker.size())), nullptr,
                       /*allow_exceptions=*/false);
  if (j.is_object()) j = Json::array({j});
  if (!j.is_array() || j.empty()) return std::nullopt;
  ParsedToolCalls out{marker, {}};
  for (const Json& c : j) {
    auto call = CallOf(c, functions);
    if (!call) return std::nullopt;
    out.calls.push_back(std::move(*call));
  }
  return out;
}

std::optional<ParsedToolCalls> Llama3Json(std::string_view text,
                                          const std::vector<std::string>& functions) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return std::nullopt;
  std::string_view body = Trim(text);
  if (body.substr(0, kPythonTag.size()) == kPythonTag) body = Trim(body.substr(kPythonTag.size()));
  if (body.empty() || body.front() != '{') return std::nullopt;
  ParsedToolCalls out{first, {}};
  for (absl::string_view piece :
       absl::StrSplit(absl::string_view(body.data(), body.size()), "; ")) {
    Json j = Json::parse(Trim(std::string_view(piece.data(), piece.size())), nullptr,
                         /*allow_exceptions=*/false);
    auto call = CallOf(j, functions);
    if (!call) {
      // A ';' inside an argument string: the whole body as one call.
      out.calls.clear();
      auto whole = CallOf(Json::parse(body, nullptr, /*allow_exceptions=*/false), functions);
      if (!whole) return std::nullopt;
      out.calls.push_back(std::move(*whole));
      return out;
    }
    out.calls.push_back(std::move(*call));
  }
  return out;
}

// The longest suffix of `text` that is a proper prefix of `marker`.
size_t PartialMarker(std::string_view text, std::string_view marker) {
  for (size_t n = std::min(text.size(), marker.size() - 1); n > 0; --n) {
    if (text.substr(text.size() - n) == marker.substr(0, n)) return n;
  }
  return 0;
}

}  // namespace

absl::StatusOr<ToolCallFormat> ParseToolCallFormat(std::string_view name) {
  if (name == "none") return ToolCallFormat::kNone;
  if (name == "auto") return ToolCallFormat::kAuto;
  if (name == "hermes") return ToolCallFormat::kHermes;
  if (name == "mistral") return ToolCallFormat::kMistral;
  if (name == "llama3_json") return ToolCallFormat::kLlama3Json;
  return absl::InvalidArgumentError(absl::StrCat("unknown tool-call format '", std::string(name),
                                                 "' (none, auto, hermes, mistral or llama3_json)"));
}

std::optional<ParsedToolCalls> FindToolCalls(ToolCallFormat format, std::string_view text,
                                             const std::vector<std::string>& functions) {
  switch (format) {
    case ToolCallFormat::kNone:
      return std::nullopt;
    case ToolCallFormat::kHermes:
      return Hermes(text, functions);
    case ToolCallFormat::kMistral:
      return Mistral(text, functions);
    case ToolCallFormat::kLlama3Json:
      return Llama3Json(text, functions);
    case ToolCallFormat::kAuto:
      if (auto h = Hermes(text, functions)) return h;
      if (auto m = Mistral(text, functions)) return m;
      return Llama3Json(text, functions);
  }
  return std::nullopt;
}

size_t ContentPrefix(ToolCallFormat format, std::string_view text) {
  if (format == ToolCallFormat::kNone) return text.size();
  const bool json_start = format == ToolCallFormat::kAuto || format == ToolCallFormat::kLlama3Json;
  if (json_start) {
    // An answer that opens with '{' (or the python tag) may be one call.
    std::string_view t = Trim(text);
    if (t.empty()) return 0;
    if (t.front() == '{' || kPythonTag.substr(0, std::min(t.size(), kPythonTag.size())) ==
                                t.substr(0, std::min(t.size(), kPythonTag.size()))) {
      return 0;
    }
    if (format == ToolCallFormat::kLlama3Json) return text.size();
  }
  size_t end = text.size();
  for (std::string_view marker : {kHermesOpen, kMistralMarker}) {
    if (format == ToolCallFormat::kHermes && marker != kHermesOpen) continue;
    if (format == ToolCallFormat::kMistral && marker != kMistralMarker) continue;
    const size_t at = text.find(marker);
    if (at != std::string_view::npos) end = std::min(end, at);
    end = std::min(end, text.size() - PartialMarker(text, marker));
  }
  return end;
}

}  // namespace ferry
