// Worker.ExportPrefix over real gRPC on loopback (an in-process worker on
// stories260K) and PullPrefix against it: a long prefix streams in several
// chunks, each copied when the previous one was written, and installs the
// same as a whole; a partial pull moves only the blocks the puller lacks;
// a puller that goes away mid-export leaves no block referenced.
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/support/channel_arguments.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "engine/engine.h"
#include "engine/service/prefix_pull.h"
#include "engine/service/worker_service.h"
#include "gtest/gtest.h"
#include "kvcache/block_pool.h"
#include "kvcache/shared_pool.h"
#include "tests/integration/engine/greedy_run.h"
#include "tests/integration/engine/shared_model.h"
#include "tests/integration/worker/one_chunk_exporter.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

constexpr int kBlock = 16;

std::vector<int32_t> Prompt(int len, int salt) {
  std::vector<int32_t> ids;
  for (int i = 0; i < len; ++i) ids.push_back(3 + (i * 31 + salt * 17) % 400);
  return ids;
}

using Outcome = testing::GreedyOutcome;

Outcome RunGreedy(Engine& engine, const std::string& id, std::vector<int32_t> prompt) {
  return testing::RunGreedy(engine, id, std::move(prompt), 8);
}

bool Eventually(const std::function<bool()>& ok) {
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (!ok()) {
    if (absl::Now() > end) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// A peer that answers ExportPrefix with 1 MiB chunks until it has sent
// `limit` of them or the call ends.
// An exporter that sends `limit` copies of one chunk (with `header` on the
// first): more than any prefix holds.
class FloodingExporter final : public v1::Worker::CallbackService {
 public:
  FloodingExporter(int limit, std::string header, std::string chunk)
      : limit_(limit), header_(std::move(header)), chunk_(std::move(chunk)) {}
  grpc::ServerWriteReactor<v1::KvChunk>* ExportPrefix(grpc::CallbackServerContext* /*context*/,
                                                      const v1::ExportPrefixRequest* /*request*/) override {
    class Flood final : public grpc::ServerWriteReactor<v1::KvChunk> {
     public:
      Flood(int limit, const std::string& header, const std::string& data, std::atomic<int>* running)
          : left_(limit), running_(running) {
        running_->fetch_add(1);
        chunk_.set_header(header);
        chunk_.set_data(data);
        StartWrite(&chunk_);
      }
      void OnWriteDone(bool ok) override {
        if (!ok || --left_ <= 0) {
          Finish(grpc::Status::OK);
          return;
        }
        chunk_.clear_header();
        StartWrite(&chunk_);
      }
      void OnDone() override {
        std::atomic<int>* running = running_;
        delete this;
        running->fetch_sub(1);
      }

     private:
      v1::KvChunk chunk_;
      int left_;
      std::atomic<int>* running_;
    };
    return new Flood(limit_, header_, chunk_, &running_);
  }
  // Calls whose reactor has not finished (OnDone) yet.
  int running() const { return running_.load(); }

 private:
  int limit_;
  std::string header_;
  std::string chunk_;
  std::atomic<int> running_{0};
};

class PrefixPullStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_LOAD_SHARED_MODEL(model_, "models/stories260K.gguf");
    holder_ = NewEngine();
    puller_ = NewEngine();
    ASSERT_TRUE(holder_ && puller_);
    service_ = std::make_unique<WorkerService>(holder_.get(), WorkerServiceOptions{});
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    address_ = absl::StrCat("127.0.0.1:", port);
    stub_ = v1::Worker::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    prompt_ = Prompt(300, 9);  // 18 full blocks can be pulled
    computed_ = RunGreedy(*holder_, "h", prompt_);
    ASSERT_EQ(computed_.tokens.size(), 8u);
    hashes_ = testing::ChainHashes(*holder_, prompt_, 18, kBlock);
    block_bytes_ = holder_->kv_shape().bytes_per_block();
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }

  std::unique_ptr<Engine> NewEngine() {
    EngineOptions o;
    o.threads = 1;
    auto e = Engine::Create(model_, o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }

  v1::ExportPrefixRequest ExportRequest(int max_blocks_per_chunk) const {
    v1::ExportPrefixRequest r;
    r.mutable_token_ids()->Add(prompt_.begin(), prompt_.begin() + 18 * kBlock);
    for (uint64_t h : hashes_) r.add_block_hashes(h);
    r.set_max_blocks_per_chunk(max_blocks_per_chunk);
    return r;
  }

  bool HolderBlocksUsedIs(int64_t n) const {
    return Eventually([&] { return holder_->Stats().blocks_used == n; });
  }

  std::shared_ptr<const Model> model_;
  std::unique_ptr<Engine> holder_, puller_;
  std::unique_ptr<WorkerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  std::unique_ptr<v1::Worker::Stub> stub_;
  std::vector<int32_t> prompt_;
  std::vector<uint64_t> hashes_;
  Outcome computed_;
  int64_t block_bytes_ = 0;
};

TEST_F(PrefixPullStreamTest, LongPrefixStreamsInSeveralChunksAndInstallsTheSame) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub_->ExportPrefix(&ctx, ExportRequest(4));
  std::string header;
  std::vector<std::pair<int64_t, std::string>> chunks;
  std::vector<int64_t> firsts;
  int lasts = 0;
  v1::KvChunk chunk;
  while (reader->Read(&chunk)) {
    EXPECT_EQ(!chunk.header().empty(), chunks.empty())
        << "the header comes with the first chunk only";
    if (!chunk.header().empty()) header = chunk.header();
    firsts.push_back(chunk.first_block());
    lasts += chunk.last() ? 1 : 0;
    EXPECT_EQ(chunk.num_tokens(), 18 * kBlock);
    const int64_t blocks = std::min<int64_t>(4, 18 - chunk.first_block());
    EXPECT_EQ(static_cast<int64_t>(chunk.data().size()), EncodedBlocksSize(block_bytes_, blocks));
    chunks.emplace_back(chunk.first_block(), std::move(*chunk.mutable_data()));
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(firsts, (std::vector<int64_t>{0, 4, 8, 12, 16}));
  EXPECT_EQ(lasts, 1);
  EXPECT_TRUE(chunks.empty() || firsts.back() == 16);
  EXPECT_TRUE(HolderBlocksUsedIs(0));
  EXPECT_EQ(service_->prefix_pull_stats().exports.load(), 1);
  EXPECT_EQ(service_->prefix_pull_stats().export_blocks.load(), 18);

  auto installed = puller_->InstallCachedPrefix(prompt_, header, std::move(chunks)).get();
  ASSERT_TRUE(installed.ok()) << installed.status();
  EXPECT_EQ(*installed, 18);
  Outcome pulled = RunGreedy(*puller_, "p", prompt_);
  EXPECT_EQ(pulled.tokens, computed_.tokens);
  EXPECT_EQ(pulled.cached_prompt_tokens, 18 * kBlock);
}

TEST_F(PrefixPullStreamTest, PartialPullMovesOnlyTheBlocksThePullerLacks) {
  // The puller computes a prompt that shares the first six blocks.
  std::vector<int32_t> other(prompt_.begin(), prompt_.begin() + 6 * kBlock);
  for (int i = 6 * kBlock; i < 200; ++i) other.push_back(3 + (i * 53 + 7) % 400);
  ASSERT_EQ(RunGreedy(*puller_, "b", other).tokens.size(), 8u);

  v1::PrefixPull pull;
  pull.set_peer_address(address_);
  for (uint64_t h : hashes_) pull.add_block_hashes(h);
  pull.set_first_block(6);
  auto pulled = PullPrefix(*puller_, pull, prompt_, PrefixPullOptions{});
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->blocks_received, 12);
  EXPECT_EQ(pulled->bytes_received,
            EncodedBlocksSize(block_bytes_, 12));  // one chunk of ~2 MiB at most
  EXPECT_EQ(pulled->blocks_cached, 18);
  EXPECT_EQ(service_->prefix_pull_stats().export_blocks.load(), 12);
  EXPECT_TRUE(HolderBlocksUsedIs(0));

  Outcome run = RunGreedy(*puller_, "p", prompt_);
  EXPECT_EQ(run.tokens, computed_.tokens);
  EXPECT_EQ(run.cached_prompt_tokens, 18 * kBlock);

  // Past what the prompt holds: refused before any RPC.
  pull.set_first_block(18);
  EXPECT_EQ(PullPrefix(*puller_, pull, prompt_, PrefixPullOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Holder and puller share a host (one process here), so with a pool cache
// the puller copies the blocks out of the holder's shared KV pool: the
// chunks name blocks and checksums, and the install is the same.
TEST_F(PrefixPullStreamTest, SameHostPullCopiesOutOfTheHoldersSharedPool) {
  ASSERT_TRUE(holder_->shared_kv_pool().has_value());
  MappedPoolCache pools;
  PrefixPullOptions options;
  options.pools = &pools;
  v1::PrefixPull pull;
  pull.set_peer_address(address_);
  for (uint64_t h : hashes_) pull.add_block_hashes(h);
  auto pulled = PullPrefix(*puller_, pull, prompt_, options);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_TRUE(pulled->shared_pool);
  EXPECT_EQ(pulled->blocks_received, 18);
  EXPECT_EQ(pulled->bytes_received, 18 * block_bytes_);
  EXPECT_EQ(pulled->blocks_cached, 18);
  EXPECT_EQ(service_->prefix_pull_stats().export_blocks.load(), 18);
  // Held after the stream until the puller said it had copied the blocks.
  EXPECT_EQ(service_->held_prefix_exports(), 0u);
  EXPECT_TRUE(HolderBlocksUsedIs(0));
  Outcome run = RunGreedy(*puller_, "p", prompt_);
  EXPECT_EQ(run.tokens, computed_.tokens);
  EXPECT_EQ(run.cached_prompt_tokens, 18 * kBlock);

  // A chunk asked for as bytes comes as bytes.
  auto reader_ctx = std::make_unique<grpc::ClientContext>();
  v1::ExportPrefixRequest request = ExportRequest(0);
  request.set_shared_pool_host("another-host/pid:[1]");
  auto reader = stub_->ExportPrefix(reader_ctx.get(), request);
  v1::KvChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  EXPECT_EQ(chunk.pool_blocks_size(), 0);
  EXPECT_FALSE(chunk.data().empty());
  while (reader->Read(&chunk)) {
  }
  EXPECT_TRUE(reader->Finish().ok());

  // Asked for by id: the blocks stay held after the stream, until released.
  grpc::ClientContext pool_ctx;
  request.set_shared_pool_host(SharedPoolHostKey());
  auto pool_reader = stub_->ExportPrefix(&pool_ctx, request);
  ASSERT_TRUE(pool_reader->Read(&chunk));
  EXPECT_EQ(chunk.pool_blocks_size(), 18);
  EXPECT_FALSE(chunk.transfer_id().empty());
  while (pool_reader->Read(&chunk)) {
  }
  EXPECT_TRUE(pool_reader->Finish().ok());
  EXPECT_EQ(service_->held_prefix_exports(), 1u);
  EXPECT_EQ(holder_->Stats().blocks_used, 18);
  grpc::ClientContext release_ctx;
  v1::ReleasePrefixExportRequest release;
  release.set_transfer_id(chunk.transfer_id());
  v1::ReleasePrefixExportResponse released;
  ASSERT_TRUE(stub_->ReleasePrefixExport(&release_ctx, release, &released).ok());
  EXPECT_TRUE(released.held());
  EXPECT_TRUE(HolderBlocksUsedIs(0));
}

// An exporter whose pool does not map here (its reference is stale): the
// puller asks again for bytes.
TEST_F(PrefixPullStreamTest, APoolThatDoesNotMapIsPulledAgainAsBytes) {
  auto exported = holder_->OpenPrefixExport(std::vector<int32_t>(prompt_.begin(), prompt_.begin() + 18 * kBlock),
                                            hashes_).get();
  ASSERT_TRUE(exported.ok()) << exported.status();
  testing::OneChunkExporter exporter([header = (*exported)->header()](const v1::ExportPrefixRequest& request) {
    v1::KvChunk chunk;
    if (request.shared_pool_host().empty()) return chunk;  // nothing for a bytes request
    chunk.set_header(header);
    chunk.add_pool_blocks(0);
    chunk.add_checksums(1);
    v1::SharedKvPool* pool = chunk.mutable_source_pool();
    pool->set_host(SharedPoolHostKey());
    pool->set_pid(getpid());
    pool->set_fd(0);
    pool->set_inode(1);  // not stdin's
    pool->set_size(1 << 20);
    return chunk;
  });
  exported->reset();
  ASSERT_FALSE(exporter.address().empty());
  MappedPoolCache pools;
  PrefixPullOptions options;
  options.pools = &pools;
  v1::PrefixPull pull;
  pull.set_peer_address(exporter.address());
  for (uint64_t h : hashes_) pull.add_block_hashes(h);
  auto pulled = PullPrefix(*puller_, pull, prompt_, options);
  // The second, bytes-only, answer holds nothing: a clean failure.
  EXPECT_EQ(pulled.status().code(), absl::StatusCode::kDataLoss) << pulled.status();
  std::vector<std::string> hosts_asked;
  for (const v1::ExportPrefixRequest& r : exporter.requests()) hosts_asked.push_back(r.shared_pool_host());
  EXPECT_EQ(hosts_asked, (std::vector<std::string>{SharedPoolHostKey(), ""}));
  EXPECT_TRUE(Eventually([&] { return puller_->Stats().blocks_used == 0; })) << puller_->Stats().blocks_used;
}

// A peer that sends far more than the prefix it was asked for is cut off:
// the puller buffers at most about twice the prefix's encoded size (18
// blocks of stories260K here: well under a few MiB), not the 256 MiB sent.
// Chunks are installed as they come, so a peer that sends too much is cut
// off by the byte count (its chunks check out: the same valid block again
// and again), and one that sends garbage at its first chunk.
TEST_F(PrefixPullStreamTest, APeerThatSendsTooMuchIsCutOff) {
  auto exported = holder_->OpenPrefixExport(std::vector<int32_t>(prompt_.begin(), prompt_.begin() + 18 * kBlock),
                                            hashes_).get();
  ASSERT_TRUE(exported.ok()) << exported.status();
  auto block0 = (*exported)->EncodeChunk(0, 1);
  ASSERT_TRUE(block0.ok()) << block0.status();
  const std::string header = (*exported)->header();
  exported->reset();
  for (bool garbage : {false, true}) {
    // 4096 copies of a block: far past the bound (twice the prefix plus 1 MiB).
    FloodingExporter flood(4096, garbage ? "not a header" : header, *block0);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&flood);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    ASSERT_GT(port, 0);
    v1::PrefixPull pull;
    pull.set_peer_address(absl::StrCat("127.0.0.1:", port));
    for (uint64_t h : hashes_) pull.add_block_hashes(h);
    auto pulled = PullPrefix(*puller_, pull, prompt_, PrefixPullOptions{});
    if (garbage) {
      EXPECT_EQ(pulled.status().code(), absl::StatusCode::kInvalidArgument) << pulled.status();
    } else {
      EXPECT_EQ(pulled.status().code(), absl::StatusCode::kDataLoss) << pulled.status();
      EXPECT_NE(pulled.status().message().find("sent more than"), std::string::npos) << pulled.status();
    }
    EXPECT_TRUE(Eventually([&] { return puller_->Stats().blocks_used == 0; })) << puller_->Stats().blocks_used;
    // The cut-off call's reactor finishes on a gRPC thread: the server may
    // go only once it has.
    EXPECT_TRUE(Eventually([&] { return flood.running() == 0; })) << flood.running();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
}

TEST_F(PrefixPullStreamTest, PullerGoneMidExportReleasesEveryBlock) {
  ASSERT_TRUE(HolderBlocksUsedIs(0));
  // A fixed 64 KiB stream window: the exporter can run only about three
  // 20 KB chunks ahead of what this client reads.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 10);
  auto stub = v1::Worker::NewStub(
      grpc::CreateCustomChannel(address_, grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto reader = stub->ExportPrefix(&ctx, ExportRequest(1));
  v1::KvChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  EXPECT_EQ(chunk.first_block(), 0);
  ctx.TryCancel();
  while (reader->Read(&chunk)) {
  }
  const grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED) << st.error_message();
  EXPECT_TRUE(HolderBlocksUsedIs(0)) << holder_->Stats().blocks_used;
  const PrefixPullStats& stats = service_->prefix_pull_stats();
  EXPECT_TRUE(Eventually([&] { return stats.exports.load() + stats.export_failures.load() == 1; }));
  // Chunks are copied one at a time as the stream drains, so cancelling
  // after the first leaves most of them never copied.
  EXPECT_EQ(stats.export_failures.load(), 1);
  EXPECT_LT(stats.export_blocks.load(), 18);
}

}  // namespace
}  // namespace ferry
