// Parsing and validation of /v1/completions and /v1/chat/completions bodies
// into typed requests, with OpenAI's and vLLM's parameter semantics. Every
// error is an InvalidArgument naming the parameter (see openai_error.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ferry/v1/common.pb.h"
#include "nlohmann/json.hpp"

namespace ferry {

// The parameters both endpoints share.
struct GenerationOptions {
  std::string model;                 // as asked for (empty: the served model)
  v1::SamplingParams params;         // max_tokens left 0 when not given
  std::optional<int64_t> max_tokens;
  int n = 1;
  bool stream = false;
  bool include_usage = false;        // stream_options.include_usage
  int logprobs = -1;                 // alternatives per token; -1: no logprobs
  // vLLM's prompt_logprobs: alternatives per prompt token, with ranks
  // (-1: not asked for). Not available when streaming.
  int prompt_logprobs = -1;
  int priority = 0;
  std::string user;
  // Chat with a forced tool call (tool_choice "required" or a named
  // function): the output, constrained to the call, is returned as
  // message.tool_calls.
  enum class ToolCall { kNone, kNamed, kRequired };
  ToolCall tool_call = ToolCall::kNone;
  std::string tool_name;  // kNamed
  // Chat with tools and tool_choice "auto" (or none given): the functions
  // whose calls are looked for in the answer (see tool_call_parser.h).
  std::vector<std::string> auto_tool_names;
  // parallel_tool_calls: false allows one call at most.
  bool parallel_tool_calls = true;
  // vLLM's truncate_prompt_tokens: keep only the prompt's last k tokens
  // (-1: the context length).
  std::optional<int64_t> truncate_prompt_tokens;
  // vLLM's bad_words, tokenized by the caller into params.bad_words.
  std::vector<std::string> bad_words;
  // Chat, vLLM's thinking_token_budget: a reasoning model thinks for at
  // most this many tokens (the server then closes the thinking itself).
  std::optional<int64_t> thinking_token_budget;
};

struct PromptInput {
  std::vector<int32_t> ids;  // given as ids, or filled by the tokenizer
  std::optional<std::string> text;  // set when given as text
};

struct CompletionRequest {
  GenerationOptions options;
  std::vector<PromptInput> prompts;  // each runs as its own request
  bool echo = false;
};

struct ChatRequest {
  GenerationOptions options;
  // The chat template's variables: messages, tools, add_generation_prompt
  // and chat_template_kwargs (bos/eos are added by the caller).
  nlohmann::ordered_json template_context;
  bool add_generation_prompt = true;
  bool continue_final_message = false;
};

// `vocab_size` bounds token ids in prompts, logit_bias and stop_token_ids.
// Prompts given as text are not tokenized here (their ids stay empty).
absl::StatusOr<CompletionRequest> ParseCompletionRequest(const nlohmann::ordered_json& body,
                                                         int vocab_size);
absl::StatusOr<ChatRequest> ParseChatRequest(const nlohmann::ordered_json& body, int vocab_size);

// The shared parameters alone (used by both parsers).
absl::Status ParseGenerationOptions(const nlohmann::ordered_json& body, bool chat, int vocab_size,
                                    GenerationOptions* out);

}  // namespace ferry
