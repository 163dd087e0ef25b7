// ferry-prefix-bench: what a cached prompt prefix saves when it is not in
// the worker's KV cache, by prefix length, in one process:
//
//   recompute  time to first token of a prompt nothing of which is cached
//              (the prefill of the whole prompt);
//   pull       a peer worker (engine + WorkerService behind real gRPC on
//              127.0.0.1) caches the prompt; the worker pulls its blocks with
//              Worker.ExportPrefix (PullPrefix, as for a scheduler hint), then
//              runs the prompt: pull time, then time to first token;
//   host tier  a worker with a small KV cache and a host tier runs the
//              prompt, then another prompt of the same length that evicts
//              it to the host tier, then the first prompt again: its time to
//              first token with the prefix copied back from the host tier.
//
// Both workers run in one process, so the puller copies the blocks out of
// the holder's shared KV pool (kvcache/shared_pool.h), as between two
// workers on one host; --no-shared-pool pulls them through the gRPC stream,
// as between hosts.
//
//   ferry-prefix-bench --model PATH [--lengths 256,1024,2048] [--repeats 3]
//                      [--threads 1] [--no-shared-pool]
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmarks/bench_model.h"
#include "common/logging.h"
#include "engine/engine.h"
#include "engine/service/prefix_pull.h"
#include "engine/service/worker_service.h"
#include "kvcache/block_pool.h"
#include "tools/flags.h"

namespace ferry::bench {
namespace {

using Clock = std::chrono::steady_clock;
double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

std::vector<int32_t> Prompt(int len, int salt, int vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(len));
  uint64_t x = 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(salt + 1);
  for (int32_t& id : ids) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    id = static_cast<int32_t>(3 + x % static_cast<uint64_t>(vocab - 3));
  }
  return ids;
}

