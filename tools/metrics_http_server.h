// Serves GET /metrics (Prometheus text format 0.0.4) over plain HTTP on a
// background thread, for `ferry scheduler --metrics-port` and
// `ferry worker --metrics-port`. cpp-httplib stays inside the .cc.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace ferry {

class MetricsHttpServer {
 public:
  // Called on an HTTP thread for every scrape; must be thread-safe.
  using RenderFn = std::function<std::string()>;

  // Listens on host:port (port 0: any free port). Unavailable when the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const std::string& host, int port,
                                                                  RenderFn render);
  // Stops listening and joins the server thread.
  ~MetricsHttpServer();

  int port() const;

  // The host part of a gRPC listen address ("[::]:50051" -> "::"), where the
  // metrics server listens too ("0.0.0.0" when there is none).
  static std::string HostOf(const std::string& listen_address);

 private:
  struct Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry
