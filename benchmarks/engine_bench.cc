// ferry-engine-bench: the serving engine under load, in one process.
//   - aggregate decode tokens/s at several concurrencies (continuous batching)
//   - time to first token for a long prompt whose prefix is cached vs not
//   - resident memory against model + KV cache
//
//   ferry-engine-bench --model PATH [--concurrency 1,4,16,64] [--gen-tokens 64]
//                      [--prompt-tokens 32] [--prefix-tokens 1000] [--threads 0]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "benchmarks/bench_model.h"
#include "common/logging.h"
#include "engine/engine.h"
#include "tools/flags.h"

namespace ferry::bench {
namespace {

int64_t ResidentBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

// Submits `inputs` at once and waits for all; returns seconds and, per
// request, the time to its first token. The decode phase starts when the
// last request has its first token (every sequence is then decoding):
// decode_tokens counts the tokens that arrived after that moment and
// decode_seconds the time from it to the end, so prefill steps do not dilute
// the decode rate.
struct RunResult {
  double seconds = 0;
  std::vector<double> ttft;
  int64_t tokens = 0;
  int64_t decode_tokens = 0;
  double decode_seconds = 0;
};

RunResult RunBatch(Engine& engine, std::vector<GenerateInput> inputs) {
  absl::Mutex mu;
  int finished = 0;
  RunResult r;
  r.ttft.assign(inputs.size(), 0);
  // (seconds since start, tokens) of every event carrying tokens.
  std::vector<std::pair<double, int64_t>> arrivals;
  auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < inputs.size(); ++i) {
    absl::Status s = engine.Submit(std::move(inputs[i]), [&, i](EngineEvent ev) {
      absl::MutexLock lock(&mu);
      const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (r.ttft[i] == 0 && !ev.token_ids.empty()) r.ttft[i] = now;
      if (!ev.token_ids.empty()) arrivals.emplace_back(now, static_cast<int64_t>(ev.token_ids.size()));
      r.tokens += static_cast<int64_t>(ev.token_ids.size());
      if (ev.finish != FinishReason::kNone) ++finished;
    });
    if (!s.ok()) {
      std::fprintf(stderr, "submit: %s\n", std::string(s.message()).c_str());
      std::exit(1);
    }
  }
  const int n = static_cast<int>(r.ttft.size());
  absl::MutexLock lock(&mu);
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return finished >= n; };
  mu.Await(absl::Condition(&done));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double decode_start = *std::max_element(r.ttft.begin(), r.ttft.end());
  double last = decode_start;
  for (const auto& [t, count] : arrivals) {
    if (t <= decode_start) continue;
    r.decode_tokens += count;
    last = std::max(last, t);
  }
  r.decode_seconds = last - decode_start;
  return r;
}

GenerateInput Input(const std::string& id, std::vector<int32_t> prompt, int max_tokens) {
  GenerateInput in;
  in.request_id = id;
  in.prompt_ids = std::move(prompt);
  in.params.temperature = 0;
  in.params.max_tokens = max_tokens;
  in.params.ignore_eos = true;
  return in;
}

std::vector<int32_t> Prompt(int n, int salt, int vocab) {
  std::vector<int32_t> p(n);
  for (int i = 0; i < n; ++i) p[i] = static_cast<int32_t>((i * 7919 + salt * 104729 + 13) % (vocab - 10) + 5);
  return p;
}

