// The scheduler over real gRPC with fake workers: registration, dispatch,
// relay, recovery from a dead worker, migration, PD hand-off, drain, abort.
#include <atomic>
#include <thread>

#include "tests/integration/cluster/cluster_harness.h"

namespace ferry {
namespace {

using testing::Cluster;
using testing::ClusterWorker;
using testing::Expected;
using testing::ExpectedText;
using testing::FakeWorkerOptions;
using testing::MakeRequest;

SchedulerOptions FastOptions() {
  SchedulerOptions o;
  o.worker_timeout = absl::Milliseconds(500);
  o.heartbeat_interval = absl::Milliseconds(20);
  o.policy_interval = absl::Milliseconds(20);
  o.migration = false;
  o.placement_timeout = absl::Seconds(2);
  return o;
}

TEST(SchedulerClusterTest, WorkersRegisterAndTimeOut) {
  Cluster c(FastOptions());
  ClusterWorker* a = c.AddWorker();
  c.AddWorker(FakeWorkerOptions{.role = v1::WORKER_ROLE_DECODE});
  ASSERT_TRUE(c.WaitForWorkers(2));
  v1::ListWorkersResponse list = c.List();
  ASSERT_EQ(list.workers_size(), 2);
  int decode = 0;
  for (const auto& w : list.workers()) {
    decode += w.role() == v1::WORKER_ROLE_DECODE ? 1 : 0;
    EXPECT_FALSE(w.incarnation_id().empty());
  }
  EXPECT_EQ(decode, 1);
  // Heartbeats carry the load.
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(c.List().workers(0).load().blocks_total(), 1000);
  a->Kill();
  ASSERT_TRUE(c.WaitForWorkers(1, absl::Seconds(3)));
  EXPECT_GE(c.scheduler().metrics().Get("ferry_scheduler_workers_lost_total"), 1);
}

TEST(SchedulerClusterTest, HeartbeatFromUnknownWorkerAsksToRegister) {
  Cluster c(FastOptions());
  grpc::ClientContext ctx;
  v1::HeartbeatRequest hb;
  hb.set_worker_id("w99");
  hb.set_incarnation_id("x");
  v1::HeartbeatResponse r;
  ASSERT_TRUE(c.stub().Heartbeat(&ctx, hb, &r).ok());
  EXPECT_FALSE(r.known());
  grpc::ClientContext ctx2;
  v1::RegisterWorkerResponse rr;
  EXPECT_EQ(c.stub().RegisterWorker(&ctx2, v1::RegisterWorkerRequest(), &rr).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(SchedulerClusterTest, RelaysAStreamUnchanged) {
  Cluster c(FastOptions());
  c.AddWorker();
  ASSERT_TRUE(c.WaitForWorkers(1));
  auto r = c.Run(MakeRequest("r1", 20, 7));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens[0], Expected(7, 0, 20));
  EXPECT_EQ(r.text[0], ExpectedText(7, 0, 20));
  EXPECT_EQ(r.finish[0], v1::FINISH_REASON_LENGTH);
}

TEST(SchedulerClusterTest, ParallelSamplesAndRoundRobinSpread) {
  SchedulerOptions o = FastOptions();
  o.dispatch_policy = "round-robin";
  Cluster c(o);
  ClusterWorker* a = c.AddWorker();
  ClusterWorker* b = c.AddWorker();
  ASSERT_TRUE(c.WaitForWorkers(2));
  auto r = c.Run(MakeRequest("n3", 10, 3, /*n=*/3));
  ASSERT_TRUE(r.status.ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r.tokens[i], Expected(3, i, 10)) << i;
  ASSERT_TRUE(c.Run(MakeRequest("second", 4)).status.ok());
  EXPECT_EQ(a->fake->generate_calls(), 1);
  EXPECT_EQ(b->fake->generate_calls(), 1);
}

TEST(SchedulerClusterTest, AssignsASeedWhenThereIsNone) {
  Cluster c(FastOptions());
  c.AddWorker();
  ASSERT_TRUE(c.WaitForWorkers(1));
  v1::GenerateRequest req = MakeRequest("noseed", 5);
  req.mutable_params()->clear_seed();
  auto r = c.Run(req);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.tokens[0].size(), 5u);
}

TEST(SchedulerClusterTest, BadRequestsFailClearly) {
  Cluster c(FastOptions());
  c.AddWorker();
  ASSERT_TRUE(c.WaitForWorkers(1));
  v1::GenerateRequest empty;
  empty.set_request_id("empty");
  EXPECT_EQ(c.Run(empty).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::GenerateRequest attach = MakeRequest("attach", 4);
  attach.set_attach(true);
  EXPECT_EQ(c.Run(attach).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // The worker's own refusal reaches the client as is.
  v1::GenerateRequest bad = MakeRequest("bad", 4);
  bad.mutable_params()->set_max_tokens(-1);
  EXPECT_EQ(c.Run(bad).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(SchedulerClusterTest, NoWorkerIsUnavailableAfterTheWait) {
  SchedulerOptions o = FastOptions();
  o.placement_timeout = absl::Milliseconds(200);
  Cluster c(o);
  EXPECT_EQ(c.Run(MakeRequest("lonely", 4)).status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(SchedulerClusterTest, WaitsForAWorkerThatJoinsLate) {
  Cluster c(FastOptions());
  std::thread join([&] {
    absl::SleepFor(absl::Milliseconds(200));
    c.AddWorker();
  });
  auto r = c.Run(MakeRequest("late", 6, 9));
  join.join();
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens[0], Expected(9, 0, 6));
}

TEST(SchedulerClusterTest, WorkerKilledMidStreamIsRecovered) {
  SchedulerOptions o = FastOptions();
  o.dispatch_policy = "round-robin";
  Cluster c(o);
  ClusterWorker* a = c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10)});
  ClusterWorker* b = c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10)});
  ASSERT_TRUE(c.WaitForWorkers(2));
  std::atomic<bool> killed{false};
  std::thread killer;
  ClusterWorker* victim = nullptr;
  auto r = c.Run(MakeRequest("victim", 60, 11, /*n=*/2), [&](const v1::TokenEvent& ev) {
    if (!killed && ev.seq() >= 10) {
      killed = true;
      victim = a->fake->generate_calls() > 0 ? a : b;
      killer = std::thread([victim] { victim->Kill(); });
    }
  });
  killer.join();
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(r.tokens[i], Expected(11, i, 60)) << "sample " << i;
    EXPECT_EQ(r.text[i], ExpectedText(11, i, 60)) << "sample " << i;
  }
  ClusterWorker* survivor = victim == a ? b : a;
  EXPECT_EQ(survivor->fake->resume_calls(), 2);  // each sample resumed on its own
  EXPECT_GE(c.scheduler().metrics().Get("ferry_scheduler_recoveries_total"), 2);
}

TEST(SchedulerClusterTest, AdminMigrationKeepsTheStream) {
  Cluster c(FastOptions());
  c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10)});
  c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10)});
  ASSERT_TRUE(c.WaitForWorkers(2));
  std::atomic<int> moves{0};
  std::vector<std::thread> movers;
  auto r = c.Run(MakeRequest("mover", 80, 5), [&](const v1::TokenEvent& ev) {
    // Three migrations, each at a later point of the stream.
    if (moves < 3 && static_cast<int>(ev.seq()) >= 10 + 20 * moves) {
      ++moves;
      movers.emplace_back([&] {
        grpc::ClientContext ctx;
        v1::MigrateRequest m;
        m.set_request_id("mover");
        v1::MigrateResponse resp;
        grpc::Status s = c.stub().Migrate(&ctx, m, &resp);
        EXPECT_TRUE(s.ok());
        EXPECT_TRUE(resp.ok()) << resp.error();
      });
    }
  });
  for (auto& t : movers) t.join();
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens[0], Expected(5, 0, 80));
  EXPECT_EQ(r.text[0], ExpectedText(5, 0, 80));
  EXPECT_EQ(moves, 3);
  EXPECT_NE(c.scheduler().RenderMetrics().find("ferry_scheduler_migrations_committed_total 3"), std::string::npos)
      << c.scheduler().RenderMetrics();
}

TEST(SchedulerClusterTest, RefusedMigrationLeavesTheRequestRunning) {
  Cluster c(FastOptions());
  c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10)});
  c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10), .refuse_migrations = true});
  ClusterWorker* refuser = nullptr;
  ASSERT_TRUE(c.WaitForWorkers(2));
  (void)refuser;
  std::atomic<bool> asked{false};
  std::thread mover;
  v1::MigrateResponse resp;
  auto r = c.Run(MakeRequest("stay", 40, 8), [&](const v1::TokenEvent& ev) {
    if (!asked && ev.seq() >= 5) {
      asked = true;
      mover = std::thread([&] {
        // Whichever worker runs it, the other one refuses or is the same.
        const v1::ListWorkersResponse list = c.List();
        for (const auto& w : list.workers()) {
          grpc::ClientContext ctx;
          v1::MigrateRequest m;
          m.set_request_id("stay");
          m.set_destination_worker_id(w.worker_id());
          v1::MigrateResponse one;
          ASSERT_TRUE(c.stub().Migrate(&ctx, m, &one).ok());
          if (!one.ok()) resp = one;
        }
      });
    }
  });
  mover.join();
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.tokens[0], Expected(8, 0, 40));
  EXPECT_FALSE(resp.ok());
  EXPECT_FALSE(resp.error().empty());
}

TEST(SchedulerClusterTest, PrefillThenDecodeHandOff) {
  SchedulerOptions o = FastOptions();
  o.disaggregation.min_prompt_tokens = 32;
  Cluster c(o);
  ClusterWorker* p = c.AddWorker(FakeWorkerOptions{.role = v1::WORKER_ROLE_PREFILL});
  ClusterWorker* d = c.AddWorker(FakeWorkerOptions{.role = v1::WORKER_ROLE_DECODE});
  ASSERT_TRUE(c.WaitForWorkers(2));
  auto r = c.Run(MakeRequest("pd", 30, 21, 1, /*prompt_len=*/64));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens[0], Expected(21, 0, 30));
  EXPECT_EQ(p->fake->generate_calls(), 1);
  EXPECT_EQ(p->fake->migrations_out(), 1);
  EXPECT_EQ(d->fake->attach_calls(), 1);
  EXPECT_EQ(c.scheduler().metrics().Get("ferry_scheduler_pd_handoffs_total"), 1);
  // A short prompt stays on one worker (the decode worker: no mixed one).
  auto s = c.Run(MakeRequest("short", 5, 22, 1, /*prompt_len=*/4));
  ASSERT_TRUE(s.status.ok());
  EXPECT_EQ(p->fake->generate_calls(), 1);
  EXPECT_EQ(d->fake->generate_calls(), 2);
}

TEST(SchedulerClusterTest, DrainMovesRequestsOut) {
  Cluster c(FastOptions());
  ClusterWorker* a = c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10)});
  ClusterWorker* b = c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10)});
  ASSERT_TRUE(c.WaitForWorkers(2));
  std::atomic<bool> drained{false};
  std::thread drainer;
  auto r = c.Run(MakeRequest("drained", 50, 13), [&](const v1::TokenEvent& ev) {
    if (!drained && ev.seq() >= 5) {
      drained = true;
      ClusterWorker* busy = a->fake->generate_calls() > 0 ? a : b;
      std::string id = c.WorkerIdOf(busy);
      drainer = std::thread([&c, id] {
        grpc::ClientContext ctx;
        v1::DrainWorkerRequest d;
        d.set_worker_id(id);
        v1::DrainWorkerResponse resp;
        EXPECT_TRUE(c.stub().DrainWorker(&ctx, d, &resp).ok());
        EXPECT_TRUE(resp.ok());
        EXPECT_EQ(resp.num_requests(), 1);  // the one it now migrates
      });
    }
  });
  drainer.join();
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.tokens[0], Expected(13, 0, 50));
  EXPECT_EQ(a->fake->migrations_out() + b->fake->migrations_out(), 1);
  // The drained worker gets no new requests.
  const int64_t calls_a = a->fake->generate_calls(), calls_b = b->fake->generate_calls();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(c.Run(MakeRequest(absl::StrCat("after", i), 3)).status.ok());
  EXPECT_TRUE((a->fake->generate_calls() == calls_a) != (b->fake->generate_calls() == calls_b));
}

// The admin calls behind the gateway's /admin/ endpoints: ListWorkers names
// the requests each worker runs; Migrate says why it would not move one;
// workers may be named by their address.
TEST(SchedulerClusterTest, AdminCallsListRequestsNameWorkersByAddressAndSayWhy) {
  Cluster c(FastOptions());
  ClusterWorker* a = c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10)});
  ClusterWorker* b = c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10)});
  ASSERT_TRUE(c.WaitForWorkers(2));
  auto migrate = [&](const std::string& request_id, const std::string& to) {
    grpc::ClientContext ctx;
    v1::MigrateRequest m;
    m.set_request_id(request_id);
    m.set_destination_worker_id(to);
    v1::MigrateResponse resp;
    EXPECT_TRUE(c.stub().Migrate(&ctx, m, &resp).ok());
    return resp;
  };
  v1::MigrateResponse unknown = migrate("nobody", "");
  EXPECT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error_code(), static_cast<int>(absl::StatusCode::kNotFound)) << unknown.error();

  std::atomic<bool> asked{false};
  std::thread admin;
  v1::MigrateResponse to_nowhere, moved;
  std::vector<std::string> listed;
  // At TestBody scope, so the thread holds references to these locals and
  // not to the stream callback's closure, which ends with Run.
  auto work = [&] {
    std::string source_address;
    const v1::ListWorkersResponse list = c.List();
    for (const auto& w : list.workers()) {
      for (const std::string& id : w.request_ids()) listed.push_back(id);
      if (w.num_requests() > 0) source_address = w.address();
    }
    to_nowhere = migrate("listed", "127.0.0.1:1");
    // The other worker, by its address.
    const std::string other = source_address == a->fake->address() ? b->fake->address() : a->fake->address();
    moved = migrate("listed", other);
  };
  auto r = c.Run(MakeRequest("listed", 60, 3), [&](const v1::TokenEvent& ev) {
    if (asked || ev.seq() < 5) return;
    asked = true;
    admin = std::thread(work);
  });
  admin.join();
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens[0], Expected(3, 0, 60));
  EXPECT_EQ(listed, std::vector<std::string>{"listed"});
  EXPECT_FALSE(to_nowhere.ok());
  EXPECT_EQ(to_nowhere.error_code(), static_cast<int>(absl::StatusCode::kNotFound)) << to_nowhere.error();
  EXPECT_TRUE(moved.ok()) << moved.error();
  EXPECT_NE(moved.source_worker_id(), moved.destination_worker_id());
  EXPECT_FALSE(moved.destination_worker_id().empty());

  // Drain by address.
  grpc::ClientContext ctx;
  v1::DrainWorkerRequest d;
  d.set_worker_id(b->fake->address());
  v1::DrainWorkerResponse resp;
  ASSERT_TRUE(c.stub().DrainWorker(&ctx, d, &resp).ok());
  EXPECT_EQ(resp.num_requests(), 0);  // the request finished before
  const v1::ListWorkersResponse list = c.List();
  for (const auto& w : list.workers()) EXPECT_EQ(w.draining(), w.address() == b->fake->address());
  grpc::ClientContext ctx2;
  d.set_worker_id("no-such-worker");
  EXPECT_EQ(c.stub().DrainWorker(&ctx2, d, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(SchedulerClusterTest, AbortEndsTheStreamAndFreesTheWorker) {
  Cluster c(FastOptions());
  ClusterWorker* a = c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10)});
  ASSERT_TRUE(c.WaitForWorkers(1));
  std::atomic<bool> sent{false};
  std::thread aborter;
  auto r = c.Run(MakeRequest("abort-me", 1000, 1), [&](const v1::TokenEvent& ev) {
    if (!sent) {
      sent = true;
      aborter = std::thread([&] {
        grpc::ClientContext ctx;
        v1::AbortRequest ab;
        ab.set_request_id("abort-me");
        v1::AbortResponse resp;
        EXPECT_TRUE(c.stub().Abort(&ctx, ab, &resp).ok());
        EXPECT_TRUE(resp.found());
      });
    }
  });
  aborter.join();
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.finish[0], v1::FINISH_REASON_ABORT);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(a->fake->num_active(), 0);
}

TEST(SchedulerClusterTest, ClientCancelStopsTheWorker) {
  Cluster c(FastOptions());
  ClusterWorker* a = c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10)});
  ASSERT_TRUE(c.WaitForWorkers(1));
  grpc::ClientContext ctx;
  auto reader = c.stub().Generate(&ctx, MakeRequest("cancel-me", 1000, 1));
  v1::TokenEvent ev;
  ASSERT_TRUE(reader->Read(&ev));
  ctx.TryCancel();
  while (reader->Read(&ev)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  const absl::Time end = absl::Now() + absl::Seconds(2);
  while (a->fake->num_active() > 0 && absl::Now() < end) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(a->fake->num_active(), 0);
}

TEST(SchedulerClusterTest, LoadBalancingMigrationMovesWork) {
  SchedulerOptions o = FastOptions();
  o.migration = true;
  o.migration_options.freeness_gap_threshold = 50;
  o.migration_options.cooldown = absl::Seconds(10);
  o.dispatch_policy = "round-robin";
  Cluster c(o);
  // A small worker fills up; a big one joins later and takes some work.
  ClusterWorker* small = c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10), .blocks_total = 100});
  ASSERT_TRUE(c.WaitForWorkers(1));
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] {
      auto r = c.Run(MakeRequest(absl::StrCat("lb", i), 150, 100 + i, 1, 64));
      if (r.status.ok() && r.tokens[0] == Expected(100 + i, 0, 150)) ++ok;
    });
  }
  absl::SleepFor(absl::Milliseconds(300));
  c.AddWorker(FakeWorkerOptions{.step = absl::Milliseconds(10), .blocks_total = 10000});
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok, 4);
  EXPECT_GE(small->fake->migrations_out(), 1);
}

}  // namespace
}  // namespace ferry
