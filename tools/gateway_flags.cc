#include "tools/gateway_flags.h"

#include <cstdlib>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "server/api_keys.h"
#include "tools/signals.h"

namespace ferry {

void GatewayFlags::Register(FlagParser& flags) {
  flags.AddString("chat-template", &chat_template, "Jinja chat template file (default: the model's own)");
  flags.AddString(
      "tool-call-parser", &tool_call_parser,
      "how tool calls are found in chat answers with tool_choice 'auto': auto, hermes, mistral, "
      "llama3_json or none");
  flags.AddString(
      "reasoning-parser", &reasoning_parser,
      "return chat answers' <think>...</think> part as reasoning_content: none, deepseek_r1 "
      "(the thinking opens every answer, <think> optional) or qwen3 (only after <think>)");
  flags.AddString(
      "generation-config", &generation_config,
      "auto: requests that leave out temperature, top_p, top_k, min_p, repetition_penalty or "
      "the token limit take the model's generation_config.json values (as vLLM); none: "
      "OpenAI's defaults");
  flags.AddString("served-model-name", &served_model_name,
                  "model name(s) the API answers to, comma-separated (default: the model's file or "
                  "directory name)");
  flags.AddString("api-key", &api_key,
                  "require 'Authorization: Bearer KEY' (comma-separated keys; also $FERRY_API_KEYS)");
  flags.AddString("api-key-file", &api_key_file, "file with one accepted API key per line");
  flags.AddString("admin-key", &admin_key,
                  "key for the /admin/ endpoints as 'Authorization: Bearer KEY' (also $FERRY_ADMIN_KEY); "
                  "without one they are open only when no API key is set");
  flags.AddInt("max-running-requests", &max_running, "generation requests running at once");
  flags.AddInt("max-running-requests-per-key", &max_running_per_key,
               "generation requests running at once per API key (0: no per-key limit)");
  flags.AddInt("max-waiting-requests", &max_waiting, "requests waiting for a slot before 429");
  flags.AddInt("max-waiting-requests-per-key", &max_waiting_per_key,
               "requests of one API key waiting for a slot before 429 (0: only --max-waiting-requests); "
               "waiting keys take turns for free slots");
  flags.AddDouble("queue-timeout", &queue_timeout, "seconds a request may wait for a slot before 429");
  flags.AddDouble("request-timeout", &request_timeout, "seconds a generation may run before it is aborted");
  flags.AddDouble("drain-timeout", &drain_timeout, "seconds to let streams finish after SIGTERM");
  flags.AddInt("max-body-bytes", &max_body_bytes, "largest request body accepted (413 beyond)");
  flags.AddInt("http-threads", &http_threads, "HTTP threads (each open stream holds one)");
  flags.AddString("tls-cert", &tls_cert,
                  "PEM certificate (chain) to serve HTTPS with (needs --tls-key)");
  flags.AddString("tls-key", &tls_key, "PEM private key of --tls-cert");
  flags.AddString("tls-reload-interval", &tls_reload_interval,
                  "how often --tls-cert and --tls-key are checked for a rotation (at a handshake); a rotated "
                  "certificate is served without a restart");
  flags.AddString("port-file", &port_file, "write the HTTP port actually bound to this file");
  flags.AddString("log-level", &log_level, "trace, debug, info, warn, error or off");
}

absl::StatusOr<GatewayOptions> GatewayFlags::ToGatewayOptions(int max_model_len) const {
  auto positive = [](const char* name, double v) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("--", name, " must be positive"));
  };
  FERRY_RETURN_IF_ERROR(positive("max-running-requests", static_cast<double>(max_running)));
  FERRY_RETURN_IF_ERROR(TlsReloadInterval().status());
  FERRY_RETURN_IF_ERROR(positive("queue-timeout", queue_timeout));
  FERRY_RETURN_IF_ERROR(positive("request-timeout", request_timeout));
  FERRY_RETURN_IF_ERROR(positive("drain-timeout", drain_timeout));
  FERRY_RETURN_IF_ERROR(positive("max-body-bytes", static_cast<double>(max_body_bytes)));
  FERRY_RETURN_IF_ERROR(positive("http-threads", static_cast<double>(http_threads)));
  if (max_waiting < 0 || max_running_per_key < 0) {
    return absl::InvalidArgumentError("--max-waiting-requests and --max-running-requests-per-key must be >= 0");
  }
  if (max_waiting_per_key < 0) return absl::InvalidArgumentError("--max-waiting-requests-per-key must be >= 0");
  GatewayOptions o;
  o.served_model_names = ApiKeys::SplitList(served_model_name);
  o.max_model_len = max_model_len;
  o.admission.max_running = static_cast<int>(max_running);
  o.admission.max_running_per_key = static_cast<int>(max_running_per_key);
  o.admission.max_waiting = static_cast<int>(max_waiting);
  o.admission.max_waiting_per_key = static_cast<int>(max_waiting_per_key);
  o.admission.max_wait = absl::Seconds(queue_timeout);
  o.request_timeout = absl::Seconds(request_timeout);
  o.max_body_bytes = max_body_bytes;
  o.api_keys = ApiKeys::SplitList(api_key);
  if (const char* env = std::getenv("FERRY_API_KEYS"); env != nullptr) {
    for (std::string& k : ApiKeys::SplitList(env)) o.api_keys.push_back(std::move(k));
  }
  o.admin_key = admin_key;
  if (const char* env = std::getenv("FERRY_ADMIN_KEY"); o.admin_key.empty() && env != nullptr) o.admin_key = env;
  if (!api_key_file.empty()) {
    FERRY_ASSIGN_OR_RETURN(std::vector<std::string> keys, ApiKeys::ReadFile(api_key_file));
    for (std::string& k : keys) o.api_keys.push_back(std::move(k));
  }
  auto format = ParseToolCallFormat(tool_call_parser);
  if (!format.ok())
    return absl::InvalidArgumentError(
        absl::StrCat("--tool-call-parser: ", format.status().message()));
  o.tool_call_format = *format;
  auto reasoning = ParseReasoningFormat(reasoning_parser);
  if (!reasoning.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--reasoning-parser: ", reasoning.status().message()));
  }
  o.reasoning_format = *reasoning;
  if (generation_config != "auto" && generation_config != "none") {
    return absl::InvalidArgumentError(
        absl::StrCat("--generation-config must be auto or none, got '", generation_config, "'"));
  }
  o.use_generation_config = generation_config == "auto";
  return o;
}

