// The engine's step loop on a real trained model (stories260K): continuous
// batching, chunked prefill, preemption, prefix reuse, n > 1, stop strings,
// aborts and validation.
#include "engine/engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/thread_pool.h"
#include "engine/llama_forward.h"
#include "gtest/gtest.h"
#include "kvcache/shared_pool.h"
#include "tests/integration/engine/collector.h"
#include "tests/integration/engine/greedy_run.h"
#include "tests/integration/engine/host_device_pool_backend.h"
#include "tests/integration/engine/shared_model.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override { FERRY_LOAD_SHARED_MODEL(model_, "models/stories260K.gguf"); }

  std::unique_ptr<Engine> MakeEngine(EngineOptions o = {}) {
    if (o.threads == 0) o.threads = 2;
    auto e = Engine::Create(model_, o);
    EXPECT_TRUE(e.ok()) << e.status();
    return std::move(*e);
  }

  std::vector<int32_t> Encode(const std::string& text) {
    return model_->tokenizer().Encode(text, true, false);
  }

  GenerateInput Greedy(const std::string& id, const std::string& prompt, int max_tokens) {
    GenerateInput in;
    in.request_id = id;
    in.prompt_ids = Encode(prompt);
    in.params.temperature = 0;
    in.params.max_tokens = max_tokens;
    in.params.ignore_eos = true;
    return in;
  }

  Collector::Result RunAlone(GenerateInput in) {
    auto engine = MakeEngine();
    Collector c;
    std::string id = in.request_id;
    EXPECT_TRUE(engine->Submit(std::move(in), c.Sink()).ok());
    EXPECT_TRUE(c.Wait(1));
    return c.Get(id);
  }

  // How the destination takes the blocks in MigrateBetweenEngines.
  enum class Path { kLoop, kImport, kSharedPool, kDevicePool };
  void MigrateBetweenEngines(Path path);

  std::shared_ptr<const Model> model_;
};

// A mapped pool's bytes.
std::span<const std::byte> PoolBytes(const MappedPool& pool) { return {pool.data(), pool.size()}; }

// The snapshot's blocks as one chunk, as a sender would send them.
std::string Payload(const Engine::MigrationSnapshot& snap) {
  absl::StatusOr<std::string> chunk = snap.blocks->EncodeChunk(snap.first_block, snap.num_blocks);
  EXPECT_TRUE(chunk.ok()) << chunk.status();
  return chunk.ok() ? *chunk : std::string();
}

// Statistics are published after each step, a moment after the step's last
// events: wait for the engine to settle before reading them.
EngineStats Settled(Engine& engine) {
  EngineStats s = engine.Stats();
  for (int i = 0; i < 2000 && (s.running + s.waiting > 0 || s.blocks_used > 0); ++i) {
    absl::SleepFor(absl::Milliseconds(1));
    s = engine.Stats();
  }
  return s;
}

const char* kPrompts[] = {
    "Once upon a time", "The little dog", "Lily and Ben went to the park", "One day, a bird",
    "Tom had a big red ball", "The sun was shining", "There was a cat named", "Mom said",
};

std::string PromptFor(int i) {
  std::string p = kPrompts[i % 8];
  for (int k = 0; k < i / 8; ++k) p += " and then";
  return p;
}

TEST_F(EngineTest, ConcurrentGreedyRequestsMatchRunningAlone) {
  constexpr int kRequests = 32;
  // Each request alone: one at a time through one engine.
  std::vector<Collector::Result> alone;
  {
    auto engine = MakeEngine();
    Collector c;
    for (int i = 0; i < kRequests; ++i) {
      ASSERT_TRUE(engine->Submit(Greedy(absl::StrCat("a", i), PromptFor(i), 24), c.Sink()).ok());
      ASSERT_TRUE(c.Wait(i + 1));
      alone.push_back(c.Get(absl::StrCat("a", i)));
    }
  }
  for (bool tiny_kv : {false, true}) {
    EngineOptions o;
    o.max_num_batched_tokens = 64;  // forces chunked prefill of the batch
    if (tiny_kv) {
      // 24 blocks of 16 tokens: about 10 sequences fit; the rest are preempted.
      o.kv_cache_bytes = 24 * int64_t{16} * 5 * 2 * 4 * 8 * 4;
    }
    auto engine = MakeEngine(o);
    Collector c;
    for (int i = 0; i < kRequests; ++i) {
      ASSERT_TRUE(engine->Submit(Greedy(absl::StrCat("r", i), PromptFor(i), 24), c.Sink()).ok());
    }
    ASSERT_TRUE(c.Wait(kRequests));
    for (int i = 0; i < kRequests; ++i) {
      Collector::Result r = c.Get(absl::StrCat("r", i));
      EXPECT_EQ(r.tokens, alone[i].tokens) << "request " << i << (tiny_kv ? " (tiny KV)" : "");
      EXPECT_EQ(r.text, alone[i].text) << i;
      EXPECT_EQ(r.finish, FinishReason::kLength);
    }
    EngineStats s = Settled(*engine);
    if (tiny_kv) EXPECT_GT(s.preemptions, 0);
    EXPECT_EQ(s.blocks_used, 0) << "blocks leaked";
    EXPECT_EQ(s.running + s.waiting, 0);
  }
}

TEST_F(EngineTest, SecondRequestWithTheSamePrefixComputesOnlyNewTokens) {
  auto engine = MakeEngine();
  std::string prefix;
  for (int i = 0; i < 20; ++i) prefix += "Once upon a time, there was a little girl. ";
  Collector c;
  GenerateInput first = Greedy("first", prefix + "She liked cats.", 4);
  const int first_len = static_cast<int>(first.prompt_ids.size());
  ASSERT_TRUE(engine->Submit(first, c.Sink()).ok());
  ASSERT_TRUE(c.Wait(1));
  int64_t computed_before = Settled(*engine).prompt_tokens_computed;
  EXPECT_EQ(computed_before, first_len);

  GenerateInput second = Greedy("second", prefix + "He liked dogs.", 4);
  const int second_len = static_cast<int>(second.prompt_ids.size());
  ASSERT_TRUE(engine->Submit(second, c.Sink()).ok());
  ASSERT_TRUE(c.Wait(2));
  Collector::Result r = c.Get("second");
  int cached = r.last.cached_prompt_tokens;
  // The shared prefix is over 200 tokens: all of its full blocks are reused.
  EXPECT_GE(cached, 192);
  EXPECT_EQ(cached % 16, 0);
  EXPECT_EQ(Settled(*engine).prompt_tokens_computed - computed_before, second_len - cached);
  EXPECT_GT(engine->Stats().prefix_cache_hit_rate, 0);
  // And the output is what a cold engine gives.
  EXPECT_EQ(r.tokens, RunAlone(Greedy("x", prefix + "He liked dogs.", 4)).tokens);
}

// About three full blocks of tokens, different for each i.
std::string LongPrompt(int i) {
  return PromptFor(i) + ". Once upon a time, there was a little girl named Lily. She liked to play "
                        "in the park with her friends every day.";
}

TEST_F(EngineTest, HashEventsNameTheCacheAndAnUndrainedBacklogBecomesASnapshot) {
  // Eight blocks (20480 bytes each for this model), so later requests evict
  // the earlier ones' blocks.
  EngineOptions o;
  o.kv_cache_bytes = 8 * 20480;
  auto engine = MakeEngine(o);
  Collector c;
  auto run = [&](int first, int count) {
    for (int i = first; i < first + count; ++i) {
      ASSERT_TRUE(engine->Submit(Greedy(absl::StrCat("r", i), LongPrompt(i), 2), c.Sink()).ok());
      ASSERT_TRUE(c.Wait(i + 1));
      Settled(*engine);
    }
  };
  // Drained often: the net changes applied to a view give the cached set.
  std::set<uint64_t> view;
  for (int round = 0; round < 3; ++round) {
    run(round * 3, 3);
    BlockHashEvents ev = engine->TakeBlockHashEvents();
    EXPECT_FALSE(ev.reset);
    std::vector<uint64_t> stored, removed;
    NetBlockHashChanges(ev.events, &stored, &removed);
    for (uint64_t h : removed) view.erase(h);
    view.insert(stored.begin(), stored.end());
  }
  EXPECT_FALSE(view.empty());
  EXPECT_LE(view.size(), 8u);

  // Never drained and over the bound (0 events beyond the 8 blocks): the
  // backlog is a snapshot of what is cached now, marked reset.
  o.max_block_hash_events = 0;
  engine = MakeEngine(o);
  run(9, 6);
  BlockHashEvents ev = engine->TakeBlockHashEvents();
  EXPECT_TRUE(ev.reset);
  std::set<uint64_t> snapshot;
  for (const BlockHashEvent& e : ev.events) {
    EXPECT_EQ(e.kind, BlockHashEvent::Kind::kStored);
    snapshot.insert(e.hash);
  }
  EXPECT_FALSE(snapshot.empty());
  EXPECT_LE(snapshot.size(), 8u);
  // The prompt just served stays cached after it finished: its first
  // block is in the snapshot.
  const std::vector<int32_t> last = Encode(LongPrompt(14));
  ASSERT_GE(last.size(), 32u);
  EXPECT_TRUE(snapshot.contains(testing::ChainHashes(*engine, last, 1)[0]));
  // Drained: nothing more until the cache changes.
  EXPECT_TRUE(engine->TakeBlockHashEvents().events.empty());
}

TEST_F(EngineTest, MicroBatchesGiveTheSameLogitsAndKvAsOnePass) {
  // Two prompts in one step, 40 and 30 tokens: with 16-token micro-batches
  // the first is cut twice and the third micro-batch mixes both.
  const std::vector<int32_t> a = Encode(LongPrompt(1) + " " + LongPrompt(2));
  const std::vector<int32_t> b = Encode(LongPrompt(3));
  ASSERT_GE(a.size(), 40u);
  ASSERT_GE(b.size(), 30u);
  std::vector<int32_t> tokens(a.begin(), a.begin() + 40);
  tokens.insert(tokens.end(), b.begin(), b.begin() + 30);
  std::vector<int32_t> positions;
  for (int i = 0; i < 40; ++i) positions.push_back(i);
  for (int i = 0; i < 30; ++i) positions.push_back(i);
  const int32_t query_start[] = {0, 40, 70};
  const int32_t seq_lens[] = {40, 30};
  const int32_t indptr[] = {0, 3, 5};
  const int32_t blocks[] = {4, 0, 2, 1, 3};  // out of order on purpose
  const int32_t rows[] = {5, 16, 39, 45, 69};  // some mid-prompt rows too
  ForwardBatch batch{tokens, positions, query_start, seq_lens, indptr, blocks, rows};
  const int vocab = model_->config().vocab_size;

  ThreadPool pool(2);
  auto run = [&](int max_ubatch, std::vector<float>& logits) {
    LlamaForward forward(*model_, pool, /*batch_invariant=*/true, max_ubatch);
    auto kv = KvCache::Create(forward.KvShape(16, 5));
    EXPECT_TRUE(kv.ok());
    std::memset((*kv)->Block(0), 0, 5 * (*kv)->shape().bytes_per_block());
    logits.assign(std::size(rows) * vocab, 0.0f);
    absl::Status s = forward.Forward(batch, **kv, logits.data());
    EXPECT_TRUE(s.ok()) << s;
    return std::move(*kv);
  };
  std::vector<float> whole, cut;
  auto kv_whole = run(1024, whole);
  for (int ubatch : {16, 7, 1}) {
    auto kv_cut = run(ubatch, cut);
    EXPECT_EQ(cut, whole) << "micro-batches of " << ubatch;
    EXPECT_EQ(std::memcmp(kv_whole->Block(0), kv_cut->Block(0), 5 * kv_whole->shape().bytes_per_block()), 0)
        << "micro-batches of " << ubatch;
  }
}

TEST_F(EngineTest, ParallelSamplesShareThePromptAndAreReproducible) {
  auto engine = MakeEngine();
  Collector c;
  GenerateInput in = Greedy("n", "Once upon a time", 16);
  in.params.n = 4;
  in.params.temperature = 1.0f;
  in.params.seed = 1234;
  ASSERT_TRUE(engine->Submit(in, c.Sink()).ok());
  ASSERT_TRUE(c.Wait(4));
  std::set<std::vector<int32_t>> distinct;
  for (int i = 0; i < 4; ++i) {
    Collector::Result r = c.Get("n", i);
    EXPECT_EQ(r.tokens.size(), 16u) << i;
    distinct.insert(r.tokens);
  }
  EXPECT_GT(distinct.size(), 1u);
  // Same seed again, alongside other traffic: the same samples.
  Collector c2;
  ASSERT_TRUE(engine->Submit(Greedy("other", "The little dog", 20), c2.Sink()).ok());
  in.request_id = "n2";
  ASSERT_TRUE(engine->Submit(in, c2.Sink()).ok());
  ASSERT_TRUE(c2.Wait(5));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(c2.Get("n2", i).tokens, c.Get("n", i).tokens) << i;
  EXPECT_EQ(Settled(*engine).blocks_used, 0);
}

TEST_F(EngineTest, StopStringsAreCutAcrossTokens) {
  Collector::Result full = RunAlone(Greedy("full", "Once upon a time", 40));
  // A stop string that starts inside one token's text and ends in another's.
  size_t pos = full.text.find("little girl");
  ASSERT_NE(pos, std::string::npos) << full.text;
  GenerateInput in = Greedy("stop", "Once upon a time", 40);
  in.params.stop = {"tle gi"};
  Collector::Result r = RunAlone(in);
  EXPECT_EQ(r.finish, FinishReason::kStop);
  EXPECT_EQ(r.text, full.text.substr(0, pos + 3));
  EXPECT_EQ(r.last.stop_reason, "tle gi");
}

// vLLM's include_stop_str_in_output, skip_special_tokens and
// allowed_token_ids.
TEST_F(EngineTest, StopStringsStayWhenAskedAndSamplingKeepsToAllowedTokens) {
  Collector::Result full = RunAlone(Greedy("full", "Once upon a time", 40));
  const size_t pos = full.text.find("little girl");
  ASSERT_NE(pos, std::string::npos) << full.text;
  GenerateInput in = Greedy("kept", "Once upon a time", 40);
  in.params.stop = {"tle gi"};
  in.params.include_stop_str_in_output = true;
  Collector::Result r = RunAlone(in);
  EXPECT_EQ(r.finish, FinishReason::kStop);
  EXPECT_EQ(r.text, full.text.substr(0, pos + 3 + 6));  // through the stop string, no further
  EXPECT_EQ(r.last.stop_reason, "tle gi");

  // Only the allowed tokens come out, sampled or greedy.
  const std::vector<int32_t> allowed = {261, 267, 298, 13};
  GenerateInput sampled = Greedy("allowed", "Once upon a time", 30);
  sampled.params.temperature = 1.0f;
  sampled.params.seed = 5;
  sampled.params.allowed_token_ids = {298, 13, 261, 267, 261};  // any order, repeats
  r = RunAlone(sampled);
  ASSERT_EQ(r.tokens.size(), 30u);
  std::set<int32_t> seen(r.tokens.begin(), r.tokens.end());
  for (int32_t id : r.tokens) {
    EXPECT_TRUE(std::find(allowed.begin(), allowed.end(), id) != allowed.end()) << id;
  }
  EXPECT_GT(seen.size(), 1u);

  // End of sequence allowed alone (and ignored): its text "</s>" shows only
  // with skip_special_tokens off.
  const int32_t eos = model_->eos_ids().front();
  for (bool skip : {true, false}) {
    GenerateInput only_eos = Greedy(skip ? "skip" : "noskip", "Once upon a time", 3);
    only_eos.params.allowed_token_ids = {eos};
    only_eos.params.ignore_eos = true;
    only_eos.params.skip_special_tokens = skip;
    r = RunAlone(only_eos);
    EXPECT_EQ(r.tokens, std::vector<int32_t>(3, eos));
    EXPECT_EQ(r.text, skip ? "" : "</s></s></s>");
  }
  // A stop token's text stays with include_stop_str_in_output (when it is
  // not skipped as special).
  GenerateInput stop_token = Greedy("stoptok", "Once upon a time", 8);
  stop_token.params.allowed_token_ids = {eos};
  stop_token.params.ignore_eos = false;
  stop_token.params.skip_special_tokens = false;
  stop_token.params.include_stop_str_in_output = true;
  r = RunAlone(stop_token);
  EXPECT_EQ(r.finish, FinishReason::kStop);
  EXPECT_EQ(r.text, "</s>");
  stop_token.params.include_stop_str_in_output = false;
  EXPECT_EQ(RunAlone(stop_token).text, "");

  // bad_words: a banned token never comes; a banned pair never comes in
  // that order (its first token still may).
  const std::vector<int32_t>& g = full.tokens;
  ASSERT_GE(g.size(), 6u);
  GenerateInput ban_one = Greedy("ban1", "Once upon a time", 40);
  ban_one.params.bad_words_ids = {{g[3]}};
  r = RunAlone(ban_one);
  EXPECT_EQ(std::count(r.tokens.begin(), r.tokens.end(), g[3]), 0);
  EXPECT_EQ(std::vector<int32_t>(r.tokens.begin(), r.tokens.begin() + 3),
            std::vector<int32_t>(g.begin(), g.begin() + 3));  // the same up to there
  GenerateInput ban_pair = Greedy("ban2", "Once upon a time", 40);
  ban_pair.params.bad_words_ids = {{g[4], g[5]}};
  r = RunAlone(ban_pair);
  EXPECT_EQ(r.tokens[4], g[4]);
  EXPECT_NE(r.tokens[5], g[5]);
  for (size_t i = 0; i + 1 < r.tokens.size(); ++i) {
    EXPECT_FALSE(r.tokens[i] == g[4] && r.tokens[i + 1] == g[5]) << i;
  }

  GenerateInput bad = Greedy("bad", "Once upon a time", 4);
  bad.params.allowed_token_ids = {100000};
  auto engine = MakeEngine();
  Collector c;
  absl::Status s = engine->Submit(std::move(bad), c.Sink());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("allowed_token_ids"), std::string::npos) << s;
}

