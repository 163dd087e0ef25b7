// The OpenAI-compatible gateway: routes HTTP requests to the completions,
// chat, models, tokenize, health and metrics endpoints; checks API keys;
// validates input; renders chat templates; tokenizes; and hands generations
// to a GenerateBackend. With a cluster scheduler behind it, it also serves
// the admin endpoints (/admin/cluster, /admin/migrate, /admin/drain,
// /admin/kill). It
// knows nothing of the HTTP library (HttpServer feeds it) nor of the engine
// (the backend hides it). Every error becomes an OpenAI error body in one
// place (openai_error.h).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/metrics.h"
#include "server/api_keys.h"
#include "server/gateway_context.h"
#include "server/http_types.h"
#include "server/openai_request.h"

namespace ferry {

struct GenerationPlan;

class Gateway {
 public:
  // `assets`, `backend` and `metrics` must outlive the gateway.
  Gateway(const GatewayOptions& options, const ModelAssets* assets, GenerateBackend* backend,
          MetricsRegistry* metrics);
  ~Gateway();

  // Answers one request; never throws. A streamed answer carries a body
  // producer that runs on the HTTP thread after the headers are sent.
  HttpResponse Handle(const HttpRequest& request);
  // The body for an error the HTTP layer found itself (413, 400, 404).
  HttpResponse ErrorPage(int http_status);

  // Shutdown: refuse new generations (503) and report not ready.
  void BeginDrain();
  // Waits until no generation is running; false at the deadline.
  bool WaitIdle(absl::Time deadline);
  // Aborts every running generation upstream (after the drain timeout).
  void AbortAll();
  size_t num_active() const { return active_.size(); }

  const std::string& model_name() const { return context_.model_name; }

 private:
  absl::StatusOr<HttpResponse> Route(const HttpRequest& request, const std::string& endpoint);
  absl::Status Authorize(const HttpRequest& request, int* key_index) const;
  absl::Status CheckModel(const std::string& model) const;

  absl::StatusOr<HttpResponse> Completions(const HttpRequest& request, int key_index);
  absl::StatusOr<HttpResponse> ChatCompletions(const HttpRequest& request, int key_index);
  // POST /v1/responses, run as a chat completion (responses_api.h).
  absl::StatusOr<HttpResponse> Responses(const HttpRequest& request, int key_index);
  // POST /v1/messages and /v1/messages/count_tokens (anthropic_api.h), with
  // errors in Anthropic's shape.
  HttpResponse Messages(const HttpRequest& request, int key_index);
  HttpResponse CountMessageTokens(const HttpRequest& request) const;
  // A chat completion from its parsed body; `endpoint` labels its metrics.
  // `drop_oldest` (the Responses API's truncation "auto"): a conversation
  // too long for the context loses its oldest messages, after the leading
  // system ones and never the last, until it fits.
  absl::StatusOr<HttpResponse> Chat(const nlohmann::ordered_json& body, int key_index,
                                    const char* endpoint, absl::Time arrival,
                                    bool drop_oldest = false);
  absl::StatusOr<HttpResponse> RunGeneration(GenerationPlan plan, int key_index, absl::Time arrival);
  absl::StatusOr<std::string> RenderChat(const nlohmann::ordered_json& context, bool continue_final) const;
  // bad_words: the words' token sequences into options->params.
  void TokenizeBadWords(GenerationOptions* options) const;
  // The model's sampling defaults (generation_config.json) for what `body`
  // leaves out.
  void ApplySamplingDefaults(const nlohmann::ordered_json& body, GenerationOptions* options) const;
  // With a reasoning parser: tells the engine where the thinking ends when
  // a grammar must wait for it or a thinking_token_budget bounds it.
  absl::Status ApplyReasoning(GenerationOptions* options) const;
  // truncate_prompt_tokens: drops the prompt's first tokens; true when some were.
  bool TruncatePrompt(const GenerationOptions& options, std::vector<int32_t>* ids) const;
  absl::Status FitContext(const GenerationOptions& options, bool chat, size_t prompt_len,
                          int* max_tokens) const;

  absl::StatusOr<HttpResponse> Models() const;
  absl::StatusOr<HttpResponse> Model(const std::string& id) const;
  absl::StatusOr<HttpResponse> Tokenize(const HttpRequest& request) const;
  absl::StatusOr<HttpResponse> Detokenize(const HttpRequest& request) const;
  HttpResponse Ready() const;
  HttpResponse Metrics() const;

  // Cluster admin (admin_endpoints.cc).
  absl::Status AuthorizeAdmin(const HttpRequest& request) const;
  absl::StatusOr<ClusterAdmin*> Admin() const;
  absl::StatusOr<HttpResponse> AdminCluster() const;
  absl::StatusOr<HttpResponse> AdminMigrate(const HttpRequest& request) const;
  absl::StatusOr<HttpResponse> AdminDrain(const HttpRequest& request) const;
  absl::StatusOr<HttpResponse> AdminKill(const HttpRequest& request) const;

  std::string NewId(const char* prefix);

  MetricsRegistry* registry_;
  GatewayMetrics metrics_;
  Admission admission_;
  ActiveRequests active_;
  ApiKeys keys_;
  ApiKeys admin_key_;  // one key or none
  GatewayContext context_;
  std::atomic<bool> draining_{false};
  int64_t started_unix_ = 0;
};

// Parses a request body as a JSON object (InvalidArgument saying where the
// syntax breaks).
absl::StatusOr<nlohmann::ordered_json> ParseJsonBody(const std::string& body);

}  // namespace ferry
