#include "server/http_server.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "httplib.h"
#include "server/tls_reload.h"

namespace ferry {
namespace {

class SinkWriter : public ChunkWriter {
 public:
  explicit SinkWriter(httplib::DataSink& sink) : sink_(sink) {}
  bool Write(std::string_view data) override {
    if (failed_) return false;
    if (!sink_.write(data.data(), data.size())) failed_ = true;
    return !failed_;
  }

 private:
  httplib::DataSink& sink_;
  bool failed_ = false;
};

HttpRequest ToRequest(const httplib::Request& req) {
  HttpRequest r;
  r.method = req.method;
  r.path = req.path;
  r.body = req.body;
  r.remote_address = req.remote_addr;
  for (const auto& [k, v] : req.headers) r.headers.emplace_back(k, v);
  return r;
}

void Apply(HttpResponse&& from, httplib::Response& to) {
  to.status = from.status;
  for (const auto& [k, v] : from.headers) to.set_header(k.c_str(), v);
  if (!from.stream) {
    to.set_content(std::move(from.body), from.content_type.c_str());
    return;
  }
  auto stream = std::make_shared<std::function<void(ChunkWriter&)>>(std::move(from.stream));
  to.set_chunked_content_provider(
      from.content_type.c_str(),
      [stream](size_t /*offset*/, httplib::DataSink& sink) {
        // Produce the whole body in this one call: httplib checks for
        // shutdown only between calls, and a drain must let streams finish.
        SinkWriter writer(sink);
        (*stream)(writer);
        sink.done();
        return true;
      },
      [stream](bool /*success*/) { *stream = nullptr; });
}

// `identity` is set for HTTPS; it must outlive the server.
absl::StatusOr<std::unique_ptr<httplib::Server>> MakeServer(const HttpServerOptions& options,
                                                            std::shared_ptr<ReloadingTlsIdentity>* identity) {
  if (options.tls_cert_file.empty() && options.tls_key_file.empty()) {
    return std::make_unique<httplib::Server>();
  }
  if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("HTTPS needs both --tls-cert and --tls-key");
  }
  TlsFiles files;
  files.cert_file = options.tls_cert_file;
  files.key_file = options.tls_key_file;
  files.reload_interval = options.tls_reload_interval;
  absl::StatusOr<std::unique_ptr<httplib::Server>> server = MakeReloadingHttpsServer(files, identity);
  if (!server.ok()) {
    return absl::Status(server.status().code(),
                        absl::StrCat("cannot load the TLS certificate ", options.tls_cert_file, " with the key ",
                                     options.tls_key_file, ": ", server.status().message()));
  }
  return server;
}

time_t Seconds(absl::Duration d) { return static_cast<time_t>(absl::ToInt64Seconds(d)); }

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  Handler handler;
  ErrorPage error_page;
  std::shared_ptr<ReloadingTlsIdentity> tls;  // HTTPS: the certificate, kept fresh
  std::unique_ptr<httplib::Server> server;    // an httplib::SSLServer for HTTPS
  std::thread thread;
  std::atomic<int> listen_fd{-1};
  int port = 0;
  bool started = false;
};

HttpServer::HttpServer(const HttpServerOptions& options, Handler handler, ErrorPage error_page)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  impl_->handler = std::move(handler);
  impl_->error_page = std::move(error_page);
}

HttpServer::~HttpServer() { Shutdown(); }

absl::Status HttpServer::Start() {
  Impl& s = *impl_;
  FERRY_ASSIGN_OR_RETURN(s.server, MakeServer(s.options, &s.tls));
  const int threads = std::max(1, s.options.num_threads);
  s.server->new_task_queue = [threads] {
    return new httplib::ThreadPool(static_cast<size_t>(threads));
  };
  s.server->set_payload_max_length(static_cast<size_t>(s.options.max_body_bytes));
  s.server->set_read_timeout(Seconds(s.options.read_timeout), 0);
  s.server->set_write_timeout(Seconds(s.options.write_timeout), 0);
  s.server->set_keep_alive_timeout(Seconds(s.options.keep_alive_timeout));
  s.server->set_keep_alive_max_count(1000);
  s.server->set_tcp_nodelay(true);
  Impl* impl = impl_.get();
  s.server->set_socket_options([impl](int fd) {
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    int expected = -1;
    impl->listen_fd.compare_exchange_strong(expected, fd);
  });
  auto handle = [impl](const httplib::Request& req, httplib::Response& res) {
    Apply(impl->handler(ToRequest(req)), res);
  };
  const char* kAny = ".*";
  s.server->Get(kAny, handle);
  s.server->Post(kAny, handle);
  s.server->Put(kAny, handle);
  s.server->Patch(kAny, handle);
  s.server->Delete(kAny, handle);
  s.server->Options(kAny, handle);
  s.server->set_error_handler([impl](const httplib::Request&, httplib::Response& res) {
    // Only errors httplib raised itself have no body yet.
    if (res.body.empty() && !res.content_provider_) Apply(impl->error_page(res.status), res);
  });
  s.server->set_exception_handler(
      [impl](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        Apply(impl->error_page(500), res);
      });
  if (s.options.port == 0) {
    s.port = s.server->bind_to_any_port(s.options.host);
  } else {
    s.port = s.server->bind_to_port(s.options.host, s.options.port) ? s.options.port : -1;
  }
  if (s.port <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", s.options.host, ":", s.options.port));
  }
  // httplib listens with a tiny backlog; many clients connecting at once
  // would see dropped SYNs and second-long retries.
  if (int fd = s.listen_fd.load(); fd >= 0) ::listen(fd, s.options.listen_backlog);
  s.started = true;
  s.thread = std::thread([impl] { impl->server->listen_after_bind(); });
  return absl::OkStatus();
}

int HttpServer::port() const { return impl_->port; }

void HttpServer::StopAccepting() {
  if (impl_->started) impl_->server->stop();
}

void HttpServer::Shutdown() {
  StopAccepting();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace ferry