TEST_F(EngineTest, AbortFreesBlocksAtOnce) {
  auto engine = MakeEngine();
  Collector c;
  GenerateInput in = Greedy("long", "Once upon a time", 1500);
  ASSERT_TRUE(engine->Submit(in, c.Sink()).ok());
  absl::SleepFor(absl::Milliseconds(50));
  engine->Abort("long");
  ASSERT_TRUE(c.Wait(1));
  EXPECT_EQ(c.Get("long").finish, FinishReason::kAbort);
  EXPECT_LT(c.Get("long").tokens.size(), 1500u);
  EXPECT_EQ(Settled(*engine).blocks_used, 0);
  // The id can be used again.
  EXPECT_TRUE(engine->Submit(Greedy("long", "Hi", 2), c.Sink()).ok());
  EXPECT_TRUE(c.Wait(2));
}

TEST_F(EngineTest, BadRequestsAreRejectedWithAClearError) {
  auto engine = MakeEngine();
  Collector c;
  GenerateInput empty = Greedy("e", "", 4);
  empty.prompt_ids.clear();
  EXPECT_EQ(engine->Submit(empty, c.Sink()).code(), absl::StatusCode::kInvalidArgument);
  GenerateInput bad_id = Greedy("b", "Hi", 4);
  bad_id.prompt_ids.push_back(100000);
  EXPECT_EQ(engine->Submit(bad_id, c.Sink()).code(), absl::StatusCode::kInvalidArgument);
  GenerateInput too_long = Greedy("t", "Hi", 4);
  too_long.prompt_ids.assign(3000, 5);
  absl::Status s = engine->Submit(too_long, c.Sink());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("2048"), absl::string_view::npos) << s;
  GenerateInput bad_temp = Greedy("x", "Hi", 4);
  bad_temp.params.temperature = -1;
  EXPECT_EQ(engine->Submit(bad_temp, c.Sink()).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(engine->Submit(Greedy("dup", "Hi", 200), c.Sink()).ok());
  EXPECT_EQ(engine->Submit(Greedy("dup", "Hi", 2), c.Sink()).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(c.Wait(1));
}

TEST_F(EngineTest, HigherPriorityIsServedFirstUnderPressure) {
  EngineOptions o;
  o.max_num_seqs = 1;
  // Paced, so "busy" (30 steps) is certainly still running when both others
  // arrive: unpaced, it could finish between the two submissions and let
  // "low" start first.
  o.min_step_micros = 5000;
  auto engine = MakeEngine(o);
  Collector c;
  std::vector<std::string> order;
  absl::Mutex mu;
  auto sink = [&](EngineEvent ev) {
    if (ev.finish != FinishReason::kNone) {
      absl::MutexLock lock(&mu);
      order.push_back(ev.request_id);
    }
    c.Sink()(std::move(ev));
  };
  GenerateInput busy = Greedy("busy", "Once upon a time", 30);
  ASSERT_TRUE(engine->Submit(busy, sink).ok());
  for (int i = 0; i < 1000 && engine->Stats().running == 0; ++i) absl::SleepFor(absl::Milliseconds(1));
  GenerateInput low = Greedy("low", "The dog", 5);
  low.priority = 10;
  GenerateInput high = Greedy("high", "The cat", 5);
  high.priority = -10;
  ASSERT_TRUE(engine->Submit(low, sink).ok());
  ASSERT_TRUE(engine->Submit(high, sink).ok());
  ASSERT_TRUE(c.Wait(3));
  absl::MutexLock lock(&mu);
  ASSERT_EQ(order.size(), 3u);
  EXPECT_EQ(order[1], "high");
  EXPECT_EQ(order[2], "low");
}

// A sample resumed from its tokens so far (what the scheduler does after a
// worker died) continues exactly as the uninterrupted run, greedy or seeded.
TEST_F(EngineTest, ResumedSampleContinuesTheSameStream) {
  for (float temperature : {0.0f, 0.9f}) {
    GenerateInput in = Greedy("full", "Once upon a time", 30);
    in.params.temperature = temperature;
    in.params.seed = 77;
    in.params.stop = {"xyzzy"};  // held-back text must be rebuilt too
    Collector::Result full = RunAlone(in);
    ASSERT_EQ(full.tokens.size(), 30u);
    for (int k : {1, 7, 20}) {
      // The text the client had after k tokens.
      auto engine = MakeEngine();
      Collector partial;
      GenerateInput first = in;
      first.request_id = "p";
      first.params.max_tokens = k;
      ASSERT_TRUE(engine->Submit(first, partial.Sink()).ok());
      ASSERT_TRUE(partial.Wait(1));
      std::string emitted = partial.Get("p").text;

      GenerateInput resumed = in;
      resumed.request_id = "r";
      ResumeState state;
      state.output_ids.assign(full.tokens.begin(), full.tokens.begin() + k);
      state.emitted_text_bytes = static_cast<int64_t>(emitted.size());
      resumed.resume = state;
      Collector c;
      ASSERT_TRUE(engine->Submit(resumed, c.Sink()).ok());
      ASSERT_TRUE(c.Wait(1));
      Collector::Result r = c.Get("r");
      std::vector<int32_t> rest(full.tokens.begin() + k, full.tokens.end());
      EXPECT_EQ(r.tokens, rest) << "k=" << k << " t=" << temperature;
      EXPECT_EQ(emitted + r.text, full.text) << "k=" << k << " t=" << temperature;
      EXPECT_EQ(r.last.completion_tokens, 30);
    }
  }
}

// The engine's half of live migration, driven by hand between two engines:
// rounds of full blocks while the request keeps decoding, then the final
// stage; the destination continues with exactly the tokens of a plain run.
// With kImport and the paths below, blocks inside the reservation are
// written from this thread (KvImport) while the destination runs another
// request, and the final chunk, which reaches past the reservation, goes
// through the loop.
// With kSharedPool, the import copies the blocks out of the source's shared
// pool by id (the same-host path), and the final chunk goes through the loop
// as bytes read from that pool. With kDevicePool, both engines run a backend
// with a device pool (HostDevicePoolBackend, as CUDA IPC between GPU
// workers): the import copies blocks by id, and the final chunk goes
// through the loop by id too (ReceiveDevicePoolBlocks).
void EngineTest::MigrateBetweenEngines(Path path) {
  const bool through_import = path != Path::kLoop;
  const bool from_shared_pool = path == Path::kSharedPool;
  const bool from_device_pool = path == Path::kDevicePool;
  GenerateInput in = Greedy("m", "Once upon a time", 120);
  in.params.temperature = 0.8f;
  in.params.seed = 5;
  Collector::Result full = RunAlone(in);

  // The source is paced (2 ms a step) so the request is still running
  // when the last stage is taken, however fast the machine decodes.
  EngineOptions paced;
  paced.min_step_micros = 2000;
  std::atomic<int64_t> device_copies{0};
  auto make = [&] {
    if (!from_device_pool) return MakeEngine(paced);
    paced.threads = 2;
    auto e = Engine::Create(model_, paced, testing::HostDevicePoolBackend::Factory(40 << 20, &device_copies));
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  };
  auto src = make();
  auto dst = make();
  ASSERT_TRUE(src && dst);
  if (from_device_pool) {
    EXPECT_FALSE(src->shared_kv_pool().has_value());
    ASSERT_TRUE(src->device_kv_pool().has_value());
  }
  Collector c, busy;
  ASSERT_TRUE(src->Submit(in, c.Sink()).ok());
  if (through_import) ASSERT_TRUE(dst->Submit(Greedy("busy", "One day", 200), busy.Sink()).ok());
  // Let it produce a few blocks' worth of tokens first.
  for (int i = 0; i < 5000 && src->Stats().generated_tokens < 40; ++i) absl::SleepFor(absl::Milliseconds(1));
  auto first = src->SnapshotForMigration("m", 0, false).get();
  ASSERT_TRUE(first.ok()) << first.status();
  auto hdr = DecodeHeader(first->header);
  ASSERT_TRUE(hdr.ok());
  ASSERT_TRUE(dst->ReserveForMigration("m", *hdr, std::max<int64_t>(first->num_kv_tokens, 1),
                                       absl::Seconds(10)).get().ok());
  std::unique_ptr<Engine::KvImport> import;
  std::shared_ptr<const MappedPool> pool;
  if (through_import) {
    auto opened = dst->OpenMigrationImport("m").get();
    ASSERT_TRUE(opened.ok()) << opened.status();
    import = std::move(*opened);
    ASSERT_EQ(import->num_blocks(), hdr->num_blocks);
    if (from_shared_pool) {
      ASSERT_TRUE(src->shared_kv_pool().has_value());
      auto mapped = MappedPool::Open(*src->shared_kv_pool());
      ASSERT_TRUE(mapped.ok()) << mapped.status();
      pool = std::move(*mapped);
      std::vector<int32_t> ids;
      std::vector<uint64_t> sums;
      ASSERT_TRUE(first->blocks->DescribePoolChunk(0, first->num_blocks, &ids, &sums).ok());
      ASSERT_EQ(static_cast<int64_t>(ids.size()), first->num_blocks);
      std::vector<uint64_t> wrong = sums;
      wrong.back() ^= 1;
      EXPECT_EQ(import->WritePoolChunk(first->header, PoolBytes(*pool), ids, wrong, 0).code(),
                absl::StatusCode::kDataLoss);
      ASSERT_TRUE(import->WritePoolChunk(first->header, PoolBytes(*pool), ids, sums, 0).ok());
    } else if (from_device_pool) {
      auto ids = first->blocks->BlockIds(0, first->num_blocks);
      ASSERT_TRUE(ids.ok()) << ids.status();
      ASSERT_EQ(static_cast<int64_t>(ids->size()), first->num_blocks);
      const ForwardBackend::DeviceKvPool peer = *src->device_kv_pool();
      // Not opened yet; then one block short of what the header says.
      EXPECT_EQ(import->CopyDevicePoolChunk(first->header, peer, *ids, 0).code(),
                absl::StatusCode::kFailedPrecondition);
      EXPECT_EQ(dst->OpenPeerDeviceKvPool(*dst->device_kv_pool()).code(), absl::StatusCode::kFailedPrecondition)
          << "a backend's own pool";
      ASSERT_TRUE(dst->OpenPeerDeviceKvPool(peer).ok());
      std::vector<int32_t> short_ids(ids->begin(), ids->end() - 1);
      EXPECT_EQ(import->CopyDevicePoolChunk(first->header, peer, short_ids, 0).code(),
                absl::StatusCode::kInvalidArgument);
      ASSERT_TRUE(import->CopyDevicePoolChunk(first->header, peer, *ids, 0).ok());
      EXPECT_EQ(device_copies.load(), first->num_blocks);
    } else {
      std::string corrupt = Payload(*first);
      corrupt[corrupt.size() / 2] ^= 1;
      EXPECT_EQ(import->WriteChunk(first->header, corrupt, 0).code(), absl::StatusCode::kDataLoss);
      ASSERT_TRUE(import->WriteChunk(first->header, Payload(*first), 0).ok());
    }
  } else {
    ASSERT_TRUE(dst->ReceiveMigratedBlocks("m", first->header, Payload(*first), 0).get().ok());
  }
  auto last = src->SnapshotForMigration("m", first->first_block + first->num_blocks, true).get();
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_TRUE(last->state.has_value());
  if (through_import) {
    ASSERT_GT(DecodeHeader(last->header)->num_blocks, import->num_blocks());
    EXPECT_EQ(import->WriteChunk(last->header, Payload(*last), last->first_block).code(),
              absl::StatusCode::kOutOfRange);
  }
  std::string last_payload = Payload(*last);
  if (from_shared_pool && last->num_blocks > 0) {
    std::vector<int32_t> ids;
    std::vector<uint64_t> sums;
    ASSERT_TRUE(last->blocks->DescribePoolChunk(last->first_block, last->num_blocks, &ids, &sums).ok());
    EXPECT_EQ(import->WritePoolChunk(last->header, PoolBytes(*pool), ids, sums, last->first_block).code(),
              absl::StatusCode::kOutOfRange);
    auto bytes = EncodePoolBlocks(PoolBytes(*pool), ids, sums, *DecodeHeader(last->header), dst->kv_model_key(),
                                  dst->kv_shape(), last->first_block);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    EXPECT_TRUE(*bytes == last_payload) << "the pool's bytes differ from the encoded chunk";
    last_payload = std::move(*bytes);
  }
  if (from_device_pool && last->num_blocks > 0) {
    auto ids = last->blocks->BlockIds(last->first_block, last->num_blocks);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(import->CopyDevicePoolChunk(last->header, *src->device_kv_pool(), *ids, last->first_block).code(),
              absl::StatusCode::kOutOfRange);
  }
  import.reset();
  if (from_device_pool) {
    auto ids = last->num_blocks > 0 ? last->blocks->BlockIds(last->first_block, last->num_blocks)
                                    : absl::StatusOr<std::vector<int32_t>>(std::vector<int32_t>{});
    ASSERT_TRUE(ids.ok()) << ids.status();
    ASSERT_TRUE(dst->ReceiveDevicePoolBlocks("m", last->header, *src->device_kv_pool(), *ids, last->first_block)
                    .get()
                    .ok());
    EXPECT_EQ(device_copies.load(), first->num_blocks + last->num_blocks);
  } else {
    ASSERT_TRUE(dst->ReceiveMigratedBlocks("m", last->header, last_payload, last->first_block).get().ok());
  }
  Collector d;
  ASSERT_TRUE(dst->ResumeMigrated(*last->state, last->num_kv_tokens, d.Sink()).get().ok());
  src->CommitMigration("m", "dst:1");
  ASSERT_TRUE(c.Wait(1));
  ASSERT_TRUE(d.Wait(1));
  Collector::Result before = c.Get("m"), after = d.Get("m");
  EXPECT_EQ(before.finish, FinishReason::kMigrated);
  EXPECT_EQ(before.last.migrated_to, "dst:1");
  std::vector<int32_t> all = before.tokens;
  all.insert(all.end(), after.tokens.begin(), after.tokens.end());
  EXPECT_EQ(all, full.tokens);
  EXPECT_EQ(before.text + after.text, full.text);
  EXPECT_EQ(after.finish, FinishReason::kLength);
  first->blocks.reset();
  last->blocks.reset();
  if (through_import) ASSERT_TRUE(busy.Wait(1));
  EXPECT_EQ(Settled(*src).blocks_used, 0);
  EXPECT_EQ(Settled(*dst).blocks_used, 0);
}

// Prompt logprobs (echo with logprobs): each prompt token after the first
// is scored from the logits at the position before it, as decoding scored
// it; a cached prompt is computed again for them, a long one in chunks of
// at most 256 tokens, and every sample gets them once, in its first event.
TEST_F(EngineTest, PromptLogprobsScoreEachPromptTokenAsDecodingDid) {
  auto engine = MakeEngine();
  GenerateInput decoded = Greedy("d", "Once upon a time", 12);
  decoded.params.logprobs = 2;
  Collector c;
  ASSERT_TRUE(engine->Submit(decoded, c.Sink()).ok());
  ASSERT_TRUE(c.Wait(1));
  const Collector::Result d = c.Get("d");
  ASSERT_EQ(d.tokens.size(), 12u);
  ASSERT_EQ(d.logprobs.size(), 12u);
  EXPECT_EQ(d.events_with_prompt_logprobs, 0);

  // The decoded tokens as a prompt: their prompt logprobs are the ones
  // decoding gave (up to the arithmetic of a prefill against a decode step).
  GenerateInput scored = Greedy("s", "Once upon a time", 1);
  const size_t head = scored.prompt_ids.size();
  scored.prompt_ids.insert(scored.prompt_ids.end(), d.tokens.begin(), d.tokens.end() - 1);
  scored.params.prompt_logprobs = 2;
  scored.params.n = 2;
  scored.params.temperature = 0.8f;
  scored.params.seed = 3;
  ASSERT_TRUE(engine->Submit(scored, c.Sink()).ok());
  ASSERT_TRUE(c.Wait(3));
  for (int sample = 0; sample < 2; ++sample) {
    const Collector::Result s = c.Get("s", sample);
    EXPECT_EQ(s.events_with_prompt_logprobs, 1) << sample;
    ASSERT_EQ(s.prompt_logprobs.size(), scored.prompt_ids.size() - 1) << sample;
    for (size_t i = 0; i < s.prompt_logprobs.size(); ++i) {
      EXPECT_EQ(s.prompt_logprobs[i].id, scored.prompt_ids[i + 1]) << i;
      EXPECT_LE(s.prompt_logprobs[i].logprob, 0.0f);
      EXPECT_EQ(s.prompt_logprobs[i].top.size(), 2u);
      // The rank counts the tokens at least as likely: the best two say
      // how many of them are.
      const SampledToken& t = s.prompt_logprobs[i];
      EXPECT_GE(t.rank, 1) << i;
      const auto at_least = std::count_if(t.top.begin(), t.top.end(),
                                          [&](const auto& a) { return a.second >= t.logprob; });
      EXPECT_EQ(at_least, std::min(t.rank, 2)) << i;
    }
    for (size_t j = 0; j + 1 < d.tokens.size(); ++j) {
      const SampledToken& p = s.prompt_logprobs[head - 1 + j];
      EXPECT_EQ(p.rank, 1) << "greedy picked the best token, " << j;
      EXPECT_NEAR(p.logprob, d.logprobs[j].logprob, 2e-3) << j;
      ASSERT_EQ(p.top.size(), d.logprobs[j].top.size());
      EXPECT_EQ(p.top[0].first, d.logprobs[j].top[0].first) << j;
    }
  }

  // A long prompt seen before: still computed (not from the cache), in
  // several steps, with the same scores.
  GenerateInput long_prompt = Greedy("l1", "x", 1);
  long_prompt.prompt_ids.clear();
  for (int i = 0; i < 700; ++i) long_prompt.prompt_ids.push_back(3 + (i * 37) % 400);
  long_prompt.params.prompt_logprobs = 0;
  ASSERT_TRUE(engine->Submit(long_prompt, c.Sink()).ok());
  ASSERT_TRUE(c.Wait(4));
  const int64_t steps_before = Settled(*engine).steps;
  long_prompt.request_id = "l2";
  ASSERT_TRUE(engine->Submit(long_prompt, c.Sink()).ok());
  ASSERT_TRUE(c.Wait(5));
  EXPECT_GE(Settled(*engine).steps - steps_before, 3) << "700 tokens in chunks of at most 256";
  const Collector::Result l1 = c.Get("l1"), l2 = c.Get("l2");
  EXPECT_EQ(l2.last.cached_prompt_tokens, 0);
  ASSERT_EQ(l1.prompt_logprobs.size(), 699u);
  ASSERT_EQ(l2.prompt_logprobs.size(), 699u);
  for (size_t i = 0; i < 699; ++i) {
    EXPECT_EQ(l1.prompt_logprobs[i].logprob, l2.prompt_logprobs[i].logprob) << i;
    EXPECT_TRUE(l1.prompt_logprobs[i].top.empty());
  }

  // Three at once share a step's rows for them, and score as alone.
  for (int k = 0; k < 3; ++k) {
    long_prompt.request_id = absl::StrCat("c", k);
    ASSERT_TRUE(engine->Submit(long_prompt, c.Sink()).ok());
  }
  ASSERT_TRUE(c.Wait(8));
  for (int k = 0; k < 3; ++k) {
    const Collector::Result r = c.Get(absl::StrCat("c", k));
    ASSERT_EQ(r.prompt_logprobs.size(), 699u) << k;
    for (size_t i = 0; i < 699; ++i) EXPECT_NEAR(r.prompt_logprobs[i].logprob, l1.prompt_logprobs[i].logprob, 1e-5);
  }
}

TEST_F(EngineTest, LiveMigrationBetweenTwoEnginesKeepsTheStream) { MigrateBetweenEngines(Path::kLoop); }

TEST_F(EngineTest, LiveMigrationWritingBlocksOffTheDestinationsLoopKeepsTheStream) {
  MigrateBetweenEngines(Path::kImport);
}

TEST_F(EngineTest, LiveMigrationCopyingBlocksOutOfTheSourcesSharedPoolKeepsTheStream) {
  MigrateBetweenEngines(Path::kSharedPool);
}

TEST_F(EngineTest, LiveMigrationCopyingBlocksOutOfTheSourcesDevicePoolKeepsTheStream) {
  MigrateBetweenEngines(Path::kDevicePool);
}

// Sampling in the backend (the sim backend does it as the cuda backend does
// on the device): steps whose every row needs only greedy or temperature /
// top-k / top-p sampling get token ids back instead of logits, and give the
// tokens host sampling gives; a row that needs the logits (logprobs here)
// sends its whole step through host sampling.
TEST_F(EngineTest, BackendSamplingGivesTheHostsTokensAndStepsAsideForLogprobs) {
  EngineOptions o;
  o.device = "sim";
  o.sim_profile = "cpu-small";
  o.device_sampling = true;
  auto on = MakeEngine(o);
  o.device_sampling = false;
  auto off = MakeEngine(o);
  auto requests = [&] {
    std::vector<GenerateInput> in;
    for (int i = 0; i < 4; ++i) {
      in.push_back(Greedy(absl::StrCat("r", i), PromptFor(i), 12 + i));
      if (i % 2 == 1) {
        in.back().params.temperature = 0.9f;
        in.back().params.top_p = 0.9f;
        in.back().params.seed = 100 + i;
      }
    }
    return in;
  };
  Collector a, b;
  for (GenerateInput& in : requests()) ASSERT_TRUE(on->Submit(in, a.Sink()).ok());
  for (GenerateInput& in : requests()) ASSERT_TRUE(off->Submit(in, b.Sink()).ok());
  ASSERT_TRUE(a.Wait(4));
  ASSERT_TRUE(b.Wait(4));
  int64_t total = 0;
  for (int i = 0; i < 4; ++i) {
    const std::string id = absl::StrCat("r", i);
    EXPECT_EQ(a.Get(id).tokens, b.Get(id).tokens) << id;
    EXPECT_EQ(a.Get(id).text, b.Get(id).text) << id;
    total += static_cast<int64_t>(a.Get(id).tokens.size());
  }
  EXPECT_EQ(Settled(*on).device_sampled_tokens, total);
  EXPECT_EQ(Settled(*off).device_sampled_tokens, 0);

  GenerateInput with_logprobs = Greedy("lp", PromptFor(7), 6);
  with_logprobs.params.logprobs = 2;
  Collector c;
  ASSERT_TRUE(on->Submit(with_logprobs, c.Sink()).ok());
  ASSERT_TRUE(c.Wait(1));
  EXPECT_EQ(c.Get("lp").tokens.size(), 6u);
  EXPECT_EQ(Settled(*on).device_sampled_tokens, total);  // all six through the host
}

TEST_F(EngineTest, MigrationAbortPathsLeaveTheRequestRunning) {
  auto src = MakeEngine(EngineOptions{.min_step_micros = 2000});  // paced: still running below
  auto dst = MakeEngine(EngineOptions{.kv_cache_bytes = 2 * 20480});  // two blocks only
  Collector c;
  ASSERT_TRUE(src->Submit(Greedy("a", "Once upon a time", 200), c.Sink()).ok());
  for (int i = 0; i < 5000 && src->Stats().generated_tokens < 60; ++i) absl::SleepFor(absl::Milliseconds(1));
  auto snap = src->SnapshotForMigration("a", 0, false).get();
  ASSERT_TRUE(snap.ok());
  // The destination has too few blocks: it refuses, nothing changes at the source.
  auto hdr = DecodeHeader(snap->header);
  EXPECT_EQ(dst->ReserveForMigration("a", *hdr, snap->num_kv_tokens, absl::Seconds(1)).get().code(),
            absl::StatusCode::kResourceExhausted);
  // Pause, then abort: the request resumes at the source and finishes normally.
  auto last = src->SnapshotForMigration("a", 0, true).get();
  ASSERT_TRUE(last.ok());
  src->AbortMigration("a");
  ASSERT_TRUE(c.Wait(1));
  EXPECT_EQ(c.Get("a").finish, FinishReason::kLength);
  EXPECT_EQ(c.Get("a").tokens.size(), 200u);
  // The snapshots still hold the blocks they name, after the request ended.
  EXPECT_EQ(Settled(*src).blocks_used, last->num_blocks);
  snap->blocks.reset();
  last->blocks.reset();
  EXPECT_EQ(Settled(*src).blocks_used, 0);
  // Unknown or finished requests cannot be snapshotted.
  EXPECT_EQ(src->SnapshotForMigration("a", 0, false).get().status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A reservation that is never used expires and frees its blocks.
  KvTransferHeader layout = MakeKvTransferHeader(dst->kv_shape(), dst->kv_model_key(), 1, 4);
  ASSERT_TRUE(dst->ReserveForMigration("t", layout, 4, absl::Milliseconds(50)).get().ok());
  absl::SleepFor(absl::Milliseconds(400));
  EXPECT_EQ(Settled(*dst).blocks_used, 0);
  // A chunk with a bad checksum is refused.
  ASSERT_TRUE(dst->ReserveForMigration("u", layout, 4, absl::Seconds(5)).get().ok());
  std::string header = EncodeHeader(layout);
  EXPECT_FALSE(dst->ReceiveMigratedBlocks("u", header, "garbage", 0).get().ok());
  dst->CancelReservation("u");
  EXPECT_EQ(Settled(*src).blocks_used, 0);
}

}  // namespace
}  // namespace ferry

namespace ferry {
namespace {

TEST_F(EngineTest, UnknownOrMissingDevicesAreClearErrors) {
  EngineOptions o;
  o.device = "tpu";
  auto e = Engine::Create(model_, o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("--device"), std::string::npos) << e.status();
  o.device = "cuda:99";  // no build or machine has a hundredth GPU
  e = Engine::Create(model_, o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("cuda"), std::string::npos) << e.status();
  o.device = "cuda:x";
  EXPECT_FALSE(Engine::Create(model_, o).ok());
}

}  // namespace
}  // namespace ferry
