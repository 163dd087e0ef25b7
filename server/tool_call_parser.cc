#include "server/tool_call_parser.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kMistralMarker = "[TOOL_CALLS]";
constexpr std::string_view kPythonTag = "<|python_tag|>";
constexpr std::string_view kSpace = " \t\r\n";  // JSON's whitespace

std::string_view Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
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
  const size_t first = text.find_first_not_of(kSpace);
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

bool IsSpace(char c) { return kSpace.find(c) != std::string_view::npos; }

// A cursor over JSON text that may stop anywhere (the answer so far).
class PartialJson {
 public:
  enum class R { kDone, kMore, kBad };  // complete, cut by the end of the text, not JSON

  PartialJson(std::string_view text, size_t pos) : t_(text), p_(pos) {}
  size_t pos() const { return p_; }
  bool AtEnd() const { return p_ >= t_.size(); }
  char Peek() const { return t_[p_]; }
  void SkipSpace() {
    while (p_ < t_.size() && IsSpace(t_[p_])) ++p_;
  }
  bool Consume(char c) {
    if (AtEnd() || t_[p_] != c) return false;
    ++p_;
    return true;
  }

  // A string, decoded into *out.
  R String(std::string* out) {
    if (AtEnd()) return R::kMore;
    if (t_[p_] != '"') return R::kBad;
    size_t q = p_ + 1;
    while (q < t_.size() && t_[q] != '"') {
      if (static_cast<unsigned char>(t_[q]) < 0x20) return R::kBad;
      q += t_[q] == '\\' ? 2 : 1;
    }
    if (q >= t_.size()) return R::kMore;
    Json j = Json::parse(t_.substr(p_, q + 1 - p_), nullptr, /*allow_exceptions=*/false);
    if (!j.is_string()) return R::kBad;
    *out = j.get<std::string>();
    p_ = q + 1;
    return R::kDone;
  }

  // Any value; a number or literal that reaches the end of the text may
  // still go on, so it counts as cut.
  R SkipValue() {
    if (AtEnd()) return R::kMore;
    const char c = t_[p_];
    if (c == '"') {
      std::string ignored;
      return String(&ignored);
    }
    if (c == '{' || c == '[') {
      int depth = 0;
      bool in_string = false;
      for (; p_ < t_.size(); ++p_) {
        const char ch = t_[p_];
        if (in_string) {
          if (ch == '\\') {
            ++p_;
          } else if (ch == '"') {
            in_string = false;
          }
        } else if (ch == '"') {
          in_string = true;
        } else if (ch == '{' || ch == '[') {
          ++depth;
        } else if ((ch == '}' || ch == ']') && --depth == 0) {
          ++p_;
          return R::kDone;
        }
      }
      p_ = t_.size();
      return R::kMore;
    }
    const size_t start = p_;
    while (p_ < t_.size() && (std::isalnum(static_cast<unsigned char>(t_[p_])) || t_[p_] == '-' ||
                              t_[p_] == '+' || t_[p_] == '.')) {
      ++p_;
    }
    if (p_ == start) return R::kBad;
    return AtEnd() ? R::kMore : R::kDone;
  }

 private:
  std::string_view t_;
  size_t p_;
};

using R = PartialJson::R;

// One call's object, {"name": ..., "arguments" or "parameters": {...}}, as
// far as it goes.
R ScanCall(std::string_view text, PartialJson& r, PartialToolCall* call) {
  if (!r.Consume('{')) return R::kBad;
  bool first = true, seen_name = false, seen_arguments = false;
  while (true) {
    r.SkipSpace();
    if (r.AtEnd()) return R::kMore;
    if (r.Consume('}')) {
      call->done = true;
      return R::kDone;
    }
    if (!first) {
      if (!r.Consume(',')) return R::kBad;
      r.SkipSpace();
    }
    first = false;
    std::string key;
    if (R k = r.String(&key); k != R::kDone) return k;
    r.SkipSpace();
    if (r.AtEnd()) return R::kMore;
    if (!r.Consume(':')) return R::kBad;
    r.SkipSpace();
    if (r.AtEnd()) return R::kMore;
    // A second name or arguments key would make what already streamed
    // wrong (a JSON parser keeps the last one): not a call to stream.
    const bool is_arguments = key == "arguments" || key == "parameters";
    if ((key == "name" && seen_name) || (is_arguments && seen_arguments)) return R::kBad;
    if (key == "name") {
      seen_name = true;
      std::string name;
      if (R n = r.String(&name); n != R::kDone) return n;
      call->name = std::move(name);
    } else if (is_arguments) {
      seen_arguments = true;
      const size_t start = r.pos();
      call->arguments_quoted = r.Peek() == '"';
      if (!call->arguments_quoted && r.Peek() != '{') return R::kBad;
      const R v = r.SkipValue();
      call->arguments = std::string(text.substr(start, r.pos() - start));
      if (v != R::kDone) return v;
      call->arguments_done = true;
    } else if (R v = r.SkipValue(); v != R::kDone) {
      return v;
    }
  }
}

// Adds the call at r's position (after spaces) to `out`; false when the
// scan should stop (the text ends, or it is not a call).
bool AddCall(std::string_view text, PartialJson& r, PartialToolCalls& out) {
  r.SkipSpace();
  if (r.AtEnd()) return false;
  PartialToolCall call;
  const R s = ScanCall(text, r, &call);
  out.calls.push_back(std::move(call));
  if (s == R::kBad) out.malformed = true;
  return s == R::kDone;
}

// A call or a list of calls ("[{...}, {...}]") from `pos`.
void ScanList(std::string_view text, size_t pos, PartialToolCalls& out) {
  PartialJson r(text, pos);
  r.SkipSpace();
  if (r.AtEnd()) return;
  if (r.Peek() == '{') {
    AddCall(text, r, out);
    return;
  }
  if (!r.Consume('[')) {
    out.malformed = true;
    return;
  }
  for (bool first = true;; first = false) {
    r.SkipSpace();
    if (r.AtEnd() || r.Peek() == ']') return;
    if (!first && !r.Consume(',')) {
      out.malformed = true;
      return;
    }
    if (!AddCall(text, r, out)) return;
  }
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

std::optional<PartialToolCalls> ScanToolCalls(ToolCallFormat format, std::string_view text) {
  if (format == ToolCallFormat::kNone) return std::nullopt;
  const size_t hermes = text.find(kHermesOpen), mistral = text.find(kMistralMarker);
  PartialToolCalls out;
  if ((format == ToolCallFormat::kHermes || format == ToolCallFormat::kAuto) &&
      hermes != std::string_view::npos) {
    out.format = ToolCallFormat::kHermes;
    for (size_t at = hermes; at != std::string_view::npos; at = text.find(kHermesOpen, at)) {
      PartialJson r(text, at + kHermesOpen.size());
      if (!AddCall(text, r, out)) break;
      at = r.pos();
    }
    return out;
  }
  if ((format == ToolCallFormat::kMistral || format == ToolCallFormat::kAuto) &&
      mistral != std::string_view::npos) {
    out.format = ToolCallFormat::kMistral;
    ScanList(text, mistral + kMistralMarker.size(), out);
    return out;
  }
  if (format != ToolCallFormat::kLlama3Json && format != ToolCallFormat::kAuto) return std::nullopt;
  // The whole answer is the call(s), maybe after the python tag, joined by ';'.
  PartialJson r(text, 0);
  r.SkipSpace();
  if (text.substr(r.pos(), kPythonTag.size()) == kPythonTag) {
    r = PartialJson(text, r.pos() + kPythonTag.size());
    r.SkipSpace();
  }
  if (r.AtEnd() || r.Peek() != '{') return std::nullopt;
  out.format = ToolCallFormat::kLlama3Json;
  while (AddCall(text, r, out)) {
    r.SkipSpace();
    if (!r.Consume(';')) break;
  }
  return out;
}

std::optional<PartialToolCalls> ScanToolCallList(std::string_view text) {
  PartialToolCalls out;
  ScanList(text, 0, out);
  return out;
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
    end = std::min(end, text.size() - PartialMarkerLength(text, marker));
  }
  return end;
}

}  // namespace ferry
