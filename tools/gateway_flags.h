// Flags shared by the roles that run the HTTP gateway (serve, gateway), and
// the serve-until-signal loop with its graceful drain.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "server/gateway.h"
#include "server/http_server.h"
#include "tools/flags.h"

namespace ferry {

struct GatewayFlags {
  std::string chat_template;
  std::string tool_call_parser = "auto";
  std::string reasoning_parser = "none";
  std::string generation_config = "auto";
  std::string served_model_name;
  std::string api_key;       // comma-separated
  std::string api_key_file;  // one key per line
  std::string admin_key;     // opens /admin/ (also $FERRY_ADMIN_KEY)
  int64_t max_running = 256;
  int64_t max_running_per_key = 0;
  int64_t max_waiting = 256;
  int64_t max_waiting_per_key = 0;
  double queue_timeout = 10;     // seconds
  double request_timeout = 600;  // seconds
  double drain_timeout = 30;     // seconds
  int64_t max_body_bytes = 16 << 20;
  int64_t http_threads = 512;
  std::string tls_cert;  // HTTPS with --tls-key
  std::string tls_key;
  std::string tls_reload_interval = "60s";
  std::string port_file;
  std::string log_level = "info";

  void Register(FlagParser& flags);
  // Keys come from --api-key, $FERRY_API_KEYS and --api-key-file together;
  // the admin key from --admin-key, else $FERRY_ADMIN_KEY.
  // InvalidArgument for out-of-range values; NotFound for a missing key file.
  absl::StatusOr<GatewayOptions> ToGatewayOptions(int max_model_len) const;
  HttpServerOptions ToHttpOptions(const std::string& host, int port) const;
  // --tls-reload-interval parsed; InvalidArgument for a bad one.
  absl::StatusOr<absl::Duration> TlsReloadInterval() const;
};

// Splits "HOST:PORT" (InvalidArgument otherwise).
absl::Status SplitHostPort(const std::string& address, std::string* host, int* port);

// Serves `gateway` over HTTP until SIGINT or SIGTERM, then stops accepting,
// lets the streams in flight finish up to the drain timeout, aborts the
// rest, and returns the exit code (0). Call BlockShutdownSignals() first.
int ServeUntilSignal(Gateway& gateway, const HttpServerOptions& http, const GatewayFlags& flags);

}  // namespace ferry
