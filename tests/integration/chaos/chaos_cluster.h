// A cluster of real `ferry` processes (scheduler, workers, gateways) on
// loopback for the chaos tests, a steady load of streamed greedy
// completions through the gateways, and the checks every fault must pass:
//   - a completed stream's text equals a reference greedy run of its prompt
//     (no token lost or repeated);
//   - a failed request got a clear OpenAI-shaped error (an error response
//     body, or an error event then [DONE] on a stream), and whatever text it
//     streamed before is a prefix of the reference;
//   - every worker's `ferry_kv_blocks_used` returns to 0 once idle;
//   - new requests succeed again within a stated bound.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "ferry/v1/scheduler.grpc.pb.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster/child_process.h"
#include "tests/integration/gateway/http_util.h"
#include "tests/process_util.h"
#include "tests/test_support.h"

namespace ferry::testing {

using Json = nlohmann::json;

// Prompts of the load, each run greedily with a fixed length.
inline const std::vector<std::string>& ChaosPrompts() {
  static const std::vector<std::string> prompts = {"Once upon a time", "The little dog",
                                                   "One day, a girl named Lily", "Tom had a big red ball"};
  return prompts;
}

inline Json ChaosCompletion(const std::string& prompt, int max_tokens, bool stream) {
  return Json{{"prompt", prompt},   {"max_tokens", max_tokens}, {"temperature", 0},
              {"ignore_eos", true}, {"stream", stream}};
}

// What one request of the load ended with.
struct ChaosOutcome {
  int gateway = 0;
  int prompt = 0;
  int status = -1;       // HTTP status; -1: no response at all
  std::string text;      // streamed text
  std::string error;     // error message (event or body)
  std::string error_type;
  bool done = false;     // [DONE] arrived
  std::string raw;
};

struct ChaosClusterOptions {
  int num_workers = 2;
  int num_gateways = 1;
  std::string worker_timeout = "500ms";
  std::string migration = "off";
  std::string policy = "least-loaded";
};

class ChaosCluster {
 public:
  ChaosCluster() = default;
  ~ChaosCluster() { StopLoad(); }

  // False (with a message) when the model is absent or a process did not start.
  bool Start(const ChaosClusterOptions& options, std::string* why) {
    options_ = options;
    model_ = SharedPath("models/stories260K.gguf");
    if (!std::filesystem::exists(model_)) {
      *why = model_ + " is absent";
      return false;
    }
    if (!StartScheduler("127.0.0.1:0")) {
      *why = "ferry scheduler did not start";
      return false;
    }
    workers_.resize(options.num_workers);
    for (int i = 0; i < options.num_workers; ++i) StartWorker(i, /*wait=*/false);
    for (int i = 0; i < options.num_workers; ++i) {
      if (!WaitWorker(i)) {
        *why = absl::StrCat("ferry worker ", i, " did not start");
        return false;
      }
    }
    if (!WaitForAliveWorkers(options.num_workers, absl::Seconds(10))) {
      *why = "the workers did not register";
      return false;
    }
    gateways_.resize(options.num_gateways);
    for (int i = 0; i < options.num_gateways; ++i) {
      if (!StartGateway(i, "127.0.0.1:0")) {
        *why = absl::StrCat("ferry gateway ", i, " did not start");
        return false;
      }
    }
    return true;
  }

  bool StartScheduler(const std::string& listen) {
    const std::string pf = TempPath("chaos_sched.port");
    std::remove(pf.c_str());
    scheduler_.reset();
    scheduler_ = std::make_unique<Process>(std::vector<std::string>{
        FerryBinary(), "scheduler", "--listen", listen, "--port-file", pf, "--worker-timeout",
        options_.worker_timeout, "--migration", options_.migration, "--policy", options_.policy,
        "--log-level", "warn"});
    sched_port_ = WaitForPort(pf, absl::Seconds(20));
    stub_ = v1::Scheduler::NewStub(grpc::CreateChannel(sched_address(), grpc::InsecureChannelCredentials()));
    return sched_port_ > 0;
  }
  void KillScheduler(int sig) { scheduler_->Kill(sig); }

  struct Worker {
    std::unique_ptr<Process> process;
    std::string port_file;
    int metrics_port = 0;
    int port = 0;
  };

  void StartWorker(int i, bool wait = true) {
    Worker& w = workers_[i];
    w.port_file = TempPath(absl::StrCat("chaos_worker", i, ".port"));
    std::remove(w.port_file.c_str());
    if (w.metrics_port == 0) w.metrics_port = FreePort();
    // A restarted worker listens where it did before.
    const std::string listen = absl::StrCat("127.0.0.1:", w.port);
    w.process.reset();
    w.process = std::make_unique<Process>(std::vector<std::string>{
        FerryBinary(), "worker", "--model", model_, "--listen", listen, "--port-file", w.port_file,
        "--scheduler", sched_address(), "--threads", "1", "--metrics-port", absl::StrCat(w.metrics_port),
        "--log-level", "warn"});
    if (wait) WaitWorker(i);
  }
  bool WaitWorker(int i) {
    workers_[i].port = WaitForPort(workers_[i].port_file);
    return workers_[i].port > 0;
  }
  // Sends `sig` without waiting for the process (SIGSTOP, SIGCONT).
  void SignalWorker(int i, int sig) { workers_[i].process->Signal(sig); }
  void KillWorker(int i) { workers_[i].process->Kill(SIGKILL); }
  std::string worker_address(int i) const { return absl::StrCat("127.0.0.1:", workers_[i].port); }