// Milliseconds from submission to the first token (one token asked for);
// negative on an error.
double TimeToFirstToken(Engine& engine, const std::string& id, const std::vector<int32_t>& prompt) {
  GenerateInput in;
  in.request_id = id;
  in.prompt_ids = prompt;
  in.params.temperature = 0;
  in.params.max_tokens = 1;
  in.params.ignore_eos = true;
  auto done = std::make_shared<std::promise<bool>>();
  auto future = done->get_future();
  const Clock::time_point t0 = Clock::now();
  absl::Status s = engine.Submit(std::move(in), [done](EngineEvent ev) {
    if (ev.finish != FinishReason::kNone) done->set_value(ev.finish != FinishReason::kError);
  });
  if (!s.ok()) return -1;
  if (!future.get()) return -1;
  return Ms(Clock::now() - t0);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

int Main(int argc, char** argv) {
  std::string model_path;
  std::string lengths_list = "256,1024,2048";
  int64_t repeats = 3;
  int64_t threads = 1;
  FlagParser flags("prefix-bench", "Prefix pull from a peer and host-tier hits vs recomputing the prefix.");
  flags.AddString("model", &model_path, "GGUF file or Hugging Face directory");
  flags.AddString("lengths", &lengths_list, "comma-separated prompt lengths in tokens");
  flags.AddInt("repeats", &repeats, "runs per length and method (the median is reported)");
  flags.AddInt("threads", &threads, "CPU threads per engine");
  bool no_shared_pool = false;
  flags.AddBool("no-shared-pool", &no_shared_pool,
                "pull the blocks through the gRPC stream instead of the holder's shared KV pool (baseline)");
  return RunWithFlags(flags, argc, argv, [&]() -> int {
    (void)SetupLogging("warn");
    const std::optional<std::vector<int>> parsed = bench::ParseLengthsOrReport(lengths_list, 32);
    if (!parsed) return 2;
    const std::vector<int>& lengths = *parsed;
    if (repeats < 1) {
      std::fprintf(stderr, "error: --repeats must be at least 1\n");
      return 2;
    }
    std::shared_ptr<const Model> model = bench::LoadModelOrReport(model_path);
    if (!model) return 1;
    const int vocab = model->config().vocab_size;
    const int max_len = *std::max_element(lengths.begin(), lengths.end());
    EngineOptions eo;
    eo.threads = static_cast<int>(threads);
    auto holder = Engine::Create(model, eo);
    auto puller = Engine::Create(model, eo);
    if (!holder.ok() || !puller.ok()) {
      std::fprintf(stderr, "error: cannot create the engines\n");
      return 1;
    }
    if ((*holder)->max_model_len() < max_len + 2) {
      std::fprintf(stderr, "error: the model's context (%d) is shorter than %d tokens\n",
                   (*holder)->max_model_len(), max_len + 2);
      return 1;
    }
    // Room for one prompt of the longest length plus a little: a second
    // prompt evicts the first one to the host tier.
    EngineOptions tiered = eo;
    const int64_t block_bytes = (*holder)->kv_shape().bytes_per_block();
    tiered.kv_cache_bytes = block_bytes * (NumBlocksForTokens(max_len, eo.block_size) + 2);
    tiered.kv_host_bytes = block_bytes * 4 * NumBlocksForTokens(max_len, eo.block_size);
    auto host = Engine::Create(model, tiered);
    if (!host.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(host.status().message()).c_str());
      return 1;
    }

    WorkerService holder_service(holder->get(), WorkerServiceOptions{});
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&holder_service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    const std::string holder_address = absl::StrCat("127.0.0.1:", port);

    MappedPoolCache pools;
    PrefixPullOptions pull_options;
    pull_options.shared_pool = !no_shared_pool;
    pull_options.pools = &pools;
    const bool shared = !no_shared_pool && (*holder)->shared_kv_pool().has_value();
    std::printf("model %s, %lld threads per engine, KV block %.1f KB (%d tokens), pulls through %s\n\n",
                model->id().c_str(), static_cast<long long>(threads), block_bytes / 1e3, eo.block_size,
                shared ? "the holder's shared pool" : "the gRPC stream");
    std::printf("| tokens | KV MB | recompute TTFT ms | pull ms | TTFT after pull ms | pull + TTFT ms | "
                "host-tier hit TTFT ms | host blocks copied back |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    int salt = 1;
    for (int len : lengths) {
      std::vector<double> recompute, pull, after_pull, host_hit;
      int64_t host_in = 0;
      for (int rep = 0; rep < repeats; ++rep) {
        // Recompute: a fresh prompt on the puller.
        recompute.push_back(TimeToFirstToken(**puller, absl::StrCat("r", len, "-", rep), Prompt(len, ++salt, vocab)));
        // Pull: the holder computes (caches) the prompt, the puller fetches it.
        const std::vector<int32_t> prompt = Prompt(len, ++salt, vocab);
        if (TimeToFirstToken(**holder, absl::StrCat("h", len, "-", rep), prompt) < 0) return 1;
        v1::PrefixPull hint;
        hint.set_peer_address(holder_address);
        uint64_t parent = (*holder)->block_hash_root();
        const int blocks = (len - 1) / eo.block_size;
        for (int b = 0; b < blocks; ++b) {
          parent = HashBlockTokens(
              parent, std::span<const int32_t>(prompt).subspan(static_cast<size_t>(b) * eo.block_size, eo.block_size), 0);
          hint.add_block_hashes(parent);
        }
        const Clock::time_point t0 = Clock::now();
        auto pulled = PullPrefix(**puller, hint, prompt, pull_options);
        pull.push_back(Ms(Clock::now() - t0));
        if (!pulled.ok() || pulled->blocks_cached < blocks || pulled->shared_pool != shared) {
          std::fprintf(stderr, "pull failed: %s\n",
                       !pulled.ok()                    ? std::string(pulled.status().message()).c_str()
                       : pulled->shared_pool != shared ? "the pull did not take the expected path"
                                                       : "not every block cached");
          return 1;
        }
        after_pull.push_back(TimeToFirstToken(**puller, absl::StrCat("p", len, "-", rep), prompt));
        // Host tier: compute, evict with another prompt, hit.
        const std::vector<int32_t> first = Prompt(len, ++salt, vocab);
        if (TimeToFirstToken(**host, absl::StrCat("t1-", len, "-", rep), first) < 0) return 1;
        if (TimeToFirstToken(**host, absl::StrCat("t2-", len, "-", rep), Prompt(max_len, ++salt, vocab)) < 0) return 1;
        // Statistics are published after each step, just after its events.
        absl::SleepFor(absl::Milliseconds(50));
        const int64_t before = (*host)->Stats().prefix_hit_blocks_host;
        host_hit.push_back(TimeToFirstToken(**host, absl::StrCat("t3-", len, "-", rep), first));
        absl::SleepFor(absl::Milliseconds(50));
        host_in = (*host)->Stats().prefix_hit_blocks_host - before;
      }
      const double kv_mb = static_cast<double>(block_bytes) * ((len - 1) / eo.block_size) / 1e6;
      std::printf("| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %lld |\n", len, kv_mb, Median(recompute),
                  Median(pull), Median(after_pull), Median(pull) + Median(after_pull), Median(host_hit),
                  static_cast<long long>(host_in));
      std::fflush(stdout);
    }
    server->Shutdown(std::chrono::system_clock::now());
    return 0;
  });
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) { return ferry::bench::Main(argc, argv); }
