// Fuzz target: ChatTemplate::Parse and Render on arbitrary template bytes
// with a fixed conversation must return a result or an error, never crash,
// hang or exhaust memory (the render limits are tightened so each input
// finishes fast).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/chat_template/chat_template.h"
#include "nlohmann/json.hpp"

namespace {

const nlohmann::ordered_json& Context() {
  static const auto* kContext = new nlohmann::ordered_json(nlohmann::ordered_json::parse(R"({
    "messages": [
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call12345", "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
      {"role": "tool", "tool_call_id": "call12345", "content": "21 C"},
      {"role": "assistant", "content": "<think>x</think>It is 21 C."},
      {"role": "user", "content": [{"type": "text", "text": "thanks"}]}
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                     "required": ["city"]}}}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>"
  })"));
  return *kContext;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 16)) return 0;
  std::string_view source(reinterpret_cast<const char*>(data), size);
  auto tmpl = ferry::ChatTemplate::Parse(source);
  if (!tmpl.ok()) return 0;
  ferry::chat_template::RenderOptions options;
  options.time_zone = absl::UTCTimeZone();
  options.limits.max_output_bytes = 1 << 20;
  options.limits.max_string_bytes = 1 << 20;
  options.limits.max_list_items = 1 << 14;
  options.limits.max_steps = 200'000;
  auto out = (*tmpl)->Render(Context(), options);
  if (out.ok() && out->size() > options.limits.max_output_bytes) __builtin_trap();
  return 0;
}
