// ferry-dispatch-bench: time to first token under a bursty load, per
// dispatch policy: round-robin, least-loaded (Llumnix freeness) and
// least-loaded with load-balancing migration. A whole cluster in one
// process: the scheduler and N workers (engine + WorkerService), each behind
// its own gRPC server on 127.0.0.1, workers registered and heartbeating as
// separate processes do; clients call Scheduler.Generate over gRPC.
//
// The load (the same for every policy, from --seed): --bursts bursts of
// --burst-size requests arriving at once, --burst-gap-ms apart; prompts of
// 16-256 tokens; one request in five decodes --long-tokens tokens, the rest
// --short-tokens. Long decodes are what a blind policy piles up on one worker.
//
//   ferry-dispatch-bench --model PATH [--workers 2] [--threads 1] [--bursts 6]
//                        [--burst-size 12] [--burst-gap-ms 1500]
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmarks/bench_model.h"
#include "common/logging.h"
#include "engine/engine.h"
#include "engine/service/scheduler_client.h"
#include "engine/service/worker_service.h"
#include "scheduler/service/scheduler.h"
#include "scheduler/service/scheduler_service.h"
#include "tools/flags.h"

namespace ferry::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Job {
  double arrival = 0;  // seconds from the start
  std::vector<int32_t> prompt;
  int max_tokens = 0;
};

struct Outcome {
  double ttft = -1;  // seconds; -1: failed
  double e2e = -1;
  int tokens = 0;
};

std::unique_ptr<grpc::Server> Listen(grpc::Service* service, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), port);
  builder.RegisterService(service);
  builder.SetMaxReceiveMessageSize(256 << 20);
  return builder.BuildAndStart();
}

class BenchCluster {
 public:
  BenchCluster(std::shared_ptr<const Model> model, int workers, int threads,
               const std::string& policy, bool migration) {
    SchedulerOptions so;
    so.dispatch_policy = policy;
    so.migration = migration;
    so.heartbeat_interval = absl::Milliseconds(50);
    auto s = Scheduler::Create(so);
    if (!s.ok()) std::exit(1);
    scheduler_ = std::move(*s);
    service_ = std::make_unique<SchedulerService>(scheduler_.get());
    int port = 0;
    server_ = Listen(service_.get(), &port);
    address_ = absl::StrCat("127.0.0.1:", port);
    EngineOptions eo;
    eo.threads = threads;
    eo.batch_invariant = false;  // the GEMM path: faster prefills
    for (int i = 0; i < workers; ++i) {
      Worker w;
      w.engine = std::move(*Engine::Create(model, eo));
      w.service = std::make_unique<WorkerService>(w.engine.get(), WorkerServiceOptions{});
      int wport = 0;
      w.server = Listen(w.service.get(), &wport);
      SchedulerClientOptions co;
      co.scheduler_address = address_;
      co.registration.set_address(absl::StrCat("127.0.0.1:", wport));
      co.registration.set_role(v1::WORKER_ROLE_MIXED);
      co.registration.set_model_id(model->id());
      co.registration.set_incarnation_id(w.service->incarnation_id());
      co.registration.mutable_kv_layout()->set_block_size(w.engine->Stats().block_size);
      WorkerService* svc = w.service.get();
      w.client = std::make_unique<SchedulerClient>(std::move(co), [svc] { return svc->Load(); });
      w.client->Start();
      workers_.push_back(std::move(w));
    }
    stub_ =
        v1::Scheduler::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    for (int i = 0; i < 200 && Alive() < workers; ++i) absl::SleepFor(absl::Milliseconds(20));
  }
  ~BenchCluster() {
    for (Worker& w : workers_) w.client.reset();
    for (Worker& w : workers_)
      w.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    workers_.clear();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    scheduler_.reset();
  }

  int Alive() {
    grpc::ClientContext ctx;
    v1::ListWorkersResponse list;
    if (!stub_->ListWorkers(&ctx, {}, &list).ok()) return 0;
    int n = 0;
    for (const auto& w : list.workers()) n += w.alive() ? 1 : 0;
    return n;
  }

  Outcome Run(const std::string& id, const Job& job) {
    v1::GenerateRequest r;
    r.set_request_id(id);
    for (int32_t t : job.prompt) r.add_prompt_ids(t);
    r.mutable_params()->set_temperature(0);
    r.mutable_params()->set_ignore_eos(true);
    r.mutable_params()->set_max_tokens(job.max_tokens);
    r.set_stream(true);
    grpc::ClientContext ctx;
    const auto start = Clock::now();
    auto reader = stub_->Generate(&ctx, r);
    v1::TokenEvent ev;
    Outcome out;
    while (reader->Read(&ev)) {
      out.tokens += ev.token_ids_size();
      if (out.ttft < 0 && ev.token_ids_size() > 0) {
        out.ttft = std::chrono::duration<double>(Clock::now() - start).count();
      }
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) {
      std::fprintf(stderr, "%s failed: %s\n", id.c_str(), status.error_message().c_str());
      return Outcome{};
    }
    out.e2e = std::chrono::duration<double>(Clock::now() - start).count();
    return out;
  }

  std::string Metrics() { return scheduler_->RenderMetrics(); }

 private:
  struct Worker {
    std::unique_ptr<Engine> engine;
    std::unique_ptr<WorkerService> service;
    std::unique_ptr<grpc::Server> server;
    std::unique_ptr<SchedulerClient> client;
  };
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<SchedulerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::unique_ptr<v1::Scheduler::Stub> stub_;
  std::vector<Worker> workers_;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

int64_t MetricValue(const std::string& text, const std::string& name) {
  size_t at = text.find(name + " ");
  if (at == std::string::npos) return 0;
  return std::stoll(text.substr(at + name.size() + 1));
}

int Main(int argc, char** argv) {
  std::string model_path;
  int64_t workers = 2, threads = 1, bursts = 6, burst_size = 12, gap_ms = 1500, seed = 7;
  int64_t short_tokens = 16, long_tokens = 192;
  FlagParser flags("dispatch-bench",
                   "P99 time to first token under bursty load, per dispatch policy.");
  flags.AddString("model", &model_path, "GGUF file or Hugging Face directory");
  flags.AddInt("workers", &workers, "workers in the cluster");
  flags.AddInt("threads", &threads, "CPU threads per worker engine");
  flags.AddInt("bursts", &bursts, "bursts of requests");
  flags.AddInt("burst-size", &burst_size, "requests per burst");
  flags.AddInt("burst-gap-ms", &gap_ms, "milliseconds between bursts");
  flags.AddInt("short-tokens", &short_tokens, "tokens decoded by most requests");
  flags.AddInt("long-tokens", &long_tokens, "tokens decoded by one request in five");
  flags.AddInt("seed", &seed, "load generator seed");
  return RunWithFlags(flags, argc, argv, [&]() -> int {
    (void)SetupLogging("error");
    std::shared_ptr<const Model> model = bench::LoadModelOrReport(model_path);
    if (!model) return 1;
    const int vocab = model->config().vocab_size;
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::vector<Job> jobs;
    for (int b = 0; b < bursts; ++b) {
      for (int i = 0; i < burst_size; ++i) {
        Job j;
        j.arrival = static_cast<double>(b) * static_cast<double>(gap_ms) / 1e3;
        const int len = 16 + static_cast<int>(rng() % 241);
        for (int t = 0; t < len; ++t)
          j.prompt.push_back(5 + static_cast<int32_t>(rng() % (vocab - 10)));
        j.max_tokens = static_cast<int>(rng() % 5 == 0 ? long_tokens : short_tokens);
        jobs.push_back(std::move(j));
      }
    }
    std::printf(
        "%zu requests in %lld bursts of %lld, %lld ms apart, %lld workers x %lld threads\n\n",
        jobs.size(), static_cast<long long>(bursts), static_cast<long long>(burst_size),
        static_cast<long long>(gap_ms), static_cast<long long>(workers),
        static_cast<long long>(threads));
    std::printf(
        "| policy | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | e2e p50 ms | e2e p99 ms | failed | "
        "migrations |\n");
    std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    struct Config {
      const char* name;
      const char* policy;
      bool migration;
    };
    for (const Config& c : {Config{"round-robin", "round-robin", false},
                            Config{"least-loaded", "least-loaded", false},
                            Config{"least-loaded + migration", "least-loaded", true}}) {
      BenchCluster cluster(model, static_cast<int>(workers), static_cast<int>(threads), c.policy,
                           c.migration);
      std::vector<Outcome> outcomes(jobs.size());
      std::vector<std::thread> clients;
      const auto start = Clock::now();
      for (size_t i = 0; i < jobs.size(); ++i) {
        std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(jobs[i].arrival)));
        clients.emplace_back(
            [&, i] { outcomes[i] = cluster.Run(absl::StrCat(c.policy, "-", i), jobs[i]); });
      }
      for (std::thread& t : clients) t.join();
      std::vector<double> ttft, e2e;
      int failed = 0;
      for (size_t i = 0; i < outcomes.size(); ++i) {
        const Outcome& o = outcomes[i];
        // A stream that ends without all its tokens counts as failed too.
        if (o.e2e < 0 || o.ttft < 0 || o.tokens != jobs[i].max_tokens) {
          if (o.e2e >= 0)
            std::fprintf(stderr, "request %zu: %d of %d tokens\n", i, o.tokens, jobs[i].max_tokens);
          ++failed;
          continue;
        }
        ttft.push_back(o.ttft * 1e3);
        e2e.push_back(o.e2e * 1e3);
      }
      const std::string metrics = cluster.Metrics();
      std::printf("| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %d | %lld |\n", c.name,
                  Percentile(ttft, 0.5), Percentile(ttft, 0.9), Percentile(ttft, 0.99),
                  Percentile(e2e, 0.5), Percentile(e2e, 0.99), failed,
                  static_cast<long long>(
                      MetricValue(metrics, "ferry_scheduler_migrations_committed_total")));
      std::fflush(stdout);
    }
    return 0;
  });
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) { return ferry::bench::Main(argc, argv); }
