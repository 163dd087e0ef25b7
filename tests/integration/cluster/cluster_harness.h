// A scheduler (in process, real gRPC on loopback) with fake workers that
// register and heartbeat through the real SchedulerClient.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/service/scheduler_client.h"
#include "ferry/v1/scheduler.grpc.pb.h"
#include "gtest/gtest.h"
#include "scheduler/service/scheduler.h"
#include "scheduler/service/scheduler_service.h"
#include "tests/fakes/fake_worker.h"

namespace ferry::testing {

struct ClusterWorker {
  std::unique_ptr<FakeWorker> fake;
  std::unique_ptr<SchedulerClient> client;
  void Kill() {
    client.reset();  // heartbeats stop ...
    fake->Die();     // ... and streams break, as with SIGKILL
  }
};

struct StreamResult {
  grpc::Status status;
  std::vector<v1::TokenEvent> events;
  // Per sample: token ids in order, and the text.
  std::map<int, std::vector<int32_t>> tokens;
  std::map<int, std::string> text;
  std::map<int, v1::FinishReason> finish;
};

class Cluster {
 public:
  explicit Cluster(SchedulerOptions options) {
    auto s = Scheduler::Create(options);
    EXPECT_TRUE(s.ok()) << s.status();
    scheduler_ = std::move(*s);
    service_ = std::make_unique<SchedulerService>(scheduler_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    address_ = absl::StrCat("127.0.0.1:", port);
    stub_ = v1::Scheduler::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }
  ~Cluster() {
    for (auto& w : workers_) w->Kill();
    server_->Shutdown(std::chrono::system_clock::now());
    scheduler_.reset();
  }

  ClusterWorker* AddWorker(FakeWorkerOptions options = {}) {
    auto w = std::make_unique<ClusterWorker>();
    w->fake = FakeWorker::Start(options);
    SchedulerClientOptions o;
    o.scheduler_address = address_;
    o.registration.set_address(w->fake->address());
    o.registration.set_role(options.role);
    o.registration.set_model_id("fake");
    o.registration.set_incarnation_id(w->fake->incarnation_id());
    o.registration.mutable_kv_layout()->set_block_size(options.block_size);
    FakeWorker* fake = w->fake.get();
    w->client = std::make_unique<SchedulerClient>(std::move(o), [fake] { return fake->Load(); });
    w->client->Start();
    workers_.push_back(std::move(w));
    return workers_.back().get();
  }

  // Waits until `n` workers are alive in ListWorkers.
  // Until n workers are alive and each has sent its first load report (the
  // heartbeat right after registering): placement reads the free blocks.
  bool WaitForWorkers(int n, absl::Duration timeout = absl::Seconds(5)) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      if (AliveWorkers() == n && AliveWorkersWithLoad() == n) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  int AliveWorkersWithLoad() {
    v1::ListWorkersResponse r = List();
    int n = 0;
    for (const auto& w : r.workers()) n += w.alive() && w.load().blocks_total() > 0 ? 1 : 0;
    return n;
  }

  int AliveWorkers() {
    v1::ListWorkersResponse r = List();
    int alive = 0;
    for (const auto& w : r.workers()) alive += w.alive() ? 1 : 0;
    return alive;
  }

  v1::ListWorkersResponse List() {
    grpc::ClientContext ctx;
    v1::ListWorkersResponse r;
    EXPECT_TRUE(stub_->ListWorkers(&ctx, {}, &r).ok());
    return r;
  }

  std::string WorkerIdOf(const ClusterWorker* w) {
    const v1::ListWorkersResponse list = List();
    for (const auto& info : list.workers()) {
      if (info.alive() && info.address() == w->fake->address()) return info.worker_id();
    }
    return "";
  }

  // Runs a request to the end; `on_event` sees each event as it arrives.
  StreamResult Run(const v1::GenerateRequest& request,
                   const std::function<void(const v1::TokenEvent&)>& on_event = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto reader = stub_->Generate(&ctx, request);
    StreamResult out;
    v1::TokenEvent ev;
    while (reader->Read(&ev)) {
      out.events.push_back(ev);
      auto& toks = out.tokens[ev.sample_index()];
      EXPECT_EQ(ev.seq(), toks.size()) << "request " << request.request_id();
      for (int32_t t : ev.token_ids()) toks.push_back(t);
      out.text[ev.sample_index()] += ev.text();
      if (ev.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) out.finish[ev.sample_index()] = ev.finish_reason();
      if (on_event) on_event(ev);
    }
    out.status = reader->Finish();
    return out;
  }

  v1::Scheduler::Stub& stub() { return *stub_; }
  Scheduler& scheduler() { return *scheduler_; }
  const std::string& address() const { return address_; }

 private:
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<SchedulerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::unique_ptr<v1::Scheduler::Stub> stub_;
  std::vector<std::unique_ptr<ClusterWorker>> workers_;
};

inline v1::GenerateRequest MakeRequest(const std::string& id, int max_tokens, uint64_t seed = 42, int n = 1,
                                       int prompt_len = 8) {
  v1::GenerateRequest r;
  r.set_request_id(id);
  for (int i = 0; i < prompt_len; ++i) r.add_prompt_ids(10 + i);
  r.mutable_params()->set_max_tokens(max_tokens);
  r.mutable_params()->set_seed(seed);
  r.mutable_params()->set_n(n);
  r.set_stream(true);
  return r;
}

inline std::vector<int32_t> Expected(uint64_t seed, int sample, int n) {
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(FakeWorker::TokenAt(seed, sample, i));
  return out;
}

inline std::string ExpectedText(uint64_t seed, int sample, int n) {
  std::string out;
  for (int32_t t : Expected(seed, sample, n)) out += FakeWorker::TextOf(t);
  return out;
}

}  // namespace ferry::testing
