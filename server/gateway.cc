#include "server/gateway.h"

#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "server/anthropic_api.h"
#include "server/json_fields.h"
#include "server/openai_error.h"
#include "server/openai_response.h"

namespace ferry {
namespace {

constexpr char kModelsPrefix[] = "/v1/models/";

// Keeps an endpoint's in-flight gauge up while a response (or its stream)
// lives.
class InFlightGuard {
 public:
  explicit InFlightGuard(Gauge* g) : gauge_(g) { gauge_->Add(1); }
  ~InFlightGuard() { gauge_->Sub(1); }

 private:
  Gauge* gauge_;
};

std::string EndpointLabel(const std::string& path) {
  static const char* kKnown[] = {"/v1/completions",
                                 "/v1/chat/completions",
                                 "/v1/responses",
                                 "/v1/messages",
                                 "/v1/messages/count_tokens",
                                 "/v1/models",
                                 "/tokenize",
                                 "/detokenize",
                                 "/health",
                                 "/ready",
                                 "/metrics",
                                 "/admin/cluster",
                                 "/admin/migrate",
                                 "/admin/drain",
                                 "/admin/kill"};
  for (const char* k : kKnown) {
    if (path == k) return k;
  }
  if (absl::StartsWith(path, kModelsPrefix)) return "/v1/models/{id}";
  return "other";
}

HttpResponse MethodNotAllowed(const std::string& method, const std::string& path, const char* allowed) {
  HttpResponse r = ErrorResponse(WithHttpStatus(
      absl::InvalidArgumentError(absl::StrCat("method ", method, " is not allowed for ", path, "; use ", allowed)),
      405));
  r.headers.emplace_back("Allow", allowed);
  return r;
}

HttpResponse JsonResponse(const Json& j) {
  HttpResponse r;
  r.body = Dump(j);
  return r;
}

}  // namespace

void ActiveRequests::Add(const std::string& id) {
  absl::MutexLock lock(&mu_);
  ids_.insert(id);
}

void ActiveRequests::Remove(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = ids_.find(id);
  if (it != ids_.end()) ids_.erase(it);
}

std::vector<std::string> ActiveRequests::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return {ids_.begin(), ids_.end()};
}

size_t ActiveRequests::size() const {
  absl::MutexLock lock(&mu_);
  return ids_.size();
}

bool ActiveRequests::WaitUntilEmpty(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto empty = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return ids_.empty(); };
  return mu_.AwaitWithDeadline(absl::Condition(&empty), deadline);
}

absl::StatusOr<Json> ParseJsonBody(const std::string& body) {
  if (body.empty()) return absl::InvalidArgumentError("the request body is empty; expected a JSON object");
  Json j;
  try {
    j = Json::parse(body);
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("the request body is not valid JSON: ", e.what()));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body must be a JSON object, got ", JsonTypeName(j)));
  }
  return j;
}

