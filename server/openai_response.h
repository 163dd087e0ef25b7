// OpenAI response bodies: completions and chat completions, whole or as
// stream chunks, with usage and logprobs in the two shapes the API uses
// (the legacy completions one and chat's per-token list).
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer/tokenizer.h"
#include "ferry/v1/common.pb.h"
#include "nlohmann/json.hpp"

namespace ferry {

using Json = nlohmann::ordered_json;

// What identifies one response and its chunks.
struct ResponseHeader {
  bool chat = false;
  std::string id;
  int64_t created = 0;
  std::string model;
};

struct UsageCounts {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_prompt_tokens = 0;
  // With a reasoning parser: the completion tokens spent thinking
  // (usage.completion_tokens_details.reasoning_tokens).
  std::optional<int64_t> reasoning_tokens;
};

// "stop", "length", "abort" or null (unfinished).
Json FinishReasonJson(v1::FinishReason reason);
Json UsageJson(const UsageCounts& usage);

// What follows the prefix of a response id ("cmpl-", "chatcmpl-"): the part
// the ids derived from it (tool calls, Response and Message items) share.
std::string IdSuffix(const std::string& id);

// The common top of a response or chunk: id, object, created, model.
Json ResponseTop(const ResponseHeader& h, bool chunk);

// The token as text for logprobs (its raw bytes; invalid UTF-8 is replaced
// when serialized).
std::string TokenString(const Tokenizer& tokenizer, int32_t id);

// Legacy completions logprobs. `text_offset` is where the first token's text
// starts; it is advanced past the tokens.
class CompletionLogprobs {
 public:
  CompletionLogprobs() = default;
  // Prompt tokens (echo). `prompt_logprobs` (TokenEvent.prompt_logprobs)
  // scores tokens 1 on; the first token's logprob, and every one when they
  // do not match the prompt, is null.
  // At most `top_k` alternatives are kept per token.
  void AddPromptTokens(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                       const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& prompt_logprobs,
                       int top_k, int64_t* text_offset);
  void Add(const Tokenizer& tokenizer, const v1::TokenLogprob& lp, int64_t* text_offset,
           int top_k = std::numeric_limits<int>::max());
  Json ToJson() const;
  bool empty() const { return tokens_.empty(); }

 private:
  Json tokens_ = Json::array();
  Json token_logprobs_ = Json::array();
  Json top_logprobs_ = Json::array();
  Json text_offset_ = Json::array();
};

// Chat logprobs: {"content": [{token, logprob, bytes, top_logprobs}]}.
class ChatLogprobs {
 public:
  ChatLogprobs() = default;
  void Add(const Tokenizer& tokenizer, const v1::TokenLogprob& lp, int top_k);
  Json ToJson() const;

 private:
  Json content_ = Json::array();
};

// vLLM's prompt_logprobs: null for the first prompt token, then for each
// token a map from token id (as a string) to {logprob, rank,
// decoded_token}: the prompt's own token first, then up to `top_k` most
// likely tokens (the prompt's token once). Null when `prompt_logprobs` does
// not score `ids` (they come from another prompt).
Json PromptLogprobsJson(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                        const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& prompt_logprobs,
                        int top_k);

// One event of a chat stream as GenerationRun writes it (SseEvent, kSseDone
// or a keep-alive comment), read back by the writers that reshape it.
struct ChatSseEvent {
  enum class Kind { kComment, kDone, kChunk, kOther };
  Kind kind = Kind::kOther;
  nlohmann::ordered_json chunk;  // kChunk: a JSON object
};
ChatSseEvent ReadChatSseEvent(std::string_view data);

// Compact JSON, invalid UTF-8 replaced by U+FFFD.
std::string Dump(const Json& j);
// One server-sent event: "data: <json>\n\n".
std::string SseEvent(const Json& j);
inline constexpr char kSseDone[] = "data: [DONE]\n\n";

}  // namespace ferry