  bool StartGateway(int i, const std::string& listen) {
    const std::string pf = TempPath(absl::StrCat("chaos_gateway", i, ".port"));
    std::remove(pf.c_str());
    gateways_[i].process.reset();
    gateways_[i].process = std::make_unique<Process>(std::vector<std::string>{
        FerryBinary(), "gateway", "--scheduler", sched_address(), "--model", model_, "--listen", listen,
        "--port-file", pf, "--log-level", "warn"});
    const int port = WaitForPort(pf);
    {
      // The load threads read the port while a gateway restarts under them.
      std::lock_guard<std::mutex> lock(mu_);
      gateways_[i].port = port;
    }
    return port > 0;
  }
  void KillGateway(int i) { gateways_[i].process->Kill(SIGKILL); }
  int gateway_port(int i) const {
    std::lock_guard<std::mutex> lock(mu_);
    return gateways_[i].port;
  }

  std::string sched_address() const { return absl::StrCat("127.0.0.1:", sched_port_); }
  int sched_port() const { return sched_port_; }

  v1::ListWorkersResponse ListWorkers(bool* ok = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::ListWorkersResponse list;
    const bool good = stub_->ListWorkers(&ctx, {}, &list).ok();
    if (ok != nullptr) *ok = good;
    return list;
  }
  int AliveWorkers() {
    bool ok = false;
    v1::ListWorkersResponse list = ListWorkers(&ok);
    if (!ok) return -1;
    int alive = 0;
    for (const auto& w : list.workers()) alive += w.alive() ? 1 : 0;
    return alive;
  }
  bool WaitForAliveWorkers(int n, absl::Duration timeout) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      if (AliveWorkers() == n) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }
  // Requests the scheduler runs on worker `i` now (-1: not registered).
  int RequestsOn(int i) {
    const v1::ListWorkersResponse list = ListWorkers();
    for (const auto& w : list.workers()) {
      if (w.alive() && w.address() == worker_address(i)) return w.num_requests();
    }
    return -1;
  }
  bool WaitForRequestsOn(int i, int n, absl::Duration timeout) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      if (RequestsOn(i) >= n) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  // `ferry_kv_blocks_used` from worker `i`'s /metrics (-1: no answer).
  int64_t BlocksUsed(int i) {
    httplib::Client cli("127.0.0.1", workers_[i].metrics_port);
    cli.set_connection_timeout(1, 0);
    cli.set_read_timeout(2, 0);
    auto res = cli.Get("/metrics");
    if (!res || res->status != 200) return -1;
    for (absl::string_view line : absl::StrSplit(res->body, '\n')) {
      if (!absl::StartsWith(line, "ferry_kv_blocks_used ")) continue;
      double v = 0;
      if (absl::SimpleAtod(line.substr(line.find(' ') + 1), &v)) return static_cast<int64_t>(v);
    }
    return -1;
  }
  // Waits until every worker in `which` (default: all) holds no block.
  bool WaitForNoBlocksUsed(absl::Duration timeout, std::vector<int> which = {}) {
    if (which.empty()) {
      for (int i = 0; i < static_cast<int>(workers_.size()); ++i) which.push_back(i);
    }
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      bool all = true;
      for (int i : which) all = all && BlocksUsed(i) == 0;
      if (all) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    for (int i : which) std::printf("worker %d: ferry_kv_blocks_used %lld\n", i, (long long)BlocksUsed(i));
    return false;
  }

  // Greedy reference texts of ChaosPrompts(), from an undisturbed cluster.
  bool ComputeReferences(int max_tokens) {
    max_tokens_ = max_tokens;
    references_.clear();
    for (const std::string& p : ChaosPrompts()) {
      HttpResult r = PostJson(gateway_port(0), "/v1/completions", ChaosCompletion(p, max_tokens, false));
      if (r.status != 200) {
        std::printf("reference run failed: %d %s\n", r.status, r.body.c_str());
        return false;
      }
      references_.push_back(Json::parse(r.body)["choices"][0]["text"]);
    }
    return true;
  }
  const std::string& reference(int prompt) const { return references_[prompt]; }

