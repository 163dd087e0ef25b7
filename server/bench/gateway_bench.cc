// Gateway overhead: latency (p50, p99) and requests/s of 1-token
// completions sent through the HTTP gateway, against the same requests sent
// to the backend directly. The backend is a ferry worker over gRPC
// (--worker HOST:PORT), or with --instant a backend that answers at once,
// which isolates the gateway's own cost (HTTP, JSON, tokenizing).
//
//   ferry_gateway_bench --model M --worker 127.0.0.1:PORT [--requests N] [--concurrency C]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "httplib.h"
#include "server/gateway.h"
#include "server/grpc_backend.h"
#include "server/http_server.h"
#include "server/model_assets.h"
#include "tools/flags.h"

namespace ferry {
namespace {

// Answers every request with one token, on the caller's thread.
class InstantBackend final : public GenerateBackend {
 public:
  absl::Status Generate(const v1::GenerateRequest& request, EventCallback on_event) override {
    v1::TokenEvent ev;
    ev.set_request_id(request.request_id());
    ev.add_token_ids(42);
    ev.set_text(" x");
    ev.set_finish_reason(v1::FINISH_REASON_LENGTH);
    ev.mutable_usage()->set_prompt_tokens(request.prompt_ids_size());
    ev.mutable_usage()->set_completion_tokens(1);
    on_event(ev);
    return absl::OkStatus();
  }
  void Abort(const std::string&) override {}
  bool Ready() override { return true; }
};

struct Stats {
  double p50_ms = 0, p99_ms = 0, rps = 0;
};

// Runs `one()` `n` times on each of `threads` threads; returns latency
// percentiles and throughput.
Stats Measure(int threads, int n, const std::function<std::function<bool()>()>& make_client) {
  std::vector<std::vector<double>> lat(threads);
  std::atomic<int> failures{0};
  absl::Time start = absl::Now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      std::function<bool()> one = make_client();
      for (int i = 0; i < n; ++i) {
        absl::Time s = absl::Now();
        if (!one()) ++failures;
        lat[t].push_back(absl::ToDoubleMilliseconds(absl::Now() - s));
      }
    });
  }
  for (auto& th : pool) th.join();
  double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  if (failures > 0) std::fprintf(stderr, "warning: %d requests failed\n", failures.load());
  Stats s;
  s.p50_ms = all[all.size() / 2];
  s.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  s.rps = static_cast<double>(all.size()) / seconds;
  return s;
}

std::function<bool()> DirectClient(GenerateBackend* backend, const std::vector<int32_t>& prompt) {
  static std::atomic<int> counter{0};
  return [backend, prompt] {
    v1::GenerateRequest r;
    r.set_request_id("bench-" + std::to_string(counter++));
    r.mutable_prompt_ids()->Add(prompt.begin(), prompt.end());
    r.mutable_params()->set_max_tokens(1);
    r.mutable_params()->set_n(1);
    absl::Notification done;
    bool ok = true;
    absl::Status s = backend->Generate(r, [&](const v1::TokenEvent& ev) {
      if (ev.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        ok = ev.finish_reason() != v1::FINISH_REASON_ERROR;
        done.Notify();
      }
    });
    if (!s.ok()) return false;
    done.WaitForNotification();
    return ok;
  };
}

std::function<bool()> HttpClient(int port) {
  auto cli = std::make_shared<httplib::Client>("127.0.0.1", port);
  cli->set_keep_alive(true);
  cli->set_tcp_nodelay(true);
  return [cli] {
    auto res = cli->Post("/v1/completions", R"({"prompt":"Once upon a time","max_tokens":1,"temperature":0})",
                         "application/json");
    return res && res->status == 200;
  };
}

void Report(const char* what, const Stats& s) {
  std::printf("%-34s p50 %8.3f ms   p99 %8.3f ms   %9.0f req/s\n", what, s.p50_ms, s.p99_ms, s.rps);
}

int RunBench(const std::string& model, const std::string& worker, bool instant, int64_t requests,
             int64_t concurrency) {
  auto assets = ModelAssets::Load(model);
  if (!assets.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(assets.status().message()).c_str());
    return 1;
  }
  std::unique_ptr<GenerateBackend> backend;
  if (instant) {
    backend = std::make_unique<InstantBackend>();
  } else {
    auto grpc = GrpcBackend::Create({BackendTarget::kWorker, worker});
    if (!grpc.ok() || !(*grpc)->Ready()) {
      std::fprintf(stderr, "error: worker %s is not ready\n", worker.c_str());
      return 1;
    }
    backend = std::move(*grpc);
  }
  MetricsRegistry metrics;
  GatewayOptions options;
  options.admission.max_running = 1024;
  Gateway gateway(options, assets->get(), backend.get(), &metrics);
  HttpServerOptions http;
  http.port = 0;
  HttpServer server(
      http, [&](const HttpRequest& r) { return gateway.Handle(r); }, [&](int s) { return gateway.ErrorPage(s); });
  if (!server.Start().ok()) return 1;
  std::vector<int32_t> prompt = (*assets)->tokenizer().Encode("Once upon a time", true, true);
  std::printf("backend: %s; %lld requests per thread; 1-token completions of a %zu-token prompt\n",
              instant ? "instant (in memory)" : ("worker " + worker).c_str(), static_cast<long long>(requests),
              prompt.size());
  auto direct = [&] { return DirectClient(backend.get(), prompt); };
  auto via_http = [&] { return HttpClient(server.port()); };
  Measure(1, std::max<int64_t>(10, requests / 10), direct);  // warm up
  Measure(1, std::max<int64_t>(10, requests / 10), via_http);
  Stats d1 = Measure(1, static_cast<int>(requests), direct);
  Stats h1 = Measure(1, static_cast<int>(requests), via_http);
  Report("direct backend, 1 client", d1);
  Report("through the gateway, 1 client", h1);
  std::printf("%-34s p50 %8.3f ms   p99 %8.3f ms\n", "added by the gateway", h1.p50_ms - d1.p50_ms,
              h1.p99_ms - d1.p99_ms);
  int c = static_cast<int>(concurrency);
  Stats dc = Measure(c, static_cast<int>(requests), direct);
  Stats hc = Measure(c, static_cast<int>(requests), via_http);
  std::string label_d = "direct backend, " + std::to_string(c) + " clients";
  std::string label_h = "through the gateway, " + std::to_string(c) + " clients";
  Report(label_d.c_str(), dc);
  Report(label_h.c_str(), hc);
  server.Shutdown();
  return 0;
}

}  // namespace
}  // namespace ferry

int main(int argc, char** argv) {
  std::string model, worker;
  bool instant = false;
  int64_t requests = 500, concurrency = 16;
  ferry::FlagParser flags("gateway_bench", "Measures the latency and throughput the HTTP gateway adds.");
  flags.AddString("model", &model, "GGUF file or Hugging Face directory (its tokenizer)");
  flags.AddString("worker", &worker, "HOST:PORT of a running ferry worker");
  flags.AddBool("instant", &instant, "use a backend that answers at once instead of a worker");
  flags.AddInt("requests", &requests, "requests per client thread");
  flags.AddInt("concurrency", &concurrency, "client threads for the throughput runs");
  return ferry::RunWithFlags(flags, argc, argv, [&] {
    if (model.empty() || (worker.empty() && !instant)) {
      std::fprintf(stderr, "error: give --model and either --worker HOST:PORT or --instant\n");
      return 2;
    }
    return ferry::RunBench(model, worker, instant, requests, concurrency);
  });
}
