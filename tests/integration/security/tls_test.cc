// TLS end to end, on 127.0.0.1 only, with certificates made by
// deploy/tls/make-certs.sh in the test's temp dir:
//   - `ferry gateway --tls-cert/--tls-key` serves HTTPS: a client trusting
//     the CA gets 200 on /health, a plain-HTTP client gets nothing;
//   - with --mtls-* a worker (and the scheduler) refuse RPCs from a peer
//     with no client certificate, with one from another CA, or in
//     plaintext, and answer one with a certificate from the cluster's CA;
//   - scheduler + worker + gateway all on mutual TLS serve a completion, and
//     a running stream moves between two workers (worker-to-worker mTLS).
#include <grpcpp/grpcpp.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/grpc_credentials.h"
#include "ferry/v1/scheduler.grpc.pb.h"
#include "ferry/v1/worker.grpc.pb.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster/child_process.h"
#include "tests/integration/gateway/http_util.h"
#include "tests/process_util.h"
#include "tests/test_support.h"

namespace ferry::testing {
namespace {

using Json = nlohmann::json;

// Long enough that a move lands mid-stream (stories260K: 512 positions).
constexpr int kLongTokens = 400;

// The cluster's certificates, and a second CA's (a stranger's).
struct Certs {
  std::string dir;
  std::string ca() const { return dir + "/ca.pem"; }
  std::string server_cert() const { return dir + "/server.pem"; }
  std::string server_key() const { return dir + "/server-key.pem"; }
  std::string client_cert() const { return dir + "/client.pem"; }
  std::string client_key() const { return dir + "/client-key.pem"; }
  GrpcTlsFiles ClientFiles() const { return {ca(), client_cert(), client_key()}; }
  std::vector<std::string> ServerFlags() const {
    return {"--mtls-ca", ca(), "--mtls-cert", server_cert(), "--mtls-key", server_key()};
  }
  std::vector<std::string> ClientFlags() const {
    return {"--mtls-ca", ca(), "--mtls-cert", client_cert(), "--mtls-key", client_key()};
  }
};

Certs MakeCerts(const std::string& name) {
  Certs c{TempPath(name)};
  std::filesystem::remove_all(c.dir);
  const CommandResult r = RunCommand(
      absl::StrCat(FERRY_SOURCE_DIR, "/deploy/tls/make-certs.sh ", c.dir), /*merge_stderr=*/true);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  return c;
}

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A ferry role started with --port-file; the port it bound.
struct Role {
  std::unique_ptr<Process> process;
  int port = 0;
  std::string address() const { return absl::StrCat("127.0.0.1:", port); }
};

Role Start(const std::string& name, std::vector<std::string> args) {
  const std::string pf = TempPath(name + ".port");
  std::remove(pf.c_str());
  args.insert(args.begin(), FerryBinary());
  args.insert(args.end(), {"--port-file", pf, "--log-level", "warn"});
  Role r;
  r.process = std::make_unique<Process>(args);
  r.port = WaitForPort(pf);
  return r;
}

grpc::Status CallStats(const std::string& address,
                       std::shared_ptr<grpc::ChannelCredentials> creds) {
  auto stub = v1::Worker::NewStub(grpc::CreateChannel(address, creds));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::StatsResponse response;
  return stub->Stats(&ctx, v1::StatsRequest(), &response);
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_ = new Certs(MakeCerts("certs"));
    stranger_ = new Certs(MakeCerts("stranger_certs"));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(certs_->dir);
    std::filesystem::remove_all(stranger_->dir);
    delete certs_;
    delete stranger_;
  }
  void SetUp() override {
    model_ = SharedPath("models/stories260K.gguf");
    if (!std::filesystem::exists(model_)) GTEST_SKIP() << model_ << " is absent";
    ASSERT_TRUE(std::filesystem::exists(certs_->server_cert())) << "make-certs.sh failed";
  }

  Role StartWorker(const std::string& name, std::vector<std::string> extra = {}) {
    return Start(
        name,
        Concat({"worker", "--model", model_, "--listen", "127.0.0.1:0", "--threads", "1"}, extra));
  }

  static Certs* certs_;
  static Certs* stranger_;
  std::string model_;
};

Certs* TlsTest::certs_ = nullptr;
Certs* TlsTest::stranger_ = nullptr;

TEST(GrpcCredentialsTest, NeedsAllThreeReadableFiles) {
  EXPECT_TRUE(MakeServerCredentials({}).ok());
  EXPECT_TRUE(MakeChannelCredentials({}).ok());
  EXPECT_EQ(MakeServerCredentials({"/ca.pem", "", ""}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MakeChannelCredentials({"", "/c.pem", "/k.pem"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      MakeChannelCredentials({"/nonexistent/ca.pem", "/nonexistent/c.pem", "/nonexistent/k.pem"})
          .status()
          .code(),
      absl::StatusCode::kNotFound);
  // The files are read again at most once a second.
  EXPECT_EQ(MakeServerCredentials({"/ca.pem", "/c.pem", "/k.pem", absl::Milliseconds(500)}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsTest, GatewayServesHttpsAndRefusesPlainHttp) {
  Role worker = StartWorker("https_worker");
  ASSERT_GT(worker.port, 0) << "ferry worker did not start";
  Role gateway = Start("https_gateway", {"gateway", "--worker", worker.address(), "--model", model_,
                                         "--listen", "127.0.0.1:0", "--tls-cert",
                                         certs_->server_cert(), "--tls-key", certs_->server_key()});
  ASSERT_GT(gateway.port, 0) << "ferry gateway did not start";

  httplib::SSLClient https("127.0.0.1", gateway.port);
  https.set_ca_cert_path(certs_->ca().c_str());
  https.enable_server_certificate_verification(true);
  https.set_connection_timeout(5, 0);
  auto res = https.Get("/health");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->body.find("ok"), std::string::npos);

  // A client that does not trust the CA does not get through.
  httplib::SSLClient untrusting("127.0.0.1", gateway.port);
  untrusting.set_ca_cert_path(stranger_->ca().c_str());
  untrusting.enable_server_certificate_verification(true);
  untrusting.set_connection_timeout(5, 0);
  EXPECT_FALSE(untrusting.Get("/health"));

  httplib::Client plain("127.0.0.1", gateway.port);
  plain.set_connection_timeout(5, 0);
  plain.set_read_timeout(5, 0);
  auto plain_res = plain.Get("/health");
  EXPECT_TRUE(!plain_res || plain_res->status != 200);
}

TEST_F(TlsTest, ServeTakesTheSameHttpsFlags) {
  Role serve = Start("https_serve",
                     {"serve", "--model", model_, "--port", "0", "--threads", "1", "--tls-cert",
                      certs_->server_cert(), "--tls-key", certs_->server_key()});
  ASSERT_GT(serve.port, 0) << "ferry serve did not start";
  httplib::SSLClient https("localhost", serve.port);
  https.set_ca_cert_path(certs_->ca());
  https.enable_server_certificate_verification(true);
  https.set_read_timeout(60, 0);
  const Json body{{"prompt", "Once upon a time"}, {"max_tokens", 4}, {"ignore_eos", true}};
  auto res = https.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200) << res->body;
}

TEST_F(TlsTest, GatewayRejectsBadTlsFlags) {
  const CommandResult r =
      RunCommand(absl::StrCat(FerryBinary(), " gateway --worker 127.0.0.1:1 --model ", model_,
                              " --listen 127.0.0.1:0 --tls-cert ", certs_->server_cert(),
                              " --tls-key ", certs_->client_key()),
                 /*merge_stderr=*/true);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("TLS"), std::string::npos) << r.out;
  const CommandResult partial =
      RunCommand(absl::StrCat(FerryBinary(), " worker --model ", model_,
                              " --listen 127.0.0.1:0 --mtls-ca ", certs_->ca()),
                 /*merge_stderr=*/true);
  EXPECT_EQ(partial.exit_code, 2) << partial.out;
  EXPECT_NE(partial.out.find("--mtls-cert"), std::string::npos) << partial.out;
}

TEST_F(TlsTest, WorkerRefusesPeersWithoutAValidClientCertificate) {
  Role worker = StartWorker("mtls_worker", certs_->ServerFlags());
  ASSERT_GT(worker.port, 0) << "ferry worker did not start";

  // Plaintext.
  EXPECT_FALSE(CallStats(worker.address(), grpc::InsecureChannelCredentials()).ok());
  // TLS trusting the CA, but no client certificate.
  grpc::SslCredentialsOptions no_cert;
  no_cert.pem_root_certs = ReadAll(certs_->ca());
  grpc::Status s = CallStats(worker.address(), grpc::SslCredentials(no_cert));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  // A client certificate from another CA.
  grpc::SslCredentialsOptions stranger;
  stranger.pem_root_certs = ReadAll(certs_->ca());
  stranger.pem_cert_chain = ReadAll(stranger_->client_cert());
  stranger.pem_private_key = ReadAll(stranger_->client_key());
  s = CallStats(worker.address(), grpc::SslCredentials(stranger));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();

  // The cluster's client certificate.
  auto good = MakeChannelCredentials(certs_->ClientFiles());
  ASSERT_TRUE(good.ok()) << good.status();
  s = CallStats(worker.address(), *good);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// Waits up to 10 s for an HTTPS GET /metrics to answer; the response.
httplib::Result ScrapeTls(int port, const Certs& trust, const Certs* client) {
  for (int i = 0;; ++i) {
    std::unique_ptr<httplib::SSLClient> c =
        client == nullptr ? std::make_unique<httplib::SSLClient>("127.0.0.1", port)
                          : std::make_unique<httplib::SSLClient>("127.0.0.1", port, client->client_cert(),
                                                                 client->client_key());
    c->set_ca_cert_path(trust.ca());
    c->enable_server_certificate_verification(true);
    c->set_connection_timeout(2, 0);
    c->set_read_timeout(5, 0);
    httplib::Result res = c->Get("/metrics");
    if (res || res.error() != httplib::Error::Connection || i == 99) return res;
    absl::SleepFor(absl::Milliseconds(100));
  }
}

TEST_F(TlsTest, MetricsOverTlsAnswerOnlyClusterCertificates) {
  // A refused handshake can close the socket under a TLS write: the write
  // must fail, not raise SIGPIPE in the test process.
  std::signal(SIGPIPE, SIG_IGN);
  const int metrics_port = FreePort();
  Role worker = StartWorker("metrics_tls_worker",
                            Concat(certs_->ServerFlags(), {"--metrics-port", absl::StrCat(metrics_port),
                                                           "--metrics-tls"}));
  ASSERT_GT(worker.port, 0) << "ferry worker did not start";
  // A scraper with the cluster's client certificate reads the metrics.
  httplib::Result ok = ScrapeTls(metrics_port, *certs_, certs_);
  ASSERT_TRUE(ok) << httplib::to_string(ok.error());
  EXPECT_EQ(ok->status, 200);
  EXPECT_NE(ok->body.find("ferry_kv_blocks_total"), std::string::npos) << ok->body.substr(0, 400);
  // No client certificate, or one from another CA: refused in the handshake.
  EXPECT_FALSE(ScrapeTls(metrics_port, *certs_, nullptr));
  EXPECT_FALSE(ScrapeTls(metrics_port, *certs_, stranger_));
  // Plain HTTP gets nothing.
  httplib::Client plain("127.0.0.1", metrics_port);
  plain.set_connection_timeout(2, 0);
  plain.set_read_timeout(2, 0);
  auto plain_res = plain.Get("/metrics");
  EXPECT_TRUE(!plain_res || plain_res->status != 200);
}

// Replaces `to` with a copy of `from` in one rename, as a Kubernetes secret
// volume's update is seen: never half written.
void ReplaceFile(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".tmp";
  std::filesystem::copy_file(from, tmp, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(tmp, to);
}

// Polls `ok` for up to 15 s.
bool Eventually(const std::function<bool()>& ok) {
  const absl::Time end = absl::Now() + absl::Seconds(15);
  while (absl::Now() < end) {
    if (ok()) return true;
    absl::SleepFor(absl::Milliseconds(200));
  }
  return ok();
}

bool HttpsHealthOk(int port, const std::string& ca) {
  httplib::SSLClient c("127.0.0.1", port);
  c.set_ca_cert_path(ca.c_str());
  c.enable_server_certificate_verification(true);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(5, 0);
  auto res = c.Get("/health");
  return res && res->status == 200;
}

// Certificates rotate under running processes: the HTTPS front and a
// worker's mutual TLS both pick up new files (here: another CA's, so the
// switch is visible) within their reload interval, without a restart; a
// rotation that does not load (a key that does not match) keeps the last
// good certificate in service.
TEST_F(TlsTest, RotatedCertificatesAreServedWithoutARestart) {
  const std::string dir = TempPath("rotating_certs");
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string ca = dir + "/ca.pem", cert = dir + "/server.pem", key = dir + "/server-key.pem";
  ReplaceFile(certs_->ca(), ca);
  ReplaceFile(certs_->server_cert(), cert);
  ReplaceFile(certs_->server_key(), key);

  Role serve = Start("rotating_serve", {"serve", "--model", model_, "--port", "0", "--threads", "1",
                                        "--tls-cert", cert, "--tls-key", key, "--tls-reload-interval", "0s"});
  ASSERT_GT(serve.port, 0) << "ferry serve did not start";
  Role worker = StartWorker("rotating_worker", {"--mtls-ca", ca, "--mtls-cert", cert, "--mtls-key", key,
                                                "--mtls-reload-interval", "1s"});
  ASSERT_GT(worker.port, 0) << "ferry worker did not start";
  auto grpc_ok = [&](const Certs& client) {
    auto creds = MakeChannelCredentials(client.ClientFiles());
    return creds.ok() && CallStats(worker.address(), *creds).ok();
  };
  EXPECT_TRUE(HttpsHealthOk(serve.port, certs_->ca()));
  EXPECT_FALSE(HttpsHealthOk(serve.port, stranger_->ca()));
  EXPECT_TRUE(grpc_ok(*certs_));
  EXPECT_FALSE(grpc_ok(*stranger_));

  // Rotate everything to the other CA's files.
  ReplaceFile(stranger_->ca(), ca);
  ReplaceFile(stranger_->server_key(), key);
  ReplaceFile(stranger_->server_cert(), cert);
  EXPECT_TRUE(Eventually([&] { return HttpsHealthOk(serve.port, stranger_->ca()); }));
  EXPECT_FALSE(HttpsHealthOk(serve.port, certs_->ca()));
  EXPECT_TRUE(Eventually([&] { return grpc_ok(*stranger_); }));
  EXPECT_FALSE(grpc_ok(*certs_));

  // A certificate whose key does not match: the last good one stays.
  ReplaceFile(certs_->server_cert(), cert);
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_TRUE(HttpsHealthOk(serve.port, stranger_->ca()));
  EXPECT_TRUE(serve.process->Running());
  std::filesystem::remove_all(dir);
}

TEST_F(TlsTest, MetricsTlsNeedsTheMutualTlsFiles) {
  const CommandResult r = RunCommand(
      absl::StrCat(FerryBinary(), " worker --model ", model_,
                   " --listen 127.0.0.1:0 --metrics-port 1 --metrics-tls"),
      /*merge_stderr=*/true);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--metrics-tls"), std::string::npos) << r.out;
  const CommandResult s = RunCommand(
      absl::StrCat(FerryBinary(), " scheduler --listen 127.0.0.1:0 --metrics-tls"), /*merge_stderr=*/true);
  EXPECT_EQ(s.exit_code, 2) << s.out;
  EXPECT_NE(s.out.find("--metrics-tls"), std::string::npos) << s.out;
}

TEST_F(TlsTest, ClusterServesEndToEndOnMutualTls) {
  Role scheduler =
      Start("mtls_sched", Concat({"scheduler", "--listen", "127.0.0.1:0", "--worker-timeout", "1s"},
                                 certs_->ServerFlags()));
  ASSERT_GT(scheduler.port, 0) << "ferry scheduler did not start";
  Role worker = StartWorker("mtls_cluster_worker",
                            Concat({"--scheduler", scheduler.address()}, certs_->ServerFlags()));
  ASSERT_GT(worker.port, 0) << "ferry worker did not start";

  // The worker registers over mTLS; a plaintext client cannot list workers.
  auto good = MakeChannelCredentials(certs_->ClientFiles());
  ASSERT_TRUE(good.ok()) << good.status();
  auto stub = v1::Scheduler::NewStub(grpc::CreateChannel(scheduler.address(), *good));
  auto plain = v1::Scheduler::NewStub(
      grpc::CreateChannel(scheduler.address(), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    v1::ListWorkersResponse list;
    EXPECT_FALSE(plain->ListWorkers(&ctx, {}, &list).ok());
  }
  bool registered = false;
  for (const absl::Time end = absl::Now() + absl::Seconds(15); !registered && absl::Now() < end;) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    v1::ListWorkersResponse list;
    if (stub->ListWorkers(&ctx, {}, &list).ok()) {
      for (const auto& w : list.workers()) registered = registered || w.alive();
    }
    if (!registered) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(registered) << "the worker did not register with the scheduler over mTLS";

  Role gateway =
      Start("mtls_gateway", Concat({"gateway", "--scheduler", scheduler.address(), "--model",
                                    model_, "--listen", "127.0.0.1:0", "--tls-cert",
                                    certs_->server_cert(), "--tls-key", certs_->server_key()},
                                   certs_->ClientFlags()));
  ASSERT_GT(gateway.port, 0) << "ferry gateway did not start";
  httplib::SSLClient https("127.0.0.1", gateway.port);
  https.set_ca_cert_path(certs_->ca().c_str());
  https.enable_server_certificate_verification(true);
  https.set_read_timeout(60, 0);
  const Json body{
      {"prompt", "Once upon a time"}, {"max_tokens", 8}, {"temperature", 0}, {"ignore_eos", true}};
  auto res = https.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  ASSERT_EQ(res->status, 200) << res->body;
  const Json j = Json::parse(res->body);
  EXPECT_FALSE(j["choices"][0]["text"].get<std::string>().empty()) << res->body;
  EXPECT_EQ(j["usage"]["completion_tokens"], 8) << res->body;
}

// Live migration opens worker-to-worker channels (ReserveKv, ReceiveKv):
// with mTLS on they present the worker's certificate too.
TEST_F(TlsTest, StreamMovesBetweenWorkersOnMutualTls) {
  Role scheduler =
      Start("mig_sched", Concat({"scheduler", "--listen", "127.0.0.1:0", "--migration", "off"},
                                certs_->ServerFlags()));
  ASSERT_GT(scheduler.port, 0) << "ferry scheduler did not start";
  std::vector<Role> workers;
  for (int i = 0; i < 2; ++i) {
    workers.push_back(
        StartWorker(absl::StrCat("mig_worker", i),
                    Concat({"--scheduler", scheduler.address()}, certs_->ServerFlags())));
    ASSERT_GT(workers.back().port, 0) << "ferry worker did not start";
  }
  constexpr char kAdmin[] = "admin-secret";
  Role gateway =
      Start("mig_gateway", Concat({"gateway", "--scheduler", scheduler.address(), "--model", model_,
                                   "--listen", "127.0.0.1:0", "--admin-key", kAdmin},
                                  certs_->ClientFlags()));
  ASSERT_GT(gateway.port, 0) << "ferry gateway did not start";
  const httplib::Headers admin = {{"Authorization", std::string("Bearer ") + kAdmin}};
  auto cluster = [&] {
    HttpResult r = HttpCall(gateway.port, "GET", "/admin/cluster", "", admin);
    return Json::parse(r.status == 200 ? r.body : "{}");
  };
  std::vector<std::string> ids;
  for (const absl::Time end = absl::Now() + absl::Seconds(15); absl::Now() < end;) {
    Json c = cluster();
    if (c.value("num_workers_alive", 0) == 2) {
      for (const Json& w : c["workers"]) ids.push_back(w["id"]);
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(ids.size(), 2u) << "the workers did not register over mTLS";

  auto completion = [](bool stream) {
    return Json{{"prompt", "Once upon a time"},
                {"max_tokens", kLongTokens},
                {"temperature", 0},
                {"ignore_eos", true},
                {"stream", stream}};
  };
  HttpResult reference = PostJson(gateway.port, "/v1/completions", completion(false));
  ASSERT_EQ(reference.status, 200) << reference.body;
  const std::string want = Json::parse(reference.body)["choices"][0]["text"];

  // A loaded machine may finish the stream before the move lands: try again.
  std::atomic<bool> moved{false};
  std::string move_answer;
  StreamResult streamed;
  for (int attempt = 0; attempt < 3 && !moved; ++attempt) {
    std::thread mover;
    streamed = PostStream(
        gateway.port, "/v1/completions", completion(true), [&](const std::string&, size_t index) {
          if (index != 4 || mover.joinable()) return true;
          mover = std::thread([&] {
            const Json c = cluster();
            move_answer = "no running request in " + c.dump();
            for (const Json& w : c["workers"]) {
              if (w["requests"].empty()) continue;
              const std::string to = w["id"] == ids[0] ? ids[1] : ids[0];
              HttpResult r =
                  HttpCall(gateway.port, "POST", "/admin/migrate",
                           Json{{"request_id", w["requests"][0]}, {"to", to}}.dump(), admin);
              move_answer = r.body;
              moved = r.status == 200;
            }
          });
          return true;
        });
    if (mover.joinable()) mover.join();
    ASSERT_EQ(streamed.status, 200);
  }
  EXPECT_TRUE(moved.load()) << move_answer;
  std::string got;
  for (const std::string& e : streamed.events) {
    Json j = Json::parse(e, nullptr, false);
    if (j.is_discarded() || !j.contains("choices") || j["choices"].empty()) continue;
    got += j["choices"][0].value("text", "");
  }
  EXPECT_EQ(got, want);
}

TEST_F(TlsTest, GatewayWithoutClientCertificateCannotReachAnMtlsCluster) {
  Role worker = StartWorker("mtls_lonely_worker", certs_->ServerFlags());
  ASSERT_GT(worker.port, 0) << "ferry worker did not start";
  Role gateway = Start("plain_gateway", {"gateway", "--worker", worker.address(), "--model", model_,
                                         "--listen", "127.0.0.1:0"});
  ASSERT_GT(gateway.port, 0) << "ferry gateway did not start";
  httplib::Client cli("127.0.0.1", gateway.port);
  cli.set_read_timeout(30, 0);
  const Json body{{"prompt", "Once upon a time"}, {"max_tokens", 4}};
  auto res = cli.Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_GE(res->status, 500) << res->body;
}

}  // namespace
}  // namespace ferry::testing
