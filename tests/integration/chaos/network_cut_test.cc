// The network between two workers is cut in the middle of a KV transfer
// (a live migration), with a network namespace and a veth pair that the
// test makes and removes. Needs root and `ip` (iproute2); skips otherwise.
//
//   root namespace: scheduler (on the veth's host end), worker A, gateway
//   namespace N:    worker B, reachable only over the veth
//
// The veth is throttled (tc tbf) so that the copy of the request's blocks
// takes seconds; the test cuts the link once B holds the reservation (the
// transfer has started) and before the migration commits. Checked: the
// client's stream still completes with the reference text (the request
// stays on A), the migration reports a failure, B is found dead by its
// heartbeat timeout, and once the link is back B registers again, neither
// worker holds a block, and new requests succeed.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <cerrno>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "ferry/v1/scheduler.grpc.pb.h"
#include "ferry/v1/worker.grpc.pb.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster/child_process.h"
#include "tests/integration/gateway/http_util.h"
#include "tests/process_util.h"
#include "tests/test_support.h"

namespace ferry::testing {
namespace {

using Json = nlohmann::json;

constexpr int kMaxTokens = 400;

std::string IpBinary() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (::access(p, X_OK) == 0) return p;
  }
  return "";
}

// A namespace with one end of a veth pair; the other end stays here.
class NetworkNamespace {
 public:
  // Empty on success, else why it could not be made.
  std::string Create() {
    ip_ = IpBinary();
    if (ip_.empty()) return "no `ip` binary (iproute2)";
    RemoveStale();
    const int id = static_cast<int>(::getpid());
    name_ = absl::StrCat("ferrychaos", id);
    host_if_ = absl::StrCat("fch", id);
    ns_if_ = absl::StrCat("fcn", id);
    const int net = static_cast<int>(::getpid() % 250) + 1;
    host_ip_ = absl::StrCat("10.213.", net, ".1");
    ns_ip_ = absl::StrCat("10.213.", net, ".2");
    for (const std::string& cmd : {
             absl::StrCat(ip_, " netns add ", name_),
             absl::StrCat(ip_, " link add ", host_if_, " type veth peer name ", ns_if_),
             absl::StrCat(ip_, " link set ", ns_if_, " netns ", name_),
             absl::StrCat(ip_, " addr add ", host_ip_, "/24 dev ", host_if_),
             absl::StrCat(ip_, " link set ", host_if_, " up"),
             absl::StrCat(ip_, " netns exec ", name_, " ", ip_, " addr add ", ns_ip_, "/24 dev ", ns_if_),
             absl::StrCat(ip_, " netns exec ", name_, " ", ip_, " link set ", ns_if_, " up"),
             absl::StrCat(ip_, " netns exec ", name_, " ", ip_, " link set lo up"),
         }) {
      CommandResult r = RunCommand(cmd, /*merge_stderr=*/true);
      if (r.exit_code != 0) return absl::StrCat("`", cmd, "` failed: ", r.out);
      made_ = true;
    }
    return "";
  }
  ~NetworkNamespace() {
    if (!made_) return;
    // Deleting the namespace deletes its veth end, and with it the pair.
    RunCommand(absl::StrCat(ip_, " netns del ", name_, " 2>/dev/null"));
    RunCommand(absl::StrCat(ip_, " link del ", host_if_, " 2>/dev/null"));
  }

  // Namespaces (and their veth) left by earlier runs of this test that died
  // before their cleanup: named after a process that no longer exists.
  void RemoveStale() {
    CommandResult list = RunCommand(ip_ + " netns list 2>/dev/null");
    for (absl::string_view line : absl::StrSplit(list.out, '\n')) {
      if (!absl::ConsumePrefix(&line, "ferrychaos")) continue;
      int pid = 0;
      if (!absl::SimpleAtoi(line.substr(0, line.find(' ')), &pid) || pid <= 0) continue;
      if (::kill(pid, 0) == 0 || errno != ESRCH) continue;
      RunCommand(absl::StrCat(ip_, " netns del ferrychaos", pid, " 2>/dev/null"));
    }
  }

  bool Run(const std::string& args) {
    CommandResult r = RunCommand(absl::StrCat(ip_, " ", args), true);
    if (r.exit_code != 0) std::printf("ip %s: %s\n", args.c_str(), r.out.c_str());
    return r.exit_code == 0;
  }
  bool Throttle(const std::string& rate) {
    CommandResult r = RunCommand(
        absl::StrCat("tc qdisc add dev ", host_if_, " root tbf rate ", rate, " burst 4kb latency 100ms"), true);
    if (r.exit_code != 0) std::printf("tc: %s\n", r.out.c_str());
    return r.exit_code == 0;
  }
  bool Cut() { return Run(absl::StrCat("link set dev ", host_if_, " down")); }
  bool Restore() { return Run(absl::StrCat("link set dev ", host_if_, " up")); }

  // argv that runs `args` inside the namespace.
  std::vector<std::string> Exec(std::vector<std::string> args) const {
    std::vector<std::string> out = {ip_, "netns", "exec", name_};
    out.insert(out.end(), args.begin(), args.end());
    return out;
  }
  const std::string& host_ip() const { return host_ip_; }
  const std::string& ns_ip() const { return ns_ip_; }

 private:
  std::string ip_, name_, host_if_, ns_if_, host_ip_, ns_ip_;
  bool made_ = false;
};

int64_t BlocksUsed(const std::string& address) {
  auto stub = v1::Worker::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  v1::StatsResponse stats;
  if (!stub->Stats(&ctx, {}, &stats).ok()) return -1;
  return stats.blocks_used();
}

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return done();
}

Json Completion(int max_tokens, bool stream) {
  return Json{{"prompt", "Once upon a time"}, {"max_tokens", max_tokens}, {"temperature", 0},
              {"ignore_eos", true},           {"stream", stream}};
}

TEST(NetworkCutTest, CutBetweenWorkersDuringKvTransferLosesNothing) {
  const std::string model = SharedPath("models/stories260K.gguf");
  if (!std::filesystem::exists(model)) GTEST_SKIP() << model << " is absent";
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to make a network namespace";
  NetworkNamespace net;
  if (std::string why = net.Create(); !why.empty()) GTEST_SKIP() << "no network namespace: " << why;

  // Scheduler on the veth's host end: both namespaces reach it.
  const std::string sched_pf = TempPath("cut_sched.port");
  std::remove(sched_pf.c_str());
  Process scheduler({FerryBinary(), "scheduler", "--listen", net.host_ip() + ":0", "--port-file", sched_pf,
                     "--worker-timeout", "1s", "--migration", "off", "--log-level", "warn"});
  const int sched_port = WaitForPort(sched_pf, absl::Seconds(20));
  ASSERT_GT(sched_port, 0);
  const std::string sched = absl::StrCat(net.host_ip(), ":", sched_port);
  auto stub = v1::Scheduler::NewStub(grpc::CreateChannel(sched, grpc::InsecureChannelCredentials()));
  auto all_workers = [&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::ListWorkersResponse list;
    if (!stub->ListWorkers(&ctx, {}, &list).ok()) return v1::ListWorkersResponse();
    return list;
  };
  auto alive_workers = [&] {
    const v1::ListWorkersResponse list = all_workers();
    v1::ListWorkersResponse alive;
    for (const auto& w : list.workers()) {
      if (w.alive()) *alive.add_workers() = w;
    }
    return alive;
  };

  // Worker A here first, so that the request starts on it. Both workers
  // share this host, so A's KV cache stays private: the blocks must cross
  // the throttled link, not shared memory.
  const std::string a_pf = TempPath("cut_worker_a.port");
  std::remove(a_pf.c_str());
  Process worker_a({FerryBinary(), "worker", "--model", model, "--listen", "127.0.0.1:0", "--port-file", a_pf,
                    "--scheduler", sched, "--threads", "1", "--log-level", "warn", "--no-shared-kv-pool"});
  const int a_port = WaitForPort(a_pf);
  ASSERT_GT(a_port, 0);
  const std::string a_address = absl::StrCat("127.0.0.1:", a_port);
  ASSERT_TRUE(WaitFor([&] { return alive_workers().workers_size() == 1; }, absl::Seconds(10)));

  const std::string gw_pf = TempPath("cut_gateway.port");
  std::remove(gw_pf.c_str());
  Process gateway({FerryBinary(), "gateway", "--scheduler", sched, "--model", model, "--listen", "127.0.0.1:0",
                   "--port-file", gw_pf, "--log-level", "warn"});
  const int gw_port = WaitForPort(gw_pf);
  ASSERT_GT(gw_port, 0);
  HttpResult ref = PostJson(gw_port, "/v1/completions", Completion(kMaxTokens, false));
  ASSERT_EQ(ref.status, 200) << ref.body;
  const std::string reference = Json::parse(ref.body)["choices"][0]["text"];

  // Worker B inside the namespace starts once the request runs on A (the
  // only worker then), so that the request is A's whatever the dispatch.
  // It starts from this thread: a child dies with the thread that started
  // it (PR_SET_PDEATHSIG).
  std::optional<Process> worker_b;
  std::string b_address;
  std::string b_failed;  // why B could not be set up
  // A runs a seventh of the time, so the request outlasts the copy's start;
  // a twenty-sixth while B starts, which can take seconds on a loaded
  // machine. Its heartbeats (every 50 ms) still arrive.
  std::atomic<int> a_stopped_ms{60};
  auto start_b = [&] {
    a_stopped_ms = 250;
    absl::Cleanup back = [&] { a_stopped_ms = 60; };
    const std::string b_pf = TempPath("cut_worker_b.port");
    std::remove(b_pf.c_str());
    worker_b.emplace(net.Exec({FerryBinary(), "worker", "--model", model, "--listen",
                               net.ns_ip() + ":0", "--port-file", b_pf, "--scheduler", sched,
                               "--threads", "1", "--log-level", "warn", "--attach-timeout", "10"}));
    const int b_port = WaitForPort(b_pf);
    if (b_port <= 0) return b_failed = "the worker in the namespace did not start", false;
    b_address = absl::StrCat(net.ns_ip(), ":", b_port);
    if (!WaitFor([&] { return alive_workers().workers_size() == 2; }, absl::Seconds(10))) {
      return b_failed = "the worker in the namespace did not register", false;
    }
    // The copy to B now takes seconds.
    if (!net.Throttle("200kbit")) return b_failed = "cannot throttle the link", false;
    return true;
  };

  std::atomic<bool> stop_slowing{false};
  std::thread slower([&] {
    while (!stop_slowing) {
      worker_a.Signal(SIGSTOP);
      absl::SleepFor(absl::Milliseconds(a_stopped_ms.load()));
      worker_a.Signal(SIGCONT);
      absl::SleepFor(absl::Milliseconds(10));
    }
    worker_a.Signal(SIGCONT);
  });

  std::atomic<bool> migrate_done{false};
  v1::MigrateResponse migrate_answer;
  std::string migrate_rpc_error;
  absl::Time cut_at = absl::InfiniteFuture();
  absl::Duration migrate_answered_after = absl::InfiniteDuration();
  bool cut_mid_transfer = false;
  std::string chaos_failed;  // why the cut was not tried
  // Once tokens flow: move the request to B, and cut the link as soon as B
  // holds the reservation (the transfer has begun).
  absl::Notification streaming;
  // The streamed completion's id: its request on A is "<id>-0". A's
  // heartbeats can still list the reference request, finished while A was
  // stopped, so the first id A reports is not necessarily this one.
  std::string stream_request_id;
  std::thread chaos([&] {
    if (!streaming.WaitForNotificationWithTimeout(absl::Seconds(60))) return;
    if (b_address.empty()) return;
    // A, stopped most of the time, reports its request late (and on a
    // loaded machine may even miss a heartbeat): wait for it.
    std::string request_id;
    WaitFor(
        [&] {
          const v1::ListWorkersResponse all = all_workers();
          for (const auto& w : all.workers()) {
            if (w.address() != a_address) continue;
            for (const std::string& id : w.request_ids()) {
              if (id == stream_request_id) request_id = id;
            }
          }
          return !request_id.empty();
        },
        absl::Seconds(20));
    if (request_id.empty()) {
      chaos_failed = "worker A never reported the request";
      return;
    }
    // The mover only notes when the answer came: cut_at belongs to this
    // thread, which may set it while the call is in flight.
    absl::Time answered_at = absl::InfiniteFuture();
    std::thread mover([&] {
      v1::MigrateRequest req;
      req.set_request_id(request_id);
      req.set_destination_worker_id(b_address);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
      grpc::Status st = stub->Migrate(&ctx, req, &migrate_answer);
      if (!st.ok()) migrate_rpc_error = st.error_message();
      answered_at = absl::Now();
      migrate_done = true;
    });
    const bool reserved =
        WaitFor([&] { return BlocksUsed(b_address) > 0 || migrate_done; }, absl::Seconds(20));
    if (reserved && !migrate_done) {
      cut_at = absl::Now();
      cut_mid_transfer = net.Cut();
      if (!cut_mid_transfer) chaos_failed = "cannot cut the link";
    } else {
      chaos_failed = reserved ? "the migration ended before the cut" : "worker B never reserved blocks";
    }
    mover.join();
    if (cut_at != absl::InfiniteFuture()) migrate_answered_after = answered_at - cut_at;
  });
  StreamResult streamed =
      PostStream(gw_port, "/v1/completions", Completion(kMaxTokens, true),
                 [&](const std::string& payload, size_t index) {
                   if (index == 0) {
                     const Json chunk = Json::parse(payload, nullptr, /*allow_exceptions=*/false);
                     if (chunk.is_object() && chunk.contains("id") && chunk["id"].is_string()) {
                       stream_request_id = chunk["id"].get<std::string>() + "-0";
                     }
                   }
                   if (index == 8) {
                     start_b();
                     streaming.Notify();
                   }
                   return true;
                 });
  const absl::Time stream_ended = absl::Now();
  if (!streaming.HasBeenNotified()) streaming.Notify();
  chaos.join();
  stop_slowing = true;
  slower.join();

  ASSERT_TRUE(b_failed.empty()) << b_failed;
  ASSERT_FALSE(b_address.empty()) << "the request was not running on worker A";
  ASSERT_TRUE(cut_mid_transfer) << "the cut did not land inside the transfer: " << chaos_failed << " (migration answered: "
                                << migrate_answer.ShortDebugString() << " " << migrate_rpc_error << ")";
  std::printf("migration answered %s after the cut: %s %s\n", absl::FormatDuration(migrate_answered_after).c_str(),
              migrate_answer.ShortDebugString().c_str(), migrate_rpc_error.c_str());
  EXPECT_FALSE(migrate_answer.ok()) << "a migration over a cut link cannot have committed";
  // Keepalive on the transfer's link finds the cut within seconds (before:
  // only the 30 s RPC deadline did, and a request paused for the last stage
  // stalled that long).
  EXPECT_LT(migrate_answered_after, absl::Seconds(10));
  std::printf("the client's stream ended %s after the cut\n", absl::FormatDuration(stream_ended - cut_at).c_str());

  // The client saw nothing of it: the full text, no error.
  EXPECT_EQ(streamed.status, 200);
  std::string text, error;
  bool done = false;
  for (const std::string& e : streamed.events) {
    if (e == "[DONE]") {
      done = true;
      continue;
    }
    Json j = Json::parse(e, nullptr, false);
    if (j.is_discarded()) continue;
    if (j.contains("error")) error = j["error"].value("message", "");
    if (j.contains("choices") && !j["choices"].empty()) text += j["choices"][0].value("text", "");
  }
  EXPECT_TRUE(done);
  EXPECT_TRUE(error.empty()) << error;
  EXPECT_EQ(text, reference);

  // B is dead to the scheduler while cut off.
  EXPECT_TRUE(WaitFor([&] { return alive_workers().workers_size() == 1; }, absl::Seconds(10)));
  EXPECT_TRUE(WaitFor([&] { return BlocksUsed(a_address) == 0; }, absl::Seconds(10)));

  // Link back: B registers again and frees the reservation of the dead transfer.
  ASSERT_TRUE(net.Restore());
  const absl::Time restored = absl::Now();
  EXPECT_TRUE(WaitFor([&] { return alive_workers().workers_size() == 2; }, absl::Seconds(15)));
  std::printf("worker B alive again %s after the link came back\n",
              absl::FormatDuration(absl::Now() - restored).c_str());
  // A cut inside the transfer's rounds leaves a reservation (freed when it
  // expires); one that lands in the final stage leaves the imported
  // sequence waiting to be attached, freed by B's attach timeout (10 s
  // here). Where the cut lands depends on the machine's load.
  EXPECT_TRUE(WaitFor([&] { return BlocksUsed(b_address) == 0; }, absl::Seconds(25)))
      << "worker B still holds " << BlocksUsed(b_address) << " blocks";
  EXPECT_EQ(BlocksUsed(a_address), 0);

  // New requests succeed (within 10 s), on either worker.
  const absl::Time start = absl::Now();
  int ok = 0;
  while (ok < 4 && absl::Now() - start < absl::Seconds(10)) {
    HttpResult r = PostJson(gw_port, "/v1/completions", Completion(32, false));
    if (r.status == 200) {
      const std::string t = Json::parse(r.body)["choices"][0]["text"];
      EXPECT_EQ(t, reference.substr(0, t.size()));
      ++ok;
    } else {
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  EXPECT_EQ(ok, 4);
}

}  // namespace
}  // namespace ferry::testing