Gateway::Gateway(const GatewayOptions& options, const ModelAssets* assets, GenerateBackend* backend,
                 MetricsRegistry* metrics)
    : registry_(metrics),
      metrics_(metrics),
      admission_(options.admission),
      keys_(options.api_keys),
      admin_key_(std::vector<std::string>{options.admin_key}),
      started_unix_(absl::ToUnixSeconds(absl::Now())) {
  context_.options = options;
  // Only the digests in keys_ and admin_key_ stay in memory.
  context_.options.api_keys.clear();
  context_.options.admin_key.clear();
  if (context_.options.served_model_names.empty()) context_.options.served_model_names.push_back(assets->id());
  context_.assets = assets;
  context_.backend = backend;
  context_.metrics = &metrics_;
  context_.admission = &admission_;
  context_.active = &active_;
  context_.model_name = context_.options.served_model_names.front();
  context_.context_length = options.max_model_len > 0 ? options.max_model_len : assets->context_length();
  if (options.use_generation_config && !assets->sampling_defaults().empty()) {
    Logger("gateway")->info(
        "requests default to the model's generation_config.json: {} (--generation-config none "
        "turns this off)",
        assets->sampling_defaults().Describe());
  }
  registry_->AddGauge("ferry_model_context_length", "Context length the gateway admits requests up to.")
      ->Get()
      ->Set(context_.context_length);
  Gauge* running = registry_->AddGauge("ferry_requests_running", "Generation requests holding a slot.")->Get();
  CounterFamily* refused = registry_->AddCounter(
      "ferry_admission_refused_total", "Generation requests refused by admission control, by reason.", {"reason"});
  Counter* refused_full = refused->WithLabels({"queue_full"});
  Counter* refused_deadline = refused->WithLabels({"deadline"});
  Counter* queued = registry_->AddCounter("ferry_admission_queued_total",
                                          "Generation requests admitted after waiting in their API key's queue.")
                        ->Get();
  registry_->AddCollector([this, running, refused_full, refused_deadline, queued] {
    running->Set(admission_.running());
    metrics_.waiting->Set(admission_.waiting());
    const AdmissionCounts c = admission_.counts();
    refused_full->Set(static_cast<double>(c.refused_queue_full));
    refused_deadline->Set(static_cast<double>(c.refused_deadline));
    queued->Set(static_cast<double>(c.waited));
  });
}

Gateway::~Gateway() = default;

HttpResponse Gateway::Handle(const HttpRequest& request) {
  std::string endpoint = EndpointLabel(request.path);
  auto guard = std::make_shared<InFlightGuard>(metrics_.in_flight->WithLabels({endpoint}));
  HttpResponse response;
  try {
    absl::StatusOr<HttpResponse> r = Route(request, endpoint);
    response = r.ok() ? std::move(*r) : ErrorResponse(r.status());
  } catch (const std::exception& e) {
    Logger("gateway")->error("{} {}: unexpected exception: {}", request.method, request.path, e.what());
    response = ErrorResponse(absl::InternalError("internal error"));
  }
  metrics_.CountRequest(endpoint, response.status);
  // Never the body (prompts) nor the headers (keys).
  Logger("gateway")->debug("{} {} {} from {}", request.method, request.path, response.status,
                           request.remote_address);
  if (response.status == 429) metrics_.rejected->Increment();
  if (response.stream) {
    auto inner = std::move(response.stream);
    response.stream = [inner = std::move(inner), guard](ChunkWriter& w) { inner(w); };
  }
  return response;
}

HttpResponse Gateway::ErrorPage(int http_status) {
  absl::Status s;
  switch (http_status) {
    case 413:
      s = WithHttpStatus(absl::InvalidArgumentError(absl::StrCat(
                             "the request body is larger than the limit of ", context_.options.max_body_bytes,
                             " bytes")),
                         413);
      break;
    case 404: s = absl::NotFoundError("not found"); break;
    case 400: s = absl::InvalidArgumentError("malformed HTTP request"); break;
    default:
      s = WithHttpStatus(absl::InternalError(absl::StrCat("HTTP error ", http_status)), http_status);
  }
  metrics_.CountRequest("other", http_status);
  return ErrorResponse(s);
}

absl::Status Gateway::Authorize(const HttpRequest& request, int* key_index) const {
  *key_index = -1;
  if (!keys_.enabled()) return absl::OkStatus();
  std::optional<std::string> token = ApiKeys::BearerToken(request.Header("authorization"));
  // Anthropic's SDKs send the key as x-api-key.
  if (!token && !request.Header("x-api-key").empty()) token = request.Header("x-api-key");
  if (!token) {
    return WithErrorCode(absl::UnauthenticatedError(
                             "missing API key: send it as an 'Authorization: Bearer <key>' header"),
                         "invalid_api_key");
  }
  std::optional<size_t> match = keys_.Match(*token);
  if (!match) return WithErrorCode(absl::UnauthenticatedError("invalid API key"), "invalid_api_key");
  *key_index = static_cast<int>(*match);
  return absl::OkStatus();
}