absl::StatusOr<absl::Duration> GatewayFlags::TlsReloadInterval() const {
  absl::Duration reload;
  if (!absl::ParseDuration(tls_reload_interval, &reload) || reload < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-reload-interval must be a duration like 60s, got '", tls_reload_interval, "'"));
  }
  return reload;
}

HttpServerOptions GatewayFlags::ToHttpOptions(const std::string& host, int port) const {
  HttpServerOptions h;
  h.host = host;
  h.port = port;
  h.num_threads = static_cast<int>(http_threads);
  h.max_body_bytes = max_body_bytes;
  h.tls_cert_file = tls_cert;
  h.tls_key_file = tls_key;
  // Checked by ToGatewayOptions; a bad value leaves the default.
  h.tls_reload_interval = TlsReloadInterval().value_or(h.tls_reload_interval);
  return h;
}

absl::Status SplitHostPort(const std::string& address, std::string* host, int* port) {
  size_t colon = address.rfind(':');
  int p = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &p) || p < 0 || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("'", address, "' is not HOST:PORT"));
  }
  *host = address.substr(0, colon);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') *host = host->substr(1, host->size() - 2);
  if (host->empty()) *host = "0.0.0.0";
  *port = p;
  return absl::OkStatus();
}

int ServeUntilSignal(Gateway& gateway, const HttpServerOptions& http, const GatewayFlags& flags) {
  auto log = Logger("gateway");
  HttpServer server(
      http, [&gateway](const HttpRequest& r) { return gateway.Handle(r); },
      [&gateway](int status) { return gateway.ErrorPage(status); });
  if (absl::Status s = server.Start(); !s.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
    return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  log->info("serving {} on {}://{}:{} ({} HTTP threads)", gateway.model_name(),
            http.tls_cert_file.empty() ? "http" : "https", http.host, server.port(),
            http.num_threads);
  if (!flags.port_file.empty()) std::ofstream(flags.port_file) << server.port() << "\n";
  int sig = WaitForShutdownSignal();
  log->info("signal {}: draining {} request(s), up to {}s", sig, gateway.num_active(), flags.drain_timeout);
  gateway.BeginDrain();
  server.StopAccepting();
  if (!gateway.WaitIdle(absl::Now() + absl::Seconds(flags.drain_timeout))) {
    log->warn("drain timeout: aborting {} request(s)", gateway.num_active());
    gateway.AbortAll();
    gateway.WaitIdle(absl::Now() + absl::Seconds(10));
  }
  server.Shutdown();
  log->info("stopped");
  return 0;
}

}  // namespace ferry
