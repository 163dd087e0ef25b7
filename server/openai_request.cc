#include "server/openai_request.h"

#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "server/json_fields.h"
#include "server/openai_error.h"
#include "server/structured_request.h"

namespace ferry {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kMaxN = 128;
constexpr int kMaxLogprobs = 20;
constexpr int kMaxStops = 64;
constexpr size_t kMaxBadWords = 256;

absl::Status CheckTokenId(const std::string& param, int64_t id, int vocab_size) {
  if (id < 0 || id >= vocab_size) {
    return InvalidParamError(param, absl::StrCat("token id ", id, " in '", param,
                                                 "' is outside the vocabulary [0, ", vocab_size, ")"));
  }
  return absl::OkStatus();
}

absl::Status ParseSampling(const JsonFields& f, int vocab_size, v1::SamplingParams* p) {
  p->set_temperature(1.0f);
  FERRY_ASSIGN_OR_RETURN(auto temperature, f.Number("temperature"));
  if (temperature) {
    FERRY_RETURN_IF_ERROR(CheckRange("temperature", *temperature, 0, 100));
    p->set_temperature(static_cast<float>(*temperature));
  }
  FERRY_ASSIGN_OR_RETURN(auto top_p, f.Number("top_p"));
  if (top_p) {
    FERRY_RETURN_IF_ERROR(CheckRange("top_p", *top_p, 0, 1, /*lo_open=*/true));
    p->set_top_p(static_cast<float>(*top_p));
  }
  FERRY_ASSIGN_OR_RETURN(auto top_k, f.Int("top_k"));
  if (top_k) {
    if (*top_k < -1 || *top_k > vocab_size) {
      return InvalidParamError("top_k", absl::StrCat("'top_k' must be -1 (off) or in [0, ", vocab_size,
                                                     "], got ", *top_k));
    }
    p->set_top_k(*top_k < 0 ? 0 : static_cast<int32_t>(*top_k));
  }
  FERRY_ASSIGN_OR_RETURN(auto min_p, f.Number("min_p"));
  if (min_p) {
    FERRY_RETURN_IF_ERROR(CheckRange("min_p", *min_p, 0, 1));
    p->set_min_p(static_cast<float>(*min_p));
  }
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    FERRY_ASSIGN_OR_RETURN(auto v, f.Number(name));
    if (!v) continue;
    FERRY_RETURN_IF_ERROR(CheckRange(name, *v, -2, 2));
    if (std::string(name) == "presence_penalty") {
      p->set_presence_penalty(static_cast<float>(*v));
    } else {
      p->set_frequency_penalty(static_cast<float>(*v));
    }
  }
  FERRY_ASSIGN_OR_RETURN(auto repetition, f.Number("repetition_penalty"));
  if (repetition) {
    FERRY_RETURN_IF_ERROR(CheckRange("repetition_penalty", *repetition, 0, 100, /*lo_open=*/true));
    p->set_repetition_penalty(static_cast<float>(*repetition));
  }
  FERRY_ASSIGN_OR_RETURN(auto seed, f.Int("seed"));
  if (seed) p->set_seed(static_cast<uint64_t>(*seed));
  FERRY_ASSIGN_OR_RETURN(auto ignore_eos, f.Bool("ignore_eos"));
  if (ignore_eos) p->set_ignore_eos(*ignore_eos);
  return absl::OkStatus();
}

absl::Status ParseStops(const JsonFields& f, int vocab_size, GenerationOptions* o) {
  v1::SamplingParams* p = &o->params;
  FERRY_ASSIGN_OR_RETURN(auto stop, f.StringOrList("stop"));
  if (stop) {
    if (stop->size() > kMaxStops) {
      return InvalidParamError("stop", absl::StrCat("'stop' may hold at most ", kMaxStops, " strings"));
    }
    for (const std::string& s : *stop) {
      if (!s.empty()) p->add_stop(s);
    }
  }
  FERRY_ASSIGN_OR_RETURN(auto stop_ids, f.IntList("stop_token_ids"));
  if (stop_ids) {
    for (int64_t id : *stop_ids) {
      FERRY_RETURN_IF_ERROR(CheckTokenId("stop_token_ids", id, vocab_size));
      p->add_stop_token_ids(static_cast<int32_t>(id));
    }
  }
  // vLLM's extensions.
  FERRY_ASSIGN_OR_RETURN(auto include_stop, f.Bool("include_stop_str_in_output"));
  if (include_stop) p->set_include_stop_str_in_output(*include_stop);
  FERRY_ASSIGN_OR_RETURN(auto skip_special, f.Bool("skip_special_tokens"));
  if (skip_special) p->set_skip_special_tokens(*skip_special);
  FERRY_ASSIGN_OR_RETURN(auto bad_words, f.StringOrList("bad_words"));
  if (bad_words) {
    if (bad_words->size() > kMaxBadWords) {
      return InvalidParamError(
          "bad_words", absl::StrCat("'bad_words' may hold at most ", kMaxBadWords, " words"));
    }
    for (const std::string& w : *bad_words) {
      if (w.find_first_not_of(" ") == std::string::npos) {
        return InvalidParamError("bad_words", "'bad_words' must not hold an empty word");
      }
    }
    o->bad_words = std::move(*bad_words);
  }
  FERRY_ASSIGN_OR_RETURN(auto allowed, f.IntList("allowed_token_ids"));
  if (allowed) {
    if (allowed->empty()) {
      return InvalidParamError("allowed_token_ids", "'allowed_token_ids' must not be empty");
    }
    for (int64_t id : *allowed) {
      FERRY_RETURN_IF_ERROR(CheckTokenId("allowed_token_ids", id, vocab_size));
      p->add_allowed_token_ids(static_cast<int32_t>(id));
    }
  }
  FERRY_ASSIGN_OR_RETURN(const Json* bias, f.Object("logit_bias"));
  if (bias != nullptr) {
    for (const auto& [key, value] : bias->items()) {
      int64_t id = 0;
      if (!absl::SimpleAtoi(Sv(key), &id)) {
        return InvalidParamError("logit_bias", absl::StrCat("'logit_bias' keys must be token ids, got '",
                                                            Sv(key), "'"));
      }
      FERRY_RETURN_IF_ERROR(CheckTokenId("logit_bias", id, vocab_size));
      if (!value.is_number()) {
        return InvalidParamError("logit_bias", "'logit_bias' values must be numbers");
      }
      FERRY_RETURN_IF_ERROR(CheckRange("logit_bias", value.get<double>(), -100, 100));
      (*p->mutable_logit_bias())[static_cast<int32_t>(id)] = value.get<float>();
    }
  }
  return absl::OkStatus();
}

absl::Status ParseLengths(const JsonFields& f, bool chat, GenerationOptions* o) {
  FERRY_ASSIGN_OR_RETURN(auto n, f.Int("n"));
  if (n) {
    FERRY_RETURN_IF_ERROR(CheckRange("n", static_cast<double>(*n), 1, kMaxN));
    o->n = static_cast<int>(*n);
  }
  o->params.set_n(o->n);
  FERRY_ASSIGN_OR_RETURN(auto best_of, f.Int("best_of"));
  if (best_of && *best_of != o->n) {
    return InvalidParamError("best_of", "'best_of' other than n is not supported");
  }
  const char* max_name = "max_tokens";
  FERRY_ASSIGN_OR_RETURN(auto max_tokens, f.Int("max_tokens"));
  if (chat) {
    FERRY_ASSIGN_OR_RETURN(auto max_completion, f.Int("max_completion_tokens"));
    if (max_completion) {
      max_tokens = max_completion;
      max_name = "max_completion_tokens";
    }
  }
  if (max_tokens) {
    // 0 is for completions that only echo the prompt (checked with echo).
    FERRY_RETURN_IF_ERROR(CheckRange(max_name, static_cast<double>(*max_tokens), chat ? 1 : 0, 1 << 30));
    o->max_tokens = *max_tokens;
  }
  FERRY_ASSIGN_OR_RETURN(auto truncate, f.Int("truncate_prompt_tokens"));
  if (truncate) {
    if (*truncate != -1 && *truncate < 1) {
      return InvalidParamError("truncate_prompt_tokens",
                               "'truncate_prompt_tokens' must be -1 (the context length) or a "
                               "positive number of tokens");
    }
    o->truncate_prompt_tokens = *truncate;
  }
  FERRY_ASSIGN_OR_RETURN(auto min_tokens, f.Int("min_tokens"));
  if (min_tokens) {
    FERRY_RETURN_IF_ERROR(CheckRange("min_tokens", static_cast<double>(*min_tokens), 0, 1 << 30));
    if (o->max_tokens && *min_tokens > *o->max_tokens) {
      return InvalidParamError("min_tokens", absl::StrCat("'min_tokens' (", *min_tokens,
                                                          ") must not exceed '", max_name, "' (",
                                                          *o->max_tokens, ")"));
    }
    o->params.set_min_tokens(static_cast<int32_t>(*min_tokens));
  }
  return absl::OkStatus();
}

absl::Status ParseStreaming(const JsonFields& f, GenerationOptions* o) {
  FERRY_ASSIGN_OR_RETURN(auto stream, f.Bool("stream"));
  o->stream = stream.value_or(false);
  FERRY_ASSIGN_OR_RETURN(const Json* options, f.Object("stream_options"));
  if (options != nullptr) {
    if (!o->stream) {
      return InvalidParamError("stream_options", "'stream_options' is only allowed when 'stream' is true");
    }
    JsonFields so(*options, "stream_options.");
    FERRY_ASSIGN_OR_RETURN(auto include_usage, so.Bool("include_usage"));
    o->include_usage = include_usage.value_or(false);
    FERRY_ASSIGN_OR_RETURN(auto continuous, so.Bool("continuous_usage_stats"));
    (void)continuous;
  }
  return absl::OkStatus();
}

absl::Status ParseUnsupported(const JsonFields& f) {
  FERRY_ASSIGN_OR_RETURN(auto suffix, f.String("suffix"));
  if (suffix && !suffix->empty()) return InvalidParamError("suffix", "'suffix' is not supported");
  return absl::OkStatus();
}

