// Fuzz target: the gateway's request parsing and validation
// (/v1/completions and /v1/chat/completions bodies) on arbitrary bytes: any
// JSON must give a request or an error, never a crash or a hang.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "nlohmann/json.hpp"
#include "server/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 16)) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  nlohmann::ordered_json body = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;
  (void)ferry::ParseCompletionRequest(body, 32000);
  (void)ferry::ParseChatRequest(body, 32000);
  (void)ferry::ParseCompletionRequest(body, 1);
  return 0;
}