int Main(int argc, char** argv) {
  std::string model_path, conc_list = "1,4,16,64";
  int64_t gen = 64, prompt_len = 32, prefix_len = 1000, threads = 0;
  bool no_batch_invariance = false;
  std::string device = "cpu", dtype = "auto";
  FlagParser flags("engine-bench", "Engine throughput under concurrency, prefix-cache TTFT, memory.");
  flags.AddString("model", &model_path, "GGUF file or Hugging Face directory");
  flags.AddString("concurrency", &conc_list, "comma-separated numbers of concurrent sequences");
  flags.AddInt("gen-tokens", &gen, "tokens generated per request");
  flags.AddInt("prompt-tokens", &prompt_len, "prompt length per request");
  flags.AddInt("prefix-tokens", &prefix_len, "shared prefix length for the TTFT test");
  flags.AddInt("threads", &threads, "CPU threads (0: one per core)");
  flags.AddBool("no-batch-invariance", &no_batch_invariance, "use the GEMM path for batched tokens");
  flags.AddString("device", &device, "cpu, cuda or cuda:N");
  flags.AddString("dtype", &dtype, "GPU weights and KV dtype (auto, bfloat16, float16, float32)");
  return RunWithFlags(flags, argc, argv, [&]() -> int {
    (void)SetupLogging("warn");
    std::shared_ptr<const Model> model = bench::LoadModelOrReport(model_path, /*map_weights=*/absl::StartsWith(device, "cuda"));
    if (!model) return 1;
    const int vocab = model->config().vocab_size;
    const double params = static_cast<double>(model->weight_bytes()) /
                          (model->weights().layers[0].wq.dtype == DType::kF32 ? 4.0 : 2.0);
    std::printf("model %s: %.1f M parameters, %.1f MB of weights\n", model->id().c_str(), params / 1e6,
                model->weight_bytes() / 1e6);

    // 1. Aggregate decode throughput.
    // Decode tok/s: tokens after every sequence has its first token, over
    // that phase's time (steps that decode all n sequences). End to end:
    // every generated token over the whole run, prompts' prefill included.
    std::printf("\n| concurrent sequences | decode tok/s | vs batch 1 | GFLOP/s (2 x params x tok/s) | end-to-end tok/s |\n");
    std::printf("|---:|---:|---:|---:|---:|\n");
    double base = 0;
    for (absl::string_view c : absl::StrSplit(conc_list, ',')) {
      int n = 0;
      if (!absl::SimpleAtoi(c, &n) || n < 1) return 2;
      EngineOptions o;
      o.threads = static_cast<int>(threads);
      o.batch_invariant = !no_batch_invariance;
      o.max_num_seqs = std::max(n, 1);
      o.device = device;
      o.dtype = dtype;
      o.kv_cache_fraction = 0.5;
      auto engine = Engine::Create(model, o);
      if (!engine.ok()) {
        std::fprintf(stderr, "error: %s\n", std::string(engine.status().message()).c_str());
        return 1;
      }
      std::vector<GenerateInput> inputs;
      for (int i = 0; i < n; ++i) inputs.push_back(Input(absl::StrCat("r", i), Prompt(prompt_len, i, vocab), gen));
      // Warm up with one short run, then measure.
      RunBatch(**engine, {Input("warm", Prompt(8, 999, vocab), 4)});
      RunResult r = RunBatch(**engine, std::move(inputs));
      if (r.decode_seconds <= 0) {
        std::fprintf(stderr, "error: no decode phase (use --gen-tokens 2 or more)\n");
        return 1;
      }
      const double tps = r.decode_tokens / r.decode_seconds;
      if (base == 0) base = tps;
      std::printf("| %d | %.1f | %.2fx | %.1f | %.1f |\n", n, tps, tps / base, 2 * params * tps / 1e9,
                  r.tokens / r.seconds);
      std::fflush(stdout);
    }

    // 2. Time to first token with and without a cached prefix.
    EngineOptions o;
    o.threads = static_cast<int>(threads);
    o.batch_invariant = !no_batch_invariance;
    o.device = device;
    o.dtype = dtype;
    o.kv_cache_fraction = 0.5;
    auto engine = Engine::Create(model, o);
    if (!engine.ok()) return 1;
    std::vector<int32_t> prefix = Prompt(prefix_len, 4242, vocab);
    std::vector<int32_t> a = prefix, b = prefix;
    for (int i = 0; i < 8; ++i) {
      a.push_back(7 + i);
      b.push_back(100 + i);
    }
    RunResult cold = RunBatch(**engine, {Input("cold", a, 1)});
    RunResult warm = RunBatch(**engine, {Input("warm", b, 1)});
    std::printf("\nTTFT, %lld-token prompt: uncached %.1f ms, prefix cached %.1f ms (%.1fx faster)\n",
                static_cast<long long>(a.size()), cold.ttft[0] * 1e3, warm.ttft[0] * 1e3,
                cold.ttft[0] / warm.ttft[0]);

    // 3. Memory.
    EngineStats s = (*engine)->Stats();
    double rss = ResidentBytes();
    double budget = static_cast<double>(model->weight_bytes()) + static_cast<double>(s.kv_cache_bytes);
    std::printf("memory: RSS %.1f MB vs model %.1f MB + KV %.1f MB = %.1f MB (%.0f%%)\n", rss / 1e6,
                model->weight_bytes() / 1e6, s.kv_cache_bytes / 1e6, budget / 1e6, 100.0 * rss / budget);
    return 0;
  });
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) { return ferry::bench::Main(argc, argv); }
