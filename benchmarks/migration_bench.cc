// ferry-migration-bench: what moving a running request between two workers
// costs, against sequence length (Llumnix's Figure 10), in one process:
// a source engine and a destination worker (engine + WorkerService behind
// real gRPC on 127.0.0.1), the same path as between `ferry worker`s.
//
// Per length L, a request with an L-token prompt decodes on the source; after
// a few tokens it moves to the destination by
//   live       rounds of completed blocks while it decodes, then a last stage
//              of at most two blocks plus its state (the downtime);
//   blocking   stop-and-copy: pause, send every block, resume there;
//   recompute  drop it here, resubmit prompt + output there (a re-prefill).
// Downtime is the time the request makes no progress. For reference: the
// decode step time at that length on the source. KV transfer throughput is
// the blocking copy's bytes over its downtime, against the loopback TCP
// bandwidth of this machine (measured first).
//
// --busy-destination keeps another request decoding on the destination
// throughout, as a decode worker of a PD cluster is; --writes-on-loop makes
// the destination write every chunk on its engine loop between steps (the
// baseline the receiving thread's writes replaced).
//
// Both engines run in one process, so the destination copies the blocks
// out of the source's shared KV pool (kvcache/shared_pool.h), as between
// two workers on one host; the copy is then measured against one thread's
// memcpy rate. --no-shared-pool sends them through the gRPC stream instead,
// as between hosts, measured against loopback TCP.
//
//   ferry-migration-bench --model PATH [--lengths 256,1024,4096,8192]
//                         [--repeats 3] [--threads 1] [--busy-destination]
//                         [--writes-on-loop] [--no-shared-pool]
#include <arpa/inet.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server_builder.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "benchmarks/bandwidth.h"
#include "benchmarks/bench_model.h"
#include "common/logging.h"
#include "engine/engine.h"
#include "engine/service/migration.h"
#include "engine/service/worker_service.h"
#include "tools/flags.h"

namespace ferry::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Bytes/s of one TCP stream over 127.0.0.1 (1 MiB writes, `total` bytes).
double LoopbackTcpBytesPerSecond(size_t total = size_t{2} << 30) {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  ::listen(listener, 1);
  std::thread reader([listener, total] {
    int fd = ::accept(listener, nullptr, nullptr);
    std::vector<char> buf(1 << 20);
    size_t got = 0;
    while (got < total) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    ::close(fd);
  });
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  std::vector<char> buf(1 << 20, 'x');
  const auto start = Clock::now();
  size_t sent = 0;
  while (sent < total) {
    ssize_t n = ::write(fd, buf.data(), std::min(buf.size(), total - sent));
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ::close(fd);
  reader.join();
  const double s = Seconds(Clock::now() - start);
  ::close(listener);
  return static_cast<double>(sent) / s;
}

// A request running on the source engine, with its token arrival times.
class Running {
 public:
  Running(Engine& engine, GenerateInput input) : id_(input.request_id), prompt_(input.prompt_ids) {
    params_ = input.params;
    absl::Status s = engine.Submit(std::move(input), [this](EngineEvent ev) { OnEvent(ev); });
    if (!s.ok()) {
      std::fprintf(stderr, "submit: %s\n", std::string(s.message()).c_str());
      std::exit(1);
    }
  }
  // Waits for `n` tokens; false if the request ended first.
  bool WaitForTokens(size_t n) {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return tokens_.size() >= n || finished_;
    };
    mu_.Await(absl::Condition(&ready));
    return tokens_.size() >= n;
  }
  void WaitFinished() {
    absl::MutexLock lock(&mu_);
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finished_; };
    mu_.Await(absl::Condition(&done));
  }
  // Median gap between the tokens after the first (decode steps).
  double MedianStepSeconds() {
    absl::MutexLock lock(&mu_);
    std::vector<double> gaps;
    for (size_t i = 2; i < times_.size(); ++i) gaps.push_back(Seconds(times_[i] - times_[i - 1]));
    if (gaps.empty()) return 0;
    std::sort(gaps.begin(), gaps.end());
    return gaps[gaps.size() / 2];
  }
  // The state to resubmit it from (recompute).
  GenerateInput ResumeInput() {
    absl::MutexLock lock(&mu_);
    GenerateInput in;
    in.request_id = id_;
    in.prompt_ids = prompt_;
    in.params = params_;
    ResumeState rs;
    rs.output_ids = tokens_;
    in.resume = std::move(rs);
    return in;
  }

 private:
  void OnEvent(const EngineEvent& ev) {
    absl::MutexLock lock(&mu_);
    for (int32_t t : ev.token_ids) {
      tokens_.push_back(t);
      times_.push_back(Clock::now());
    }
    if (ev.finish != FinishReason::kNone) finished_ = true;
  }

  std::string id_;
  std::vector<int32_t> prompt_;
  SamplingParams params_;
  absl::Mutex mu_;
  std::vector<int32_t> tokens_ ABSL_GUARDED_BY(mu_);
  std::vector<Clock::time_point> times_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

std::vector<int32_t> Prompt(int n, int salt, int vocab) {
  std::vector<int32_t> p(n);
  for (int i = 0; i < n; ++i)
    p[i] = static_cast<int32_t>((i * 7919 + salt * 104729 + 13) % (vocab - 10) + 5);
  return p;
}

void WaitForNoBlocks(Engine& e) {
  for (int i = 0; i < 2000 && e.Stats().blocks_used != 0; ++i)
    absl::SleepFor(absl::Milliseconds(5));
}

struct Sample {
  double downtime = 0;  // seconds
  double total = 0;     // seconds, start of the move to resumed there
  int64_t bytes = 0;
  int rounds = 0;
  double step = 0;  // decode step on the source, seconds
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Main(int argc, char** argv) {
  std::string model_path, lengths_list = "256,1024,4096,8192";
  int64_t repeats = 3, threads = 1, tcp_mib = 2048;
  bool busy_destination = false, writes_on_loop = false, no_shared_pool = false;
  FlagParser flags("migration-bench",
                   "Live migration downtime vs blocking copy vs recompute, by sequence length.");
  flags.AddString("model", &model_path, "GGUF file or Hugging Face directory");
  flags.AddString("lengths", &lengths_list, "comma-separated prompt lengths in tokens");
  flags.AddInt("repeats", &repeats, "runs per length and method (the median is reported)");
  flags.AddInt("threads", &threads, "CPU threads per engine");
  flags.AddInt("tcp-mib", &tcp_mib, "MiB sent to measure loopback TCP bandwidth");
  flags.AddBool("busy-destination", &busy_destination, "keep another request decoding on the destination");
  flags.AddBool("writes-on-loop", &writes_on_loop,
                "the destination writes every chunk on its engine loop between steps (baseline)");
  flags.AddBool("no-shared-pool", &no_shared_pool,
                "send the blocks through the gRPC stream instead of the source's shared KV pool (baseline)");
  return RunWithFlags(flags, argc, argv, [&]() -> int {
    (void)SetupLogging("warn");
    const std::optional<std::vector<int>> parsed = bench::ParseLengthsOrReport(lengths_list, 1);
    if (!parsed) return 2;
    const std::vector<int>& lengths = *parsed;
    const double tcp = LoopbackTcpBytesPerSecond(static_cast<size_t>(tcp_mib) << 20);
    std::printf("loopback TCP, one stream: %.2f GB/s\n", tcp / 1e9);
    const double memcpy_gbs = MeasureCopyBandwidthGBs();
    std::printf("memcpy, one thread: %.2f GB/s\n", memcpy_gbs);

    std::shared_ptr<const Model> model = bench::LoadModelOrReport(model_path);
    if (!model) return 1;
    const int vocab = model->config().vocab_size;
    const int max_len = *std::max_element(lengths.begin(), lengths.end());
    EngineOptions eo;
    eo.threads = static_cast<int>(threads);
    eo.enable_prefix_caching = false;  // each run prefills for real
    eo.batch_invariant = false;        // the GEMM path: faster long prefills
    auto source = Engine::Create(model, eo);
    auto dest_engine = Engine::Create(model, eo);
    if (!source.ok() || !dest_engine.ok()) {
      std::fprintf(stderr, "error: cannot create the engines\n");
      return 1;
    }
    if ((*source)->max_model_len() < max_len + 64) {
      std::fprintf(stderr, "error: the model's context (%d) is shorter than %d + 64 tokens\n",
                   (*source)->max_model_len(), max_len);
      return 1;
    }
    WorkerServiceOptions wo;
    wo.migration.writes_on_loop = writes_on_loop;
    WorkerService dest_service(dest_engine->get(), wo);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&dest_service);
    builder.SetMaxReceiveMessageSize(256 << 20);
    AllowMigrationKeepalive(builder);  // the server arguments of `ferry worker`
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    const std::string dest = absl::StrCat("127.0.0.1:", port);
    auto dest_stub =
        v1::Worker::NewStub(grpc::CreateChannel(dest, grpc::InsecureChannelCredentials()));

    const bool shared = !no_shared_pool && (*source)->shared_kv_pool().has_value();
    std::printf("KV path: %s\n", shared ? "the source's shared pool (same host)" : "the gRPC stream");
    const double limit = shared ? memcpy_gbs * 1e9 : tcp;
    std::printf(
        "\n| tokens | KV MB | decode step ms | live downtime ms | live rounds | live total ms | "
        "blocking downtime ms | recompute downtime ms | blocking copy GB/s | vs %s |\n",
        shared ? "memcpy" : "loopback TCP");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    int salt = 1;
    std::unique_ptr<Running> busy;
    if (busy_destination) {
      GenerateInput in;
      in.request_id = "busy";
      in.prompt_ids = Prompt(64, 0, vocab);
      in.params.temperature = 0;
      in.params.ignore_eos = true;
      in.params.max_tokens = (*dest_engine)->max_model_len() - 65;
      busy = std::make_unique<Running>(**dest_engine, std::move(in));
      busy->WaitForTokens(2);
    }
    for (int len : lengths) {
      std::map<std::string, std::vector<Sample>> samples;
      for (int rep = 0; rep < repeats; ++rep) {
        for (const char* method : {"live", "blocking", "recompute"}) {
          const std::string id = absl::StrCat(method, "-", len, "-", rep);
          GenerateInput in;
          in.request_id = id;
          in.prompt_ids = Prompt(len, ++salt, vocab);
          in.params.temperature = 0;
          in.params.ignore_eos = true;
          in.params.max_tokens = std::min(512, (*source)->max_model_len() - len - 1);
          Running run(**source, std::move(in));
          if (!run.WaitForTokens(6)) {
            std::fprintf(stderr, "%s finished early\n", id.c_str());
            return 1;
          }
          Sample s;
          s.step = run.MedianStepSeconds();
          const auto start = Clock::now();
          if (std::string(method) == "recompute") {
            (*source)->Abort(id);
            run.WaitFinished();
            Running again(**dest_engine, run.ResumeInput());
            again.WaitForTokens(1);
            s.downtime = Seconds(Clock::now() - start);
            s.total = s.downtime;
            (*dest_engine)->Abort(id);
            again.WaitFinished();
          } else {
            LiveMigrationOptions mo;
            mo.stop_and_copy = std::string(method) == "blocking";
            mo.shared_pool = !no_shared_pool;
            auto result = MigrateOut(**source, id, dest, mo);
            s.total = Seconds(Clock::now() - start);
            if (!result.ok()) {
              std::fprintf(stderr, "%s: %s\n", id.c_str(),
                           std::string(result.status().message()).c_str());
              return 1;
            }
            s.downtime = absl::ToDoubleSeconds(result->downtime);
            s.bytes = result->bytes_sent;
            s.rounds = result->rounds;
            if (result->shared_pool != shared) {
              std::fprintf(stderr, "%s: the copy did not take the expected path\n", id.c_str());
              return 1;
            }
            run.WaitFinished();  // ends here with MIGRATED
            grpc::ClientContext ctx;
            v1::AbortRequest abort;
            abort.set_request_id(id);
            v1::AbortResponse resp;
            (void)dest_stub->Abort(&ctx, abort, &resp);
          }
          WaitForNoBlocks(**source);
          if (!busy_destination) WaitForNoBlocks(**dest_engine);
          samples[method].push_back(s);
        }
      }
      auto med = [&](const char* m, double Sample::*f) {
        std::vector<double> v;
        for (const Sample& s : samples[m]) v.push_back(s.*f);
        return Median(v);
      };
      std::vector<double> rounds, bytes, gbs;
      for (const Sample& s : samples["live"]) rounds.push_back(s.rounds);
      for (const Sample& s : samples["blocking"]) {
        bytes.push_back(static_cast<double>(s.bytes));
        gbs.push_back(static_cast<double>(s.bytes) / s.downtime / 1e9);
      }
      const double copy_gbs = Median(gbs);
      std::printf("| %d | %.1f | %.1f | %.2f | %.0f | %.0f | %.1f | %.0f | %.2f | %.0f %% |\n", len,
                  Median(bytes) / 1e6, med("live", &Sample::step) * 1e3,
                  med("live", &Sample::downtime) * 1e3, Median(rounds),
                  med("live", &Sample::total) * 1e3, med("blocking", &Sample::downtime) * 1e3,
                  med("recompute", &Sample::downtime) * 1e3, copy_gbs,
                  100.0 * copy_gbs * 1e9 / limit);
      std::fflush(stdout);
    }
    if (busy) {
      (*dest_engine)->Abort("busy");
      busy->WaitFinished();
    }
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    return 0;
  });
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) { return ferry::bench::Main(argc, argv); }
