// The HTTP transport: a cpp-httplib server (kept entirely inside
// http_server.cc) that turns each request into an HttpRequest, calls the
// handler on one of its pool threads, and writes the HttpResponse back,
// chunked when it streams.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "server/http_types.h"

namespace ferry {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port
  // Threads serving connections; each open stream holds one.
  int num_threads = 512;
  int64_t max_body_bytes = 16 << 20;
  absl::Duration read_timeout = absl::Seconds(30);
  absl::Duration write_timeout = absl::Seconds(30);
  absl::Duration keep_alive_timeout = absl::Seconds(5);
  int listen_backlog = 4096;
  // HTTPS when both are set (PEM files); plain HTTP when both are empty.
  // The files are checked for a rotation at most every tls_reload_interval
  // (server/tls_reload.h).
  std::string tls_cert_file;
  std::string tls_key_file;
  absl::Duration tls_reload_interval = absl::Seconds(60);
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  // The body of an error the server produces itself (413, 400...).
  using ErrorPage = std::function<HttpResponse(int status)>;

  HttpServer(const HttpServerOptions& options, Handler handler, ErrorPage error_page);
  // Stops and waits (see Shutdown).
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving on a background thread. Unavailable when the
  // address cannot be bound; InvalidArgument when only one of the TLS files
  // is set or they do not hold a matching certificate and key.
  absl::Status Start();
  // The port bound (after Start).
  int port() const;
  // Closes the listening socket; connections in progress go on.
  void StopAccepting();
  // StopAccepting, then waits for every connection's work to end.
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry
