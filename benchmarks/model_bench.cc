// ferry-model-bench: prefill and batch-1 decode tokens/s of a model on the
// CPU engine, with the memory-bandwidth floor beside each decode figure.
//
//   ferry-model-bench --model PATH [--threads 1,2] [--prompt-tokens 128]
//                     [--gen-tokens 128] [--reps 3] [--bandwidth-gbs 1T,2T]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "benchmarks/bandwidth.h"
#include "benchmarks/bench_model.h"
#include "common/logging.h"
#include "common/thread_pool.h"
#include "engine/llama_forward.h"
#include "engine/model.h"
#include "tools/flags.h"

namespace ferry::bench {
namespace {

constexpr int kBlockSize = 16;

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Bytes one decode step streams: every matrix once, one embedding row.
double DecodeBytesPerToken(const Model& model) {
  const ModelWeights& w = model.weights();
  auto bytes = [](const cpu::WeightMatrix& m) {
    return static_cast<double>(DTypeBytes(m.dtype, uint64_t(m.rows) * m.cols).value_or(0));
  };
  double total = bytes(w.output) + bytes(w.embedding) / w.embedding.rows;
  for (const LayerWeights& l : w.layers) {
    for (const cpu::WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      total += bytes(*m);
    }
  }
  return total;
}

struct Result {
  double prefill_tps = 0;
  double decode_tps = 0;
};

Result Run(const Model& model, int threads, int prompt_tokens, int gen_tokens, int reps) {
  ThreadPool pool(threads);
  LlamaForward forward(model, pool);
  const int total = prompt_tokens + gen_tokens;
  const int blocks = (total + kBlockSize - 1) / kBlockSize;
  auto kv = KvCache::Create(forward.KvShape(kBlockSize, blocks));
  if (!kv.ok()) {
    std::fprintf(stderr, "%s\n", std::string(kv.status().message()).c_str());
    std::exit(1);
  }
  std::vector<int32_t> table(blocks);
  for (int i = 0; i < blocks; ++i) table[i] = i;
  const int vocab = model.config().vocab_size;
  std::vector<float> logits(vocab);
  std::vector<int32_t> prompt(prompt_tokens), positions(prompt_tokens);
  for (int i = 0; i < prompt_tokens; ++i) {
    prompt[i] = (i * 7919 + 13) % vocab;
    positions[i] = i;
  }
  Result best;
  for (int r = 0; r < reps; ++r) {
    int32_t qs[2] = {0, prompt_tokens}, lens[1] = {prompt_tokens},
            indptr[2] = {0, (prompt_tokens + kBlockSize - 1) / kBlockSize}, row[1] = {prompt_tokens - 1};
    ForwardBatch b{prompt, positions, qs, lens, indptr, table, row};
    auto t0 = std::chrono::steady_clock::now();
    if (!forward.Forward(b, **kv, logits.data()).ok()) std::exit(1);
    auto t1 = std::chrono::steady_clock::now();
    best.prefill_tps = std::max(best.prefill_tps, prompt_tokens / Seconds(t0, t1));
    int32_t token = 1;
    auto d0 = std::chrono::steady_clock::now();
    for (int i = 0; i < gen_tokens; ++i) {
      int pos = prompt_tokens + i;
      int32_t tok[1] = {token}, p[1] = {pos}, dqs[2] = {0, 1}, dl[1] = {pos + 1},
              di[2] = {0, pos / kBlockSize + 1}, dr[1] = {0};
      ForwardBatch d{tok, p, dqs, dl, di, table, dr};
      if (!forward.Forward(d, **kv, logits.data()).ok()) std::exit(1);
      token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
    auto d1 = std::chrono::steady_clock::now();
    best.decode_tps = std::max(best.decode_tps, gen_tokens / Seconds(d0, d1));
  }
  return best;
}

int Main(int argc, char** argv) {
  std::string model_path, threads_list = "1,2", bandwidth_list;
  int64_t prompt_tokens = 128, gen_tokens = 128, reps = 3;
  bool map_weights = false, fp32_activations = false;
  FlagParser flags("model-bench", "Prefill and batch-1 decode tokens/s against the memory-bandwidth floor.");
  flags.AddString("model", &model_path, "GGUF file or Hugging Face directory");
  flags.AddString("threads", &threads_list, "comma-separated thread counts");
  flags.AddInt("prompt-tokens", &prompt_tokens, "prefill length");
  flags.AddInt("gen-tokens", &gen_tokens, "decode steps");
  flags.AddInt("reps", &reps, "repetitions (best is reported)");
  flags.AddString("bandwidth-gbs", &bandwidth_list,
                  "measured read bandwidth per thread count (GB/s, comma-separated); measured when empty");
  flags.AddBool("mmap", &map_weights, "decode from the file's mapping instead of a copy in memory");
  flags.AddBool("fp32-activations", &fp32_activations,
                "no integer kernels for Q8_0, Q4_0, Q5_0 and k-quant weights: they stay in the "
                "file's layout");
  return RunWithFlags(flags, argc, argv, [&]() -> int {
    (void)SetupLogging("warn");
    std::shared_ptr<const Model> model =
        bench::LoadModelOrReport(model_path, map_weights, !fp32_activations);
    if (!model) return 1;
    std::vector<int> threads;
    for (absl::string_view t : absl::StrSplit(threads_list, ',')) {
      int v;
      if (!absl::SimpleAtoi(t, &v) || v < 1) {
        std::fprintf(stderr, "error: bad --threads\n");
        return 2;
      }
      threads.push_back(v);
    }
    std::vector<double> bandwidth;
    for (absl::string_view t : absl::StrSplit(bandwidth_list, ',', absl::SkipEmpty())) {
      double v;
      if (!absl::SimpleAtod(t, &v)) return 2;
      bandwidth.push_back(v);
    }
    const double bytes = DecodeBytesPerToken(*model);
    std::printf("model %s: %.1f MB read per decode token\n", model->id().c_str(), bytes / 1e6);
    std::printf("| model | threads | pp%lld tok/s | tg%lld tok/s | bandwidth GB/s | floor tok/s | tg / floor |\n",
                static_cast<long long>(prompt_tokens), static_cast<long long>(gen_tokens));
    std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < threads.size(); ++i) {
      double bw = i < bandwidth.size() ? bandwidth[i] : MeasureReadBandwidthGBs(threads[i]);
      Result r = Run(*model, threads[i], static_cast<int>(prompt_tokens), static_cast<int>(gen_tokens),
                     static_cast<int>(reps));
      double floor = bw * 1e9 / bytes;
      std::printf("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.2f |\n", model->id().c_str(), threads[i],
                  r.prefill_tps, r.decode_tps, bw, floor, r.decode_tps / floor);
      std::fflush(stdout);
    }
    return 0;
  });
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) { return ferry::bench::Main(argc, argv); }
