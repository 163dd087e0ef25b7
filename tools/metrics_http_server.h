// Serves GET /metrics (Prometheus text format 0.0.4) on a background thread,
// for `ferry scheduler --metrics-port` and `ferry worker --metrics-port`:
// plain HTTP, or with --metrics-tls HTTPS with the process's mutual-TLS
// certificate that answers only scrapers holding a client certificate from
// the cluster's CA. cpp-httplib stays inside the .cc.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/grpc_credentials.h"

namespace ferry {

class MetricsHttpServer {
 public:
  // Called on an HTTP thread for every scrape; must be thread-safe.
  using RenderFn = std::function<std::string()>;

  // Listens on host:port (port 0: any free port); with `tls`, HTTPS with
  // its certificate and key, verifying clients against its CA. Unavailable
  // when the address cannot be bound; InvalidArgument when the TLS files do
  // not load.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host, int port,
                                                                  RenderFn render,
                                                                  const GrpcTlsFiles* tls = nullptr);
  // Stops listening and joins the server thread.
  ~MetricsHttpServer();

  int port() const;
  // "https" or "http".
  const char* scheme() const;

  // The host part of a gRPC listen address ("[::]:50051" -> "::"), where the
  // metrics server listens too ("0.0.0.0" when there is none).
  static std::string HostOf(const std::string& listen_address);

 private:
  struct Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry
