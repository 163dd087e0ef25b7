// The cuda backend against the cpu backend on a real trained model
// (stories260K): logits of whole steps, greedy tokens, and the engine's step
// loop on the GPU. Skipped without a CUDA device (or without ../shared).
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cuda/api.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

// The snapshot's blocks as one chunk, as a sender would send them.
std::string Payload(const Engine::MigrationSnapshot& snap) {
  absl::StatusOr<std::string> chunk = snap.blocks->EncodeChunk(snap.first_block, snap.num_blocks);
  EXPECT_TRUE(chunk.ok()) << chunk.status();
  return chunk.ok() ? *chunk : std::string();
}

class CudaEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device is visible; skipping";
    FERRY_REQUIRE_SHARED(path, "models/stories260K.gguf");
    auto m = Model::Load(path, LoadOptions{.progress = false});
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::shared_ptr<const Model>(std::move(*m));
  }

  std::unique_ptr<ForwardBackend> Backend(const std::string& device, const std::string& dtype) {
    EngineOptions o;
    o.device = device;
    o.dtype = dtype;
    o.max_model_len = 512;
    o.max_num_batched_tokens = 512;
    o.max_num_seqs = 16;
    absl::StatusOr<std::unique_ptr<ForwardBackend>> b =
        device == "cpu" ? CreateCpuBackend(*model_, pool_, o, int64_t{64} << 20) : CreateCudaBackend(*model_, o);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? std::move(*b) : nullptr;
  }

  // Greedy decoding of one sequence through a backend, its blocks in
  // reverse order so the block table matters. Records each step's logits.
  std::vector<int32_t> Greedy(ForwardBackend& be, const std::vector<int32_t>& prompt, int steps,
                              std::vector<std::vector<float>>* logits_per_step) {
    const int bs = be.kv_shape().block_size;
    const int total = static_cast<int>(prompt.size()) + steps;
    const int nblocks = (total + bs - 1) / bs;
    std::vector<int32_t> indices(nblocks);
    std::iota(indices.rbegin(), indices.rend(), 1);
    std::vector<int32_t> seq = prompt, out;
    const int vocab = model_->config().vocab_size;
    std::vector<float> logits(vocab);
    int computed = 0;
    for (int step = 0; step < steps; ++step) {
      std::vector<int32_t> tokens(seq.begin() + computed, seq.end()), positions(tokens.size());
      std::iota(positions.begin(), positions.end(), computed);
      const int len = static_cast<int>(seq.size());
      std::vector<int32_t> qs = {0, static_cast<int32_t>(tokens.size())}, lens = {len},
                           indptr = {0, (len + bs - 1) / bs}, rows = {static_cast<int32_t>(tokens.size()) - 1};
      std::vector<int32_t> idx(indices.begin(), indices.begin() + indptr[1]);
      ForwardBatch b{tokens, positions, qs, lens, indptr, idx, rows};
      absl::Status s = be.Forward(b, logits.data());
      EXPECT_TRUE(s.ok()) << s;
      if (!s.ok()) return out;
      if (logits_per_step != nullptr) logits_per_step->push_back(logits);
      const int32_t next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      out.push_back(next);
      computed = len;
      seq.push_back(next);
    }
    return out;
  }

  static double RelError(const std::vector<float>& a, const std::vector<float>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      num += double(a[i] - b[i]) * (a[i] - b[i]);
      den += double(b[i]) * b[i];
    }
    return std::sqrt(num / den);
  }

  ThreadPool pool_{2};
  std::shared_ptr<const Model> model_;
};

TEST_F(CudaEngineTest, Float32GreedyTokensAndLogitsEqualTheCpuBackend) {
  auto cpu = Backend("cpu", "float32");
  auto gpu = Backend("cuda:0", "float32");
  ASSERT_TRUE(cpu && gpu);
  std::vector<int32_t> prompt = model_->tokenizer().Encode("Once upon a time, there was a little girl", true, false);
  std::vector<std::vector<float>> lc, lg;
  std::vector<int32_t> a = Greedy(*cpu, prompt, 64, &lc);
  std::vector<int32_t> b = Greedy(*gpu, prompt, 64, &lg);
  EXPECT_EQ(a, b);
  ASSERT_EQ(lc.size(), lg.size());
  for (size_t i = 0; i < lc.size(); ++i) EXPECT_LT(RelError(lg[i], lc[i]), 1e-4) << "step " << i;
}

TEST_F(CudaEngineTest, HalfPrecisionLogitsStayWithinTolerance) {
  auto cpu = Backend("cpu", "float32");
  ASSERT_TRUE(cpu);
  std::vector<int32_t> prompt = model_->tokenizer().Encode("Lily and Ben went to the park", true, false);
  std::vector<std::vector<float>> lc;
  std::vector<int32_t> want = Greedy(*cpu, prompt, 1, &lc);
  for (const char* dtype : {"bfloat16", "float16"}) {
    auto gpu = Backend("cuda", dtype);
    ASSERT_TRUE(gpu);
    std::vector<std::vector<float>> lg;
    Greedy(*gpu, prompt, 1, &lg);
    ASSERT_EQ(lg.size(), 1u);
    EXPECT_LT(RelError(lg[0], lc[0]), std::string(dtype) == "bfloat16" ? 3e-2 : 5e-3) << dtype;
  }
}

// With device sampling (the default) and without it: the steps are greedy,
// so every token is picked on the device in the first GPU run.
TEST_F(CudaEngineTest, EngineOnTheGpuServesConcurrentRequestsLikeTheCpu) {
  int64_t device_sampled = -1;
  auto run = [&](const std::string& device, bool device_sampling = true) {
    EngineOptions o;
    o.device = device;
    o.device_sampling = device_sampling;
    o.dtype = "float32";
    o.threads = 2;
    o.kv_cache_bytes = device == "cpu" ? 0 : int64_t{256} << 20;
    o.max_num_batched_tokens = 64;  // forces chunked prefill mixed with decodes
    auto engine = Engine::Create(model_, o);
    EXPECT_TRUE(engine.ok()) << engine.status();
    absl::Mutex mu;
    std::vector<std::vector<int32_t>> tokens(12);
    int done = 0;
    const char* prompts[] = {"Once upon a time", "The little dog", "Lily and Ben went to the park",
                             "One day, a bird"};
    for (int i = 0; i < 12; ++i) {
      GenerateInput in;
      in.request_id = "r" + std::to_string(i);
      std::string p = prompts[i % 4];
      for (int k = 0; k < i; ++k) p += " and then";
      in.prompt_ids = model_->tokenizer().Encode(p, true, false);
      in.params.temperature = 0;
      in.params.max_tokens = 40;
      in.params.ignore_eos = true;
      absl::Status s = (*engine)->Submit(std::move(in), [&, i](EngineEvent ev) {
        absl::MutexLock lock(&mu);
        tokens[i].insert(tokens[i].end(), ev.token_ids.begin(), ev.token_ids.end());
        if (ev.finish != FinishReason::kNone) ++done;
      });
      EXPECT_TRUE(s.ok()) << s;
    }
    absl::MutexLock lock(&mu);
    auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return done == 12; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(120)));
    // Statistics are published after each step's events.
    for (int i = 0; i < 200 && (*engine)->Stats().generated_tokens < 12 * 40; ++i) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    device_sampled = (*engine)->Stats().device_sampled_tokens;
    return tokens;
  };
  std::vector<std::vector<int32_t>> cpu = run("cpu");
  EXPECT_EQ(device_sampled, 0);
  std::vector<std::vector<int32_t>> gpu = run("cuda:0");
  EXPECT_EQ(device_sampled, 12 * 40);
  std::vector<std::vector<int32_t>> host_sampled = run("cuda:0", false);
  EXPECT_EQ(device_sampled, 0);
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(cpu[i].size(), 40u);
    EXPECT_EQ(gpu[i], cpu[i]) << "request " << i;
    EXPECT_EQ(host_sampled[i], cpu[i]) << "request " << i;
  }
}

// Seeded temperature / top-k / top-p sampling on the device: the same seed
// gives the same tokens run to run (the draws come from the request's own
// generator).
TEST_F(CudaEngineTest, DeviceSamplingIsReproducibleForASeed) {
  EngineOptions o;
  o.device = "cuda:0";
  o.dtype = "float32";
  o.kv_cache_bytes = int64_t{64} << 20;
  auto run = [&] {
    auto engine = Engine::Create(model_, o);
    EXPECT_TRUE(engine.ok()) << engine.status();
    absl::Mutex mu;
    std::vector<int32_t> tokens;
    bool done = false;
    GenerateInput in;
    in.request_id = "s";
    in.prompt_ids = model_->tokenizer().Encode("Once upon a time", true, false);
    in.params.temperature = 0.9f;
    in.params.top_k = 20;
    in.params.top_p = 0.9f;
    in.params.seed = 42;
    in.params.max_tokens = 48;
    in.params.ignore_eos = true;
    EXPECT_TRUE((*engine)
                    ->Submit(std::move(in),
                             [&](EngineEvent ev) {
                               absl::MutexLock lock(&mu);
                               tokens.insert(tokens.end(), ev.token_ids.begin(), ev.token_ids.end());
                               if (ev.finish != FinishReason::kNone) done = true;
                             })
                    .ok());
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(60)));
    return tokens;
  };
  std::vector<int32_t> a = run(), b = run();
  EXPECT_EQ(a.size(), 48u);
  EXPECT_EQ(a, b);
}

// Live migration between a GPU worker and a CPU worker, both ways: the KV
// blocks cross as fp32 in the canonical layout, and the destination carries
// on with exactly the greedy tokens of an uninterrupted run (fp32 on both
// sides, whose greedy tokens agree; see above).
TEST_F(CudaEngineTest, MigrationBetweenCudaAndCpuEnginesKeepsTheGreedyStream) {
  auto make = [&](const std::string& device, int64_t min_step_micros) {
    EngineOptions o;
    o.device = device;
    o.dtype = "float32";
    o.threads = 2;
    o.kv_cache_bytes = device == "cpu" ? 0 : int64_t{256} << 20;
    o.min_step_micros = min_step_micros;  // the source keeps the request running while it is copied
    auto engine = Engine::Create(model_, o);
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? std::move(*engine) : nullptr;
  };
  struct Run {
    absl::Mutex mu;
    std::vector<int32_t> tokens ABSL_GUARDED_BY(mu);
    FinishReason finish ABSL_GUARDED_BY(mu) = FinishReason::kNone;
    EventSink Sink() {
      return [this](EngineEvent ev) {
        absl::MutexLock lock(&mu);
        tokens.insert(tokens.end(), ev.token_ids.begin(), ev.token_ids.end());
        if (ev.finish != FinishReason::kNone) finish = ev.finish;
      };
    }
    bool Wait() {
      absl::MutexLock lock(&mu);
      auto ended = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return finish != FinishReason::kNone; };
      return mu.AwaitWithTimeout(absl::Condition(&ended), absl::Seconds(60));
    }
  };
  GenerateInput in;
  in.request_id = "m";
  in.prompt_ids =
      model_->tokenizer().Encode("Once upon a time, there was a little girl", true, false);
  in.params.temperature = 0;
  in.params.max_tokens = 120;
  in.params.ignore_eos = true;

  std::vector<int32_t> want;
  {
    Run full;  // outlives the engine that calls it
    auto cpu = make("cpu", 0);
    ASSERT_TRUE(cpu);
    ASSERT_TRUE(cpu->Submit(in, full.Sink()).ok());
    ASSERT_TRUE(full.Wait());
    absl::MutexLock lock(&full.mu);
    want = full.tokens;
  }
  ASSERT_EQ(want.size(), 120u);

  for (const auto& [from, to] :
       {std::pair<std::string, std::string>{"cuda:0", "cpu"}, {"cpu", "cuda:0"}}) {
    SCOPED_TRACE(from + " -> " + to);
    Run before, after;
    auto src = make(from, 2000);
    auto dst = make(to, 0);
    ASSERT_TRUE(src && dst);
    ASSERT_TRUE(src->Submit(in, before.Sink()).ok());
    for (int i = 0; i < 5000 && src->Stats().generated_tokens < 40; ++i)
      absl::SleepFor(absl::Milliseconds(1));
    auto snap = src->SnapshotForMigration("m", 0, true).get();
    ASSERT_TRUE(snap.ok()) << snap.status();
    ASSERT_TRUE(snap->state.has_value());
    auto header = DecodeHeader(snap->header);
    ASSERT_TRUE(header.ok()) << header.status();
    ASSERT_TRUE(
        dst->ReserveForMigration("m", *header, snap->num_kv_tokens, absl::Seconds(10)).get().ok());
    absl::Status received = dst->ReceiveMigratedBlocks("m", snap->header, Payload(*snap), 0).get();
    ASSERT_TRUE(received.ok()) << received;
    ASSERT_TRUE(dst->ResumeMigrated(*snap->state, snap->num_kv_tokens, after.Sink()).get().ok());
    src->CommitMigration("m", "dst");
    ASSERT_TRUE(before.Wait());
    ASSERT_TRUE(after.Wait());
    absl::MutexLock lock_before(&before.mu);
    absl::MutexLock lock_after(&after.mu);
    EXPECT_EQ(before.finish, FinishReason::kMigrated);
    EXPECT_EQ(after.finish, FinishReason::kLength);
    std::vector<int32_t> all = before.tokens;
    all.insert(all.end(), after.tokens.begin(), after.tokens.end());
    EXPECT_EQ(all, want);
  }
}

}  // namespace
}  // namespace ferry
