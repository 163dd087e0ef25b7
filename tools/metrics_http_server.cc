#include "tools/metrics_http_server.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "httplib.h"
#include "server/tls_reload.h"

namespace ferry {

struct MetricsHttpServer::Impl {
  std::shared_ptr<ReloadingTlsIdentity> identity;  // with TLS: the certificate, kept fresh
  std::unique_ptr<httplib::Server> owned;          // an httplib::SSLServer with TLS
  httplib::Server& server() { return *owned; }
  bool tls = false;
  std::thread thread;
  std::atomic<bool> returned{false};  // listen_after_bind came back
  int port = 0;
};

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(const std::string& host, int port,
                                                                             RenderFn render,
                                                                             const GrpcTlsFiles* tls) {
  auto impl = std::make_unique<Impl>();
  if (tls != nullptr) {
    if (tls->ca_file.empty() || tls->cert_file.empty() || tls->key_file.empty()) {
      return absl::InvalidArgumentError(
          "--metrics-tls needs the mutual-TLS files: --mtls-ca, --mtls-cert and --mtls-key");
    }
    TlsFiles files;
    files.cert_file = tls->cert_file;
    files.key_file = tls->key_file;
    files.client_ca_file = tls->ca_file;
    files.reload_interval = tls->reload_interval;
    auto server = MakeReloadingHttpsServer(files, &impl->identity);
    if (!server.ok()) {
      return absl::Status(server.status().code(), "cannot load the metrics TLS certificate " + tls->cert_file +
                                                      " with the key " + tls->key_file + " and the CA " +
                                                      tls->ca_file + ": " + std::string(server.status().message()));
    }
    impl->owned = std::move(*server);
    impl->tls = true;
  } else {
    impl->owned = std::make_unique<httplib::Server>();
  }
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a
  // port some other process listens on (with it too) would be shared.
  impl->server().set_socket_options([](int fd) {
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // Scrapes are rare and cheap: two threads are plenty.
  impl->server().new_task_queue = [] { return new httplib::ThreadPool(2); };
  impl->server().Get("/metrics", [render = std::move(render)](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  if (port == 0) {
    impl->port = impl->server().bind_to_any_port(host);
  } else if (impl->server().bind_to_port(host, port)) {
    impl->port = port;
  }
  if (impl->port <= 0) {
    return absl::UnavailableError("cannot listen for metrics on " + host + ":" + std::to_string(port));
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    raw->server().listen_after_bind();
    raw->returned = true;
  });
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(impl)));
}

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MetricsHttpServer::~MetricsHttpServer() {
  // httplib's stop() does nothing before the listen loop runs: wait for it.
  while (!impl_->server().is_running() && !impl_->returned) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  impl_->server().stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int MetricsHttpServer::port() const { return impl_->port; }

const char* MetricsHttpServer::scheme() const { return impl_->tls ? "https" : "http"; }

std::string MetricsHttpServer::HostOf(const std::string& listen_address) {
  const size_t colon = listen_address.rfind(':');
  std::string host = colon == std::string::npos ? "" : listen_address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return host.empty() ? "0.0.0.0" : host;
}

}  // namespace ferry