absl::Status ParseCommon(const JsonFields& f, bool chat, int vocab_size, GenerationOptions* o) {
  FERRY_ASSIGN_OR_RETURN(auto model, f.String("model"));
  o->model = model.value_or("");
  FERRY_ASSIGN_OR_RETURN(auto user, f.String("user"));
  o->user = user.value_or("");
  FERRY_ASSIGN_OR_RETURN(auto priority, f.Int("priority"));
  if (priority) {
    FERRY_RETURN_IF_ERROR(CheckRange("priority", static_cast<double>(*priority), -1e6, 1e6));
    o->priority = static_cast<int>(*priority);
  }
  FERRY_RETURN_IF_ERROR(ParseSampling(f, vocab_size, &o->params));
  FERRY_RETURN_IF_ERROR(ParseStops(f, vocab_size, o));
  FERRY_RETURN_IF_ERROR(ParseLengths(f, chat, o));
  FERRY_RETURN_IF_ERROR(ParseStreaming(f, o));
  FERRY_ASSIGN_OR_RETURN(auto prompt_logprobs, f.Int("prompt_logprobs"));
  if (prompt_logprobs) {
    FERRY_RETURN_IF_ERROR(
        CheckRange("prompt_logprobs", static_cast<double>(*prompt_logprobs), 0, kMaxLogprobs));
    if (o->stream) {
      return InvalidParamError("prompt_logprobs",
                               "'prompt_logprobs' is not available when 'stream' is true");
    }
    o->prompt_logprobs = static_cast<int>(*prompt_logprobs);
  }
  FERRY_RETURN_IF_ERROR(ParseStructuredOutput(f, o));
  return ParseUnsupported(f);
}

absl::StatusOr<std::vector<PromptInput>> ParsePrompt(const Json& body, int vocab_size) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return InvalidParamError("prompt", "'prompt' is required");
  const Json& prompt = *it;
  const char* kShape = "'prompt' must be a string, an array of strings, an array of token ids or an "
                       "array of arrays of token ids";
  auto ids_of = [&](const Json& arr) -> absl::StatusOr<PromptInput> {
    PromptInput in;
    if (arr.empty()) return InvalidParamError("prompt", "a token-id prompt must not be empty");
    for (const Json& e : arr) {
      if (!e.is_number_integer()) return InvalidParamError("prompt", kShape);
      FERRY_RETURN_IF_ERROR(CheckTokenId("prompt", e.get<int64_t>(), vocab_size));
      in.ids.push_back(static_cast<int32_t>(e.get<int64_t>()));
    }
    return in;
  };
  std::vector<PromptInput> out;
  if (prompt.is_string()) {
    out.push_back(PromptInput{{}, prompt.get<std::string>()});
    return out;
  }
  if (!prompt.is_array() || prompt.empty()) {
    return InvalidParamError("prompt", prompt.is_array() ? "'prompt' must not be empty" : kShape);
  }
  if (prompt[0].is_number_integer()) {
    FERRY_ASSIGN_OR_RETURN(PromptInput in, ids_of(prompt));
    out.push_back(std::move(in));
    return out;
  }
  for (const Json& e : prompt) {
    if (e.is_string()) {
      out.push_back(PromptInput{{}, e.get<std::string>()});
    } else if (e.is_array()) {
      FERRY_ASSIGN_OR_RETURN(PromptInput in, ids_of(e));
      out.push_back(std::move(in));
    } else {
      return InvalidParamError("prompt", kShape);
    }
  }
  return out;
}

}  // namespace

absl::Status ParseGenerationOptions(const Json& body, bool chat, int vocab_size, GenerationOptions* out) {
  if (!body.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
  return ParseCommon(JsonFields(body), chat, vocab_size, out);
}

absl::StatusOr<CompletionRequest> ParseCompletionRequest(const Json& body, int vocab_size) {
  if (!body.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
  JsonFields f(body);
  CompletionRequest r;
  FERRY_RETURN_IF_ERROR(ParseCommon(f, /*chat=*/false, vocab_size, &r.options));
  if (f.Has("top_logprobs")) {
    return InvalidParamError("top_logprobs", "'top_logprobs' belongs to chat completions; use 'logprobs'");
  }
  FERRY_ASSIGN_OR_RETURN(r.prompts, ParsePrompt(body, vocab_size));
  FERRY_ASSIGN_OR_RETURN(auto echo, f.Bool("echo"));
  r.echo = echo.value_or(false);
  if (r.options.max_tokens && *r.options.max_tokens == 0 && !r.echo) {
    return InvalidParamError("max_tokens", "'max_tokens' of 0 returns nothing without 'echo'");
  }
  FERRY_ASSIGN_OR_RETURN(auto logprobs, f.Int("logprobs"));
  if (logprobs) {
    FERRY_RETURN_IF_ERROR(CheckRange("logprobs", static_cast<double>(*logprobs), 0, kMaxLogprobs));
    r.options.logprobs = static_cast<int>(*logprobs);
    r.options.params.set_logprobs(r.options.logprobs);
  }
  return r;
}

}  // namespace ferry
