#include "server/openai_response.h"

#include <cmath>
#include <span>
#include <string>

namespace ferry {
namespace {

// JSON has no -Infinity; OpenAI reports impossible tokens as -9999.
double FiniteLogprob(float v) { return std::isfinite(v) ? v : -9999.0; }

Json ByteList(const std::string& s) {
  Json out = Json::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

// Whether `lps` (one per prompt token after the first) scores `ids`.
bool ScoresPrompt(const std::vector<int32_t>& ids,
                  const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& lps) {
  if (ids.empty() || lps.size() != static_cast<int>(ids.size()) - 1) return false;
  for (size_t i = 1; i < ids.size(); ++i) {
    if (lps[static_cast<int>(i) - 1].token_id() != ids[i]) return false;
  }
  return true;
}

}  // namespace

Json FinishReasonJson(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_STOP: return "stop";
    case v1::FINISH_REASON_LENGTH: return "length";
    case v1::FINISH_REASON_ABORT: return "abort";
    case v1::FINISH_REASON_ERROR: return "error";
    default: return nullptr;
  }
}

Json UsageJson(const UsageCounts& u) {
  Json j = Json::object();
  j["prompt_tokens"] = u.prompt_tokens;
  j["completion_tokens"] = u.completion_tokens;
  j["total_tokens"] = u.prompt_tokens + u.completion_tokens;
  j["prompt_tokens_details"] = Json{{"cached_tokens", u.cached_prompt_tokens}};
  if (u.reasoning_tokens)
    j["completion_tokens_details"] = Json{{"reasoning_tokens", *u.reasoning_tokens}};
  return j;
}

std::string IdSuffix(const std::string& id) {
  const size_t dash = id.find('-');
  return dash == std::string::npos ? id : id.substr(dash + 1);
}

Json ResponseTop(const ResponseHeader& h, bool chunk) {
  Json j = Json::object();
  j["id"] = h.id;
  if (h.chat) {
    j["object"] = chunk ? "chat.completion.chunk" : "chat.completion";
  } else {
    j["object"] = "text_completion";
  }
  j["created"] = h.created;
  j["model"] = h.model;
  j["system_fingerprint"] = nullptr;
  return j;
}

std::string TokenString(const Tokenizer& tokenizer, int32_t id) { return tokenizer.TokenBytes(id); }

void CompletionLogprobs::AddPromptTokens(
    const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
    const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& prompt_logprobs, int top_k,
    int64_t* text_offset) {
  const bool scored = ScoresPrompt(ids, prompt_logprobs);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (scored && i > 0) {
      Add(tokenizer, prompt_logprobs[static_cast<int>(i) - 1], text_offset, top_k);
      continue;
    }
    std::string s = TokenString(tokenizer, ids[i]);
    tokens_.push_back(s);
    token_logprobs_.push_back(nullptr);
    top_logprobs_.push_back(nullptr);
    text_offset_.push_back(*text_offset);
    *text_offset += static_cast<int64_t>(s.size());
  }
}

void CompletionLogprobs::Add(const Tokenizer& tokenizer, const v1::TokenLogprob& lp,
                             int64_t* text_offset, int top_k) {
  std::string s = TokenString(tokenizer, lp.token_id());
  tokens_.push_back(s);
  token_logprobs_.push_back(FiniteLogprob(lp.logprob()));
  Json top = Json::object();
  top[s] = FiniteLogprob(lp.logprob());
  for (int i = 0; i < lp.top_ids_size() && i < lp.top_logprobs_size() && i < top_k; ++i) {
    std::string alt = TokenString(tokenizer, lp.top_ids(i));
    if (!top.contains(alt)) top[alt] = FiniteLogprob(lp.top_logprobs(i));
  }
  top_logprobs_.push_back(std::move(top));
  text_offset_.push_back(*text_offset);
  *text_offset += static_cast<int64_t>(s.size());
}

Json CompletionLogprobs::ToJson() const {
  Json j = Json::object();
  j["tokens"] = tokens_;
  j["token_logprobs"] = token_logprobs_;
  j["top_logprobs"] = top_logprobs_;
  j["text_offset"] = text_offset_;
  return j;
}

void ChatLogprobs::Add(const Tokenizer& tokenizer, const v1::TokenLogprob& lp, int top_k) {
  std::string s = TokenString(tokenizer, lp.token_id());
  Json entry = Json::object();
  entry["token"] = s;
  entry["logprob"] = FiniteLogprob(lp.logprob());
  entry["bytes"] = ByteList(s);
  Json top = Json::array();
  for (int i = 0; i < lp.top_ids_size() && i < lp.top_logprobs_size() && i < top_k; ++i) {
    std::string alt = TokenString(tokenizer, lp.top_ids(i));
    top.push_back(Json{{"token", alt}, {"logprob", FiniteLogprob(lp.top_logprobs(i))}, {"bytes", ByteList(alt)}});
  }
  entry["top_logprobs"] = std::move(top);
  content_.push_back(std::move(entry));
}

Json ChatLogprobs::ToJson() const { return Json{{"content", content_}}; }

Json PromptLogprobsJson(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                        const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& prompt_logprobs,
                        int top_k) {
  if (!ScoresPrompt(ids, prompt_logprobs)) return nullptr;
  auto entry = [&](int32_t id, float logprob, int rank) {
    Json e = Json::object();
    e["logprob"] = FiniteLogprob(logprob);
    e["rank"] = rank > 0 ? Json(rank) : Json(nullptr);
    e["decoded_token"] = tokenizer.Decode(std::span<const int32_t>(&id, 1), /*skip_special=*/false);
    return e;
  };
  Json out = Json::array({nullptr});
  for (const v1::TokenLogprob& lp : prompt_logprobs) {
    Json position = Json::object();
    position[std::to_string(lp.token_id())] = entry(lp.token_id(), lp.logprob(), lp.rank());
    for (int i = 0; i < lp.top_ids_size() && i < lp.top_logprobs_size() && i < top_k; ++i) {
      const std::string key = std::to_string(lp.top_ids(i));
      if (!position.contains(key)) position[key] = entry(lp.top_ids(i), lp.top_logprobs(i), i + 1);
    }
    out.push_back(std::move(position));
  }
  return out;
}

ChatSseEvent ReadChatSseEvent(std::string_view data) {
  ChatSseEvent e;
  if (data.starts_with(":")) {
    e.kind = ChatSseEvent::Kind::kComment;
    return e;
  }
  constexpr std::string_view kData = "data: ";
  if (!data.starts_with(kData)) return e;
  std::string_view payload = data.substr(kData.size());
  while (!payload.empty() && (payload.back() == '\n' || payload.back() == '\r'))
    payload.remove_suffix(1);
  if (payload == "[DONE]") {
    e.kind = ChatSseEvent::Kind::kDone;
    return e;
  }
  e.chunk = Json::parse(payload, nullptr, /*allow_exceptions=*/false);
  if (!e.chunk.is_discarded() && e.chunk.is_object()) e.kind = ChatSseEvent::Kind::kChunk;
  return e;
}

std::string Dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string SseEvent(const Json& j) { return "data: " + Dump(j) + "\n\n"; }

}  // namespace ferry