absl::Status Gateway::CheckModel(const std::string& model) const {
  if (model.empty()) return absl::OkStatus();
  for (const std::string& name : context_.options.served_model_names) {
    if (name == model) return absl::OkStatus();
  }
  return WithErrorCode(WithParam(absl::NotFoundError(absl::StrCat("the model '", model, "' does not exist; ",
                                                                  "this server serves '", context_.model_name,
                                                                  "'")),
                                 "model"),
                       "model_not_found");
}

absl::StatusOr<HttpResponse> Gateway::Route(const HttpRequest& request, const std::string& endpoint) {
  const std::string& path = request.path;
  std::string method = request.method == "HEAD" ? "GET" : request.method;
  if (endpoint == "other") return absl::NotFoundError(absl::StrCat("no such endpoint: ", path));
  const bool is_post = endpoint == "/v1/completions" || endpoint == "/v1/chat/completions" ||
                       endpoint == "/v1/responses" || endpoint == "/v1/messages" ||
                       endpoint == "/v1/messages/count_tokens" || endpoint == "/tokenize" ||
                       endpoint == "/detokenize" || endpoint == "/admin/migrate" ||
                       endpoint == "/admin/drain" || endpoint == "/admin/kill";
  const char* allowed = is_post ? "POST" : "GET";
  if (method != allowed) return MethodNotAllowed(request.method, path, allowed);
  if (endpoint == "/health") return JsonResponse(Json{{"status", "ok"}});
  if (endpoint == "/ready") return Ready();
  if (endpoint == "/metrics") return Metrics();
  if (absl::StartsWith(endpoint, "/admin/")) {
    FERRY_RETURN_IF_ERROR(AuthorizeAdmin(request));
    if (endpoint == "/admin/cluster") return AdminCluster();
    if (endpoint == "/admin/migrate") return AdminMigrate(request);
    if (endpoint == "/admin/kill") return AdminKill(request);
    return AdminDrain(request);
  }
  int key_index = -1;
  if (absl::StartsWith(endpoint, "/v1/messages")) {  // Anthropic's clients read Anthropic's errors
    if (absl::Status s = Authorize(request, &key_index); !s.ok()) return AnthropicErrorResponse(s);
    if (endpoint == "/v1/messages") return Messages(request, key_index);
    return CountMessageTokens(request);
  }
  FERRY_RETURN_IF_ERROR(Authorize(request, &key_index));
  if (endpoint == "/v1/completions") return Completions(request, key_index);
  if (endpoint == "/v1/chat/completions") return ChatCompletions(request, key_index);
  if (endpoint == "/v1/responses") return Responses(request, key_index);
  if (endpoint == "/v1/models") return Models();
  if (endpoint == "/v1/models/{id}") return Model(path.substr(sizeof(kModelsPrefix) - 1));
  if (endpoint == "/tokenize") return Tokenize(request);
  return Detokenize(request);
}

HttpResponse Gateway::Ready() const {
  if (draining_.load()) return ErrorResponse(absl::UnavailableError("the server is shutting down"));
  if (!context_.backend->Ready()) {
    return ErrorResponse(absl::UnavailableError("no worker is reachable or the model is not loaded"));
  }
  return JsonResponse(Json{{"status", "ready"}, {"model", context_.model_name}});
}

HttpResponse Gateway::Metrics() const {
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = registry_->Render();
  return r;
}

absl::StatusOr<HttpResponse> Gateway::Models() const {
  Json data = Json::array();
  for (const std::string& name : context_.options.served_model_names) {
    data.push_back(Json{{"id", name},
                        {"object", "model"},
                        {"created", started_unix_},
                        {"owned_by", "ferry"},
                        {"root", context_.assets->id()},
                        {"parent", nullptr},
                        {"max_model_len", context_.context_length}});
  }
  return JsonResponse(Json{{"object", "list"}, {"data", std::move(data)}});
}

