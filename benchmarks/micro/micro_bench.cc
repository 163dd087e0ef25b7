// Google Benchmark microbenchmarks of the hot pieces outside the kernels
// (those are in bench_kernels): the KV block pool, one scheduler policy
// decision over a cluster of many workers, the simulator's engine step, and
// the tokenizer on a ../shared model (skipped with a message when absent).
//
//   ferry-micro-bench --benchmark_filter=BlockPool
//   ferry-micro-bench --benchmark_filter=Dispatch
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "benchmarks/loadgen/dataset.h"
#include "benchmarks/sim/sim_worker.h"
#include "engine/formats/gguf.h"
#include "engine/sim_cost_model.h"
#include "engine/tokenizer/tokenizer.h"
#include "kvcache/block_pool.h"
#include "kvcache/kv_transfer.h"
#include "scheduler/policy/dispatch_policy.h"
#include "scheduler/policy/migration_policy.h"

namespace ferry {
namespace {

std::unique_ptr<BlockPool> MakePool(int64_t num_blocks) {
  BlockPoolOptions o;
  o.num_blocks = num_blocks;
  o.block_size = 16;
  o.model_key = "micro";
  return *BlockPool::Create(o);
}

// Allocates n blocks and gives them back (one sequence's worth of KV).
void BM_BlockPoolAllocateFree(benchmark::State& state) {
  auto pool = MakePool(16384);
  const int64_t n = state.range(0);
  for (auto _ : state) {
    std::optional<std::vector<BlockRef>> blocks = pool->Allocate(n);
    benchmark::DoNotOptimize(blocks);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_BlockPoolAllocateFree)->Arg(1)->Arg(64)->Arg(1024);

// A prompt whose first `tokens` tokens are cached: hash and look up the chain.
void BM_BlockPoolMatchPrefix(benchmark::State& state) {
  auto pool = MakePool(16384);
  const int64_t n = state.range(0);
  std::vector<int32_t> tokens(n);
  for (int64_t i = 0; i < n; ++i) tokens[i] = static_cast<int32_t>((i * 7919) % 32000);
  BlockTable owner = pool->NewTable();
  owner.Append(*pool->Allocate(n / 16));
  owner.set_num_tokens(n);
  if (!pool->CommitFullBlocks(owner, tokens).ok()) state.SkipWithError("commit failed");
  for (auto _ : state) {
    BlockTable table = pool->NewTable();
    absl::StatusOr<int64_t> hit = pool->MatchPrefix(tokens, table);
    benchmark::DoNotOptimize(hit);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_BlockPoolMatchPrefix)->Arg(256)->Arg(4096);

ClusterView MakeCluster(int n) {
  ClusterView view;
  for (int i = 0; i < n; ++i) {
    WorkerView w;
    w.worker_id = absl::StrFormat("w%05d", i);
    w.load.blocks_total = 28000;
    w.load.blocks_free = 1000 + (i * 7919) % 20000;
    w.load.running_requests = 1 + (i * 31) % 200;
    w.load.waiting_requests = (i * 13) % 5;
    view.workers.push_back(std::move(w));
  }
  return view;
}

// One dispatch decision (what the scheduler does per request) over N workers.
template <class Policy>
void BM_Dispatch(benchmark::State& state) {
  const ClusterView view = MakeCluster(static_cast<int>(state.range(0)));
  Policy policy;
  DispatchRequest req;
  req.num_prompt_tokens = 512;
  req.num_prompt_blocks = 32;
  for (auto _ : state) {
    absl::StatusOr<DispatchDecision> d = policy.Decide(view, req, absl::UnixEpoch());
    benchmark::DoNotOptimize(d);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Dispatch<LeastLoadedPolicy>)->Arg(8)->Arg(1000);
BENCHMARK(BM_Dispatch<RoundRobinPolicy>)->Arg(8)->Arg(1000);

// One migration-policy round over N workers with 8 requests each.
void BM_MigrationDecide(benchmark::State& state) {
  ClusterView view = MakeCluster(static_cast<int>(state.range(0)));
  for (const WorkerView& w : view.workers) {
    for (int k = 0; k < 8; ++k) {
      RequestView r;
      r.request_id = absl::StrFormat("%s-r%d", w.worker_id, k);
      r.worker_id = w.worker_id;
      r.num_tokens = 200 + 50 * k;
      r.num_blocks = r.num_tokens / 16 + 1;
      view.requests.push_back(std::move(r));
    }
  }
  MigrationPolicy policy;
  for (auto _ : state) {
    std::vector<MigrationOrder> orders = policy.Decide(view, absl::UnixEpoch() + absl::Hours(1));
    benchmark::DoNotOptimize(orders);
  }
}
BENCHMARK(BM_MigrationDecide)->Arg(8)->Arg(1000);

// One simulated engine step (plan + apply) with 64 decoding sequences.
void BM_SimWorkerStep(benchmark::State& state) {
  const SimProfile profile = *LookupSimProfile("h100-llama3-8b");
  sim::SimEngineOptions o;
  o.num_blocks = 1 << 20;
  sim::SimWorker worker(0, o, &profile);
  std::vector<sim::SimSeq> seqs(64);
  for (int i = 0; i < 64; ++i) {
    seqs[i].id = i;
    seqs[i].prompt_tokens = 128;
    seqs[i].max_tokens = 1 << 30;
    worker.Enqueue(seqs[i]);
  }
  for (auto _ : state) {
    sim::StepOutcome pre, out;
    benchmark::DoNotOptimize(worker.StartStep(seqs, &pre));
    worker.FinishStep(seqs, &out);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SimWorkerStep);

// Encoding text with a real vocabulary: bytes per second.
void BM_TokenizerEncode(benchmark::State& state) {
  const std::string path = std::string(FERRY_SHARED_DIR) + "/models/llama-2-tiny-random.gguf";
  if (!std::filesystem::exists(path)) {
    state.SkipWithError(("no tokenizer model at " + path).c_str());
    return;
  }
  absl::StatusOr<std::unique_ptr<GgufFile>> gguf = GgufFile::Open(path);
  if (!gguf.ok()) {
    state.SkipWithError(std::string(gguf.status().message()).c_str());
    return;
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromGguf(**gguf);
  if (!tok.ok()) {
    state.SkipWithError(std::string(tok.status().message()).c_str());
    return;
  }
  const std::string text = loadgen::SyntheticText(static_cast<int>(state.range(0)), 1);
  for (auto _ : state) {
    std::vector<int32_t> ids = (*tok)->Encode(text, true, false);
    benchmark::DoNotOptimize(ids);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_TokenizerEncode)->Arg(64)->Arg(2048);

// KV transfer encoding and decoding of 64 blocks of the small preset's shape
// (12 layers, 4 KV heads, head_dim 64: 393 KB per block), the work a
// migration or prefix pull does per block on each side: bytes per second.
std::unique_ptr<KvCache> MakeTransferCache() {
  KvCacheShape shape;
  shape.num_layers = 12;
  shape.num_kv_heads = 4;
  shape.head_dim = 64;
  shape.block_size = 16;
  shape.num_blocks = 128;
  std::unique_ptr<KvCache> cache = *KvCache::Create(shape);
  for (int64_t b = 0; b < shape.num_blocks; ++b) {
    float* p = cache->Block(b);
    for (int64_t i = 0; i < shape.floats_per_block(); ++i) p[i] = static_cast<float>((b * 31 + i) % 97) * 0.01f;
  }
  return cache;
}

std::vector<int32_t> TransferBlocks(int32_t first, int32_t n) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = first + i;
  return ids;
}

void BM_KvEncodeBlocks(benchmark::State& state) {
  std::unique_ptr<KvCache> cache = MakeTransferCache();
  const std::vector<int32_t> ids = TransferBlocks(0, 64);
  for (auto _ : state) {
    std::string chunk = EncodeBlocks(*cache, ids, 0);
    benchmark::DoNotOptimize(chunk);
  }
  state.SetBytesProcessed(state.iterations() * 64 * cache->shape().bytes_per_block());
}
BENCHMARK(BM_KvEncodeBlocks)->Unit(benchmark::kMillisecond);

void BM_KvDecodeBlocks(benchmark::State& state) {
  std::unique_ptr<KvCache> cache = MakeTransferCache();
  const std::string chunk = EncodeBlocks(*cache, TransferBlocks(0, 64), 0);
  const KvTransferHeader header = MakeKvTransferHeader(cache->shape(), "m", 64, 64 * 16);
  const std::vector<int32_t> dst = TransferBlocks(64, 64);
  for (auto _ : state) {
    absl::Status s = DecodeAndWriteBlocks(chunk, header, "m", *cache, dst, 0);
    if (!s.ok()) state.SkipWithError(std::string(s.message()).c_str());
  }
  state.SetBytesProcessed(state.iterations() * 64 * cache->shape().bytes_per_block());
}
BENCHMARK(BM_KvDecodeBlocks)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace ferry

BENCHMARK_MAIN();