  // One streamed request through gateway `g`.
  ChaosOutcome RunOne(int g, int prompt) {
    ChaosOutcome o;
    o.gateway = g;
    o.prompt = prompt;
    StreamResult r =
        PostStream(gateway_port(g), "/v1/completions", ChaosCompletion(ChaosPrompts()[prompt], max_tokens_, true));
    o.status = r.status;
    o.raw = r.raw;
    for (const std::string& e : r.events) {
      if (e == "[DONE]") {
        o.done = true;
        continue;
      }
      Json j = Json::parse(e, nullptr, false);
      if (j.is_discarded()) continue;
      if (j.contains("error")) {
        o.error = j["error"].value("message", "");
        o.error_type = j["error"].value("type", "");
      }
      if (j.contains("choices") && !j["choices"].empty()) o.text += j["choices"][0].value("text", "");
    }
    if (o.status > 0 && o.status != 200) {
      Json j = Json::parse(r.raw, nullptr, false);
      if (!j.is_discarded() && j.contains("error") && j["error"].is_object()) {
        o.error = j["error"].value("message", "");
        o.error_type = j["error"].value("type", "");
      }
    }
    return o;
  }

  // `threads` clients, each sending streamed requests one after another
  // through gateway (thread % gateways), until StopLoad().
  void StartLoad(int threads) {
    stop_load_ = false;
    for (int t = 0; t < threads; ++t) {
      load_.emplace_back([this, t] {
        int n = 0;
        while (!stop_load_) {
          const int g = t % static_cast<int>(gateways_.size());
          ChaosOutcome o = RunOne(g, (t + n++) % static_cast<int>(ChaosPrompts().size()));
          const bool ok = o.status == 200 && o.done && o.error.empty();
          {
            std::lock_guard<std::mutex> lock(mu_);
            outcomes_.push_back(std::move(o));
          }
          // Refused or broken: do not spin while the cluster recovers.
          if (!ok) absl::SleepFor(absl::Milliseconds(50));
        }
      });
    }
  }
  void StopLoad() {
    stop_load_ = true;
    for (std::thread& t : load_) t.join();
    load_.clear();
  }
  int NumOutcomes() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(outcomes_.size());
  }
  int NumCompleted() {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (const ChaosOutcome& o : outcomes_) n += o.status == 200 && o.done && o.error.empty() ? 1 : 0;
    return n;
  }
  bool WaitForCompleted(int n, absl::Duration timeout) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      if (NumCompleted() >= n) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  struct Tally {
    int completed = 0;   // full text, equal to the reference
    int failed_clean = 0;  // an OpenAI-shaped error
    int cut = 0;         // the connection broke (allowed only where said)
  };
  // Checks every outcome; connections that broke without an error are
  // allowed only through the gateways in `may_cut`.
  Tally CheckOutcomes(const std::vector<int>& may_cut = {}) {
    std::lock_guard<std::mutex> lock(mu_);
    Tally t;
    for (const ChaosOutcome& o : outcomes_) {
      const std::string& ref = references_[o.prompt];
      const std::string where = absl::StrCat("gateway ", o.gateway, " prompt ", o.prompt, ": ");
      // Whatever arrived is the reference's beginning: nothing repeated or lost so far.
      EXPECT_EQ(o.text, ref.substr(0, o.text.size())) << where << "streamed text differs from the reference\n"
                                                     << o.raw;
      if (o.status == 200 && o.done && o.error.empty()) {
        EXPECT_EQ(o.text, ref) << where << "a completed stream lost tokens";
        ++t.completed;
      } else if (!o.error.empty()) {
        EXPECT_FALSE(o.error_type.empty()) << where << "error without a type: " << o.raw;
        if (o.status == 200) EXPECT_TRUE(o.done) << where << "an error event without [DONE]: " << o.raw;
        ++t.failed_clean;
      } else {
        const bool allowed = std::find(may_cut.begin(), may_cut.end(), o.gateway) != may_cut.end();
        EXPECT_TRUE(allowed) << where << "ended with neither the full text nor an error (status " << o.status
                             << "): " << o.raw;
        ++t.cut;
      }
    }
    std::printf("outcomes: %d completed with the reference text, %d clean errors, %d connections cut\n",
                t.completed, t.failed_clean, t.cut);
    return t;
  }

  // Time until a short greedy completion through gateway `g` succeeds again
  // (InfiniteDuration() when it does not within `bound`).
  absl::Duration TimeToServe(int g, absl::Duration bound) {
    const absl::Time start = absl::Now();
    while (absl::Now() - start < bound) {
      HttpResult r = PostJson(gateway_port(g), "/v1/completions", ChaosCompletion(ChaosPrompts()[0], 16, false));
      if (r.status == 200) {
        const std::string text = Json::parse(r.body)["choices"][0]["text"];
        EXPECT_EQ(text, references_[0].substr(0, text.size()));
        return absl::Now() - start;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return absl::InfiniteDuration();
  }

 private:
  struct Gateway {
    std::unique_ptr<Process> process;
    int port = 0;
  };

  ChaosClusterOptions options_;
  std::string model_;
  std::unique_ptr<Process> scheduler_;
  int sched_port_ = 0;
  std::unique_ptr<v1::Scheduler::Stub> stub_;
  std::vector<Worker> workers_;
  std::vector<Gateway> gateways_;
  std::vector<std::string> references_;
  int max_tokens_ = 0;

  std::atomic<bool> stop_load_{false};
  std::vector<std::thread> load_;
  mutable std::mutex mu_;  // guards outcomes_ and each Gateway::port
  std::vector<ChaosOutcome> outcomes_;
};

}  // namespace ferry::testing