absl::StatusOr<HttpResponse> Gateway::Model(const std::string& id) const {
  FERRY_RETURN_IF_ERROR(CheckModel(id.empty() ? std::string("(empty)") : id));
  return JsonResponse(Json{{"id", id},
                           {"object", "model"},
                           {"created", started_unix_},
                           {"owned_by", "ferry"},
                           {"root", context_.assets->id()},
                           {"parent", nullptr},
                           {"max_model_len", context_.context_length}});
}

absl::StatusOr<HttpResponse> Gateway::Tokenize(const HttpRequest& request) const {
  FERRY_ASSIGN_OR_RETURN(Json body, ParseJsonBody(request.body));
  JsonFields f(body);
  FERRY_ASSIGN_OR_RETURN(auto model, f.String("model"));
  FERRY_RETURN_IF_ERROR(CheckModel(model.value_or("")));
  FERRY_ASSIGN_OR_RETURN(auto return_strs, f.Bool("return_token_strs"));
  const Tokenizer& tok = context_.assets->tokenizer();
  std::vector<int32_t> ids;
  if (f.Has("messages")) {
    FERRY_ASSIGN_OR_RETURN(ChatRequest chat, ParseChatRequest(body, tok.vocab_size()));
    FERRY_ASSIGN_OR_RETURN(std::string prompt, RenderChat(chat.template_context, chat.continue_final_message));
    FERRY_ASSIGN_OR_RETURN(auto add_special, f.Bool("add_special_tokens"));
    ids = tok.Encode(prompt, add_special.value_or(false), true);
  } else {
    FERRY_ASSIGN_OR_RETURN(auto prompt, f.String("prompt"));
    if (!prompt) return InvalidParamError("prompt", "'prompt' (a string) or 'messages' is required");
    FERRY_ASSIGN_OR_RETURN(auto add_special, f.Bool("add_special_tokens"));
    ids = tok.Encode(*prompt, add_special.value_or(true) && tok.add_bos(), true);
  }
  Json out = Json::object();
  out["count"] = ids.size();
  out["max_model_len"] = context_.context_length;
  out["tokens"] = ids;
  if (return_strs.value_or(false)) {
    Json strs = Json::array();
    for (int32_t id : ids) strs.push_back(std::string(tok.TokenText(id)));
    out["token_strs"] = std::move(strs);
  } else {
    out["token_strs"] = nullptr;
  }
  return JsonResponse(out);
}

absl::StatusOr<HttpResponse> Gateway::Detokenize(const HttpRequest& request) const {
  FERRY_ASSIGN_OR_RETURN(Json body, ParseJsonBody(request.body));
  JsonFields f(body);
  FERRY_ASSIGN_OR_RETURN(auto model, f.String("model"));
  FERRY_RETURN_IF_ERROR(CheckModel(model.value_or("")));
  FERRY_ASSIGN_OR_RETURN(auto tokens, f.IntList("tokens"));
  if (!tokens) return InvalidParamError("tokens", "'tokens' (an array of token ids) is required");
  const Tokenizer& tok = context_.assets->tokenizer();
  std::vector<int32_t> ids;
  for (int64_t id : *tokens) {
    if (id < 0 || id >= tok.vocab_size()) {
      return InvalidParamError("tokens", absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                                                      tok.vocab_size(), ")"));
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  return JsonResponse(Json{{"prompt", tok.Decode(ids, /*skip_special=*/false)}});
}

void Gateway::BeginDrain() {
  draining_.store(true);
  admission_.Close();
}

bool Gateway::WaitIdle(absl::Time deadline) { return active_.WaitUntilEmpty(deadline); }

void Gateway::AbortAll() {
  for (const std::string& id : active_.Snapshot()) context_.backend->Abort(id);
}

std::string Gateway::NewId(const char* prefix) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%s%016x%08x", prefix, rng(), static_cast<uint32_t>(rng()));
}

std::string HttpRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, Sv(name))) return v;
  }
  return "";
}

}  // namespace ferry
