// ferry-cuda-bench: the CUDA backend against the device's own limits.
//   - device-to-device copy bandwidth (bytes read + written) and the bf16
//     GEMM rate of cuBLASLt: the two ceilings
//   - paged decode attention: KV bytes read / kernel time at contexts 1k..32k
//     and batch 1..64, as a fraction of the copy bandwidth
//   - prefill attention and the prefill of a whole model (2k tokens) as a
//     fraction of the GEMM rate
//   - a model's decode step at batch 1 and 64 against its floor
//     (weights + KV bytes over the copy bandwidth)
//
//   ferry-cuda-bench [--model PATH] [--dtype bfloat16] [--csv FILE]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "benchmarks/bench_model.h"
#include "common/logging.h"
#include "cuda/api.h"
#include "engine/backend.h"
#include "tools/flags.h"

namespace ferry::bench {
namespace {

struct DevBuf {
  void* p = nullptr;
  explicit DevBuf(size_t n) {
    if (!cuda::Malloc(&p, n).empty()) {
      std::fprintf(stderr, "cannot allocate %zu bytes\n", n);
      std::exit(1);
    }
  }
  ~DevBuf() { cuda::Free(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

void Fill(void* dst, size_t bytes, uint32_t seed) {
  // Random half-precision-safe bit patterns: small normal numbers.
  std::vector<float> f(bytes / 2);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0, 1);
  for (float& x : f) x = d(rng);
  std::vector<char> h(bytes);
  cuda::ConvertFromF32(cuda::DType::kBF16, f.data(), f.size(), h.data());
  cuda::CopyToDevice(dst, h.data(), bytes);
}

template <typename Fn>
double MedianMs(Fn&& fn, int reps, void* stream) {
  for (int i = 0; i < 3; ++i) fn();
  cuda::StreamSynchronize(stream);
  std::vector<float> ms;
  cuda::EventTimer t(stream);
  for (int i = 0; i < reps; ++i) {
    t.Start();
    fn();
    ms.push_back(t.StopMs());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void Check(const cuda::Error& e, const char* what) {
  if (!e.empty()) {
    std::fprintf(stderr, "%s: %s\n", what, e.c_str());
    std::exit(1);
  }
}

double CopyBandwidth(void* stream) {
  const size_t bytes = size_t(2) << 30;
  DevBuf a(bytes), b(bytes);
  cuda::Memset(a.p, 1, bytes, stream);
  double ms = MedianMs([&] { cuda::CopyOnDevice(b.p, a.p, bytes, stream); }, 20, stream);
  return 2.0 * bytes / (ms * 1e-3) / 1e9;  // read + write
}

double GemmRate(cuda::Gemm& gemm, int64_t m, int64_t n, int64_t k, void* stream) {
  DevBuf x(m * k * 2), w(n * k * 2), y(m * n * 2);
  Fill(x.p, m * k * 2, 1);
  Fill(w.p, n * k * 2, 2);
  double ms = MedianMs(
      [&] { Check(gemm.Run(cuda::DType::kBF16, cuda::DType::kBF16, x.p, w.p, nullptr, y.p, m, n, k, stream), "gemm"); },
      20, stream);
  return 2.0 * m * n * k / (ms * 1e-3) / 1e12;
}

struct AttnShape {
  int heads, kv_heads, head_dim;
};

// One layer of paged bf16 KV (16-token blocks), the integer metadata on the
// device and a query buffer: what every attention benchmark sets up.
struct AttnSetup {
  std::unique_ptr<DevBuf> cache, meta, q, out;
  cuda::AttentionParams p;
  int32_t* ints = nullptr;  // the metadata, in the order it was given

  AttnSetup(const AttnShape& s, int64_t num_blocks, int q_rows, const std::vector<int32_t>& meta_ints) {
    cuda::KvLayout kv;
    kv.num_layers = 1;
    kv.num_kv_heads = s.kv_heads;
    kv.head_dim = s.head_dim;
    kv.block_size = 16;
    const size_t kv_bytes = size_t(num_blocks) * kv.block_elems() * 2;
    cache = std::make_unique<DevBuf>(kv_bytes);
    Fill(cache->p, std::min<size_t>(kv_bytes, size_t(256) << 20), 3);  // contents do not change the work
    kv.base = cache->p;
    meta = std::make_unique<DevBuf>(meta_ints.size() * 4);
    cuda::CopyToDevice(meta->p, meta_ints.data(), meta_ints.size() * 4);
    ints = static_cast<int32_t*>(meta->p);
    const size_t qn = size_t(q_rows) * s.heads * s.head_dim;
    q = std::make_unique<DevBuf>(qn * 2);
    out = std::make_unique<DevBuf>(qn * 2);
    Fill(q->p, qn * 2, 5);
    p.q = q->p;
    p.out = out->p;
    p.kv = kv;
    p.layer = 0;
    p.num_heads = s.heads;
    p.scale = 1.0f / std::sqrt(float(s.head_dim));
  }
};

// Decode attention over `batch` sequences of `ctx` tokens in a paged cache
// of one layer; blocks shuffled. Returns GB/s of K+V bytes read.
double DecodeAttentionGbs(const AttnShape& s, int batch, int ctx, int sm_count, void* stream, double* ms_out,
                          int variant = 0) {
  const int blocks_per_seq = (ctx + 15) / 16;
  const int64_t num_blocks = int64_t{batch} * blocks_per_seq;
  std::vector<int32_t> indices(num_blocks), indptr(batch + 1), seq(batch), pos(batch), rows(batch);
  std::iota(indices.begin(), indices.end(), 0);
  std::shuffle(indices.begin(), indices.end(), std::mt19937(4));
  for (int b = 0; b <= batch; ++b) indptr[b] = b * blocks_per_seq;
  for (int b = 0; b < batch; ++b) seq[b] = b, pos[b] = ctx - 1, rows[b] = b;
  std::vector<int32_t> meta;
  for (auto* v : {&indices, &indptr, &seq, &pos, &rows}) meta.insert(meta.end(), v->begin(), v->end());
  AttnSetup a(s, num_blocks, batch, meta);
  cuda::AttentionParams& p = a.p;
  p.block_indices = a.ints;
  p.block_indptr = a.ints + num_blocks;
  p.token_seq = p.block_indptr + batch + 1;
  p.positions = p.token_seq + batch;
  p.rows = p.positions + batch;
  p.num_rows = batch;
  p.max_context = ctx;
  p.sm_count = sm_count;
  p.workspace_bytes = cuda::AttentionWorkspaceBytes(batch, s.heads, s.kv_heads, s.head_dim, ctx, sm_count);
  DevBuf ws(std::max<size_t>(p.workspace_bytes, 16));
  p.workspace = ws.p;
  p.decode_variant = variant;
  double ms = MedianMs([&] { Check(cuda::LaunchDecodeAttention(cuda::DType::kBF16, p, stream), "attention"); }, 30,
                       stream);
  *ms_out = ms;
  const double bytes = double(batch) * ctx * s.kv_heads * s.head_dim * 2 /*K,V*/ * 2 /*bf16*/;
  return bytes / (ms * 1e-3) / 1e9;
}

// Causal prefill attention of one `n`-token sequence (no cached prefix):
// TFLOP/s counting the unmasked half of QKᵀ and PV.
double PrefillAttentionTflops(const AttnShape& s, int n, void* stream) {
  const int nb = (n + 15) / 16;
  std::vector<int32_t> meta;  // indices, indptr, seq, pos, tiles
  for (int b = 0; b < nb; ++b) meta.push_back(b);
  meta.push_back(0);
  meta.push_back(nb);
  for (int t = 0; t < n; ++t) meta.push_back(0);
  for (int t = 0; t < n; ++t) meta.push_back(t);
  int tiles = 0;
  for (int t = 0; t < n; t += 64, ++tiles) meta.insert(meta.end(), {0, t, std::min(n, t + 64)});
  AttnSetup a(s, nb, n, meta);
  cuda::AttentionParams& p = a.p;
  p.block_indices = a.ints;
  p.block_indptr = a.ints + nb;
  p.token_seq = a.ints + nb + 2;
  p.positions = p.token_seq + n;
  p.tiles = p.positions + n;
  p.num_tiles = tiles;
  double ms = MedianMs([&] { Check(cuda::LaunchPrefillAttention(cuda::DType::kBF16, p, stream), "prefill"); }, 10,
                       stream);
  const double flops = 4.0 * double(n) * n / 2 * s.head_dim * s.heads;
  return flops / (ms * 1e-3) / 1e12;
}

// GEMMs at a model's decode shapes: GB/s of weight bytes read.
void DecodeGemmTable(cuda::Gemm& gemm, const std::vector<std::pair<int, int>>& shapes, double bw, void* stream) {
  std::printf("\ncuBLASLt GEMMs at decode shapes (bf16, autotuned): GB/s of weights read, fraction of copy\n");
  std::printf("| n x k | m=1 | m=16 | m=64 |\n|---|---:|---:|---:|\n");
  for (auto [n, k] : shapes) {
    std::printf("| %d x %d |", n, k);
    for (int m : {1, 16, 64}) {
      DevBuf x(size_t(m) * k * 2), w(size_t(n) * k * 2), y(size_t(m) * n * 2);
      Fill(x.p, size_t(m) * k * 2, 8);
      Fill(w.p, std::min<size_t>(size_t(n) * k * 2, size_t(64) << 20), 9);
      double ms = MedianMs(
          [&] { Check(gemm.Run(cuda::DType::kBF16, cuda::DType::kBF16, x.p, w.p, nullptr, y.p, m, n, k, stream), "g"); },
          20, stream);
      double g = double(n) * k * 2 / (ms * 1e-3) / 1e9;
      std::printf(" %.0f (%.0f%%, %.1f us) |", g, 100 * g / bw, ms * 1e3);
    }
    std::printf("\n");
  }
}

// A model's decode step: `batch` sequences at context `ctx`, through the
// backend's Forward (host batch assembly and the logits copy included).
double ModelStepMs(ForwardBackend& be, int vocab, int batch, int ctx, int new_tokens) {
  const int bs = be.kv_shape().block_size;
  const int blocks_per_seq = (ctx + bs - 1) / bs;
  std::vector<int32_t> tokens, positions, qs{0}, lens, indptr{0}, indices, rows;
  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < new_tokens; ++t) {
      tokens.push_back((7 * b + 13 * t) % vocab);
      positions.push_back(ctx - new_tokens + t);
    }
    qs.push_back(static_cast<int32_t>(tokens.size()));
    lens.push_back(ctx);
    for (int k = 0; k < blocks_per_seq; ++k) indices.push_back(b * blocks_per_seq + k);
    indptr.push_back(static_cast<int32_t>(indices.size()));
    rows.push_back(static_cast<int32_t>(tokens.size()) - 1);
  }
  std::vector<float> logits(size_t(batch) * vocab);
  ForwardBatch fb{tokens, positions, qs, lens, indptr, indices, rows};
  for (int i = 0; i < 2; ++i) {
    absl::Status s = be.Forward(fb, logits.data());
    if (!s.ok()) {
      std::fprintf(stderr, "forward: %s\n", std::string(s.message()).c_str());
      std::exit(1);
    }
  }
  std::vector<double> ms;
  for (int i = 0; i < 10; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    (void)be.Forward(fb, logits.data());
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int Main(int argc, char** argv) {
  std::string model_path, dtype = "bfloat16", csv_path;
  bool skip_attention = false;
  FlagParser flags("cuda-bench", "CUDA backend kernels and model steps against the device's limits.");
  flags.AddString("model", &model_path, "model for the step benchmarks (GGUF or HF directory); none: kernels only");
  flags.AddString("dtype", &dtype, "model dtype on the GPU");
  flags.AddString("csv", &csv_path, "also write the attention sweep as CSV here");
  flags.AddBool("skip-attention", &skip_attention, "skip the attention sweep");
  return RunWithFlags(flags, argc, argv, [&]() -> int {
    (void)SetupLogging("warn");
    if (cuda::DeviceCount() == 0) {
      std::fprintf(stderr, "no CUDA device is visible\n");
      return 1;
    }
    cuda::DeviceProps props;
    Check(cuda::GetDeviceProps(0, &props), "props");
    void* stream = nullptr;
    Check(cuda::StreamCreate(&stream), "stream");
    std::printf("device: %s, %d SMs, %.1f GiB\n", props.name.c_str(), props.sm_count, props.total_memory / 1073741824.0);
    const double bw = CopyBandwidth(stream);
    std::unique_ptr<cuda::Gemm> gemm;
    Check(cuda::Gemm::Create(&gemm), "gemm");
    const double peak = GemmRate(*gemm, 8192, 8192, 8192, stream);
    std::printf("device-to-device copy: %.0f GB/s (read + write)\nbf16 GEMM 8192^3: %.0f TFLOP/s\n", bw, peak);
    std::printf("bf16 GEMM 2048x5632x2048: %.0f TFLOP/s; 2048x2048x2048: %.0f TFLOP/s\n",
                GemmRate(*gemm, 2048, 5632, 2048, stream), GemmRate(*gemm, 2048, 2048, 2048, stream));

    std::printf("prefill attention bf16, 2048 tokens, 32/4 heads, head_dim 64: %.0f TFLOP/s; 32/8 heads x 128: %.0f TFLOP/s\n",
                PrefillAttentionTflops({32, 4, 64}, 2048, stream), PrefillAttentionTflops({32, 8, 128}, 2048, stream));
    std::printf("\ndecode attention variants (threads per CTA, keys in flight per thread): GB/s\n");
    std::printf("| shape | batch | context | two-pass 128/4 | 256/4 | 128/8 | one-pass 128/4 | 256/4 | 128/8 |\n"
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (AttnShape s : {AttnShape{32, 8, 128}, AttnShape{32, 4, 64}}) {
      for (auto [batch, ctx] : std::vector<std::pair<int, int>>{{1, 4096}, {1, 32768}, {8, 8192}, {64, 2048}, {64, 32768}}) {
        std::printf("| %d/%d/%d | %d | %d |", s.heads, s.kv_heads, s.head_dim, batch, ctx);
        for (int v = 1; v <= 6; ++v) {
          double ms = 0;
          std::printf(" %.0f |", DecodeAttentionGbs(s, batch, ctx, props.sm_count, stream, &ms, v));
        }
        std::printf("\n");
        std::fflush(stdout);
      }
    }

    if (!skip_attention) {
      std::FILE* csv = csv_path.empty() ? nullptr : std::fopen(csv_path.c_str(), "w");
      if (csv) std::fprintf(csv, "heads,kv_heads,head_dim,batch,context,ms,gbs,fraction\n");
      for (AttnShape s : {AttnShape{32, 8, 128}, AttnShape{32, 4, 64}}) {
        std::printf("\ndecode attention bf16, %d heads / %d KV heads, head_dim %d (GB/s of KV read, fraction of copy)\n",
                    s.heads, s.kv_heads, s.head_dim);
        std::printf("| batch \\ context | 1k | 2k | 4k | 8k | 16k | 32k |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (int batch : {1, 8, 32, 64}) {
          std::printf("| %d |", batch);
          for (int ctx : {1024, 2048, 4096, 8192, 16384, 32768}) {
            double ms = 0;
            double g = DecodeAttentionGbs(s, batch, ctx, props.sm_count, stream, &ms);
            std::printf(" %.0f (%.0f%%) |", g, 100 * g / bw);
            if (csv) std::fprintf(csv, "%d,%d,%d,%d,%d,%.5f,%.1f,%.3f\n", s.heads, s.kv_heads, s.head_dim, batch, ctx,
                                  ms, g, g / bw);
            std::fflush(stdout);
          }
          std::printf("\n");
        }
      }
      if (csv) std::fclose(csv);
    }

    if (model_path.empty()) return 0;
    DecodeGemmTable(*gemm, {{2560, 2048}, {2048, 2048}, {11264, 2048}, {2048, 5632}, {32000, 2048}}, bw, stream);
    std::shared_ptr<const Model> loaded = bench::LoadModelOrReport(model_path, /*map_weights=*/true);
    if (!loaded) return 1;
    const Model& model = *loaded;
    const ModelConfig& c = model.config();
    EngineOptions o;
    o.device = "cuda:0";
    o.dtype = dtype;
    o.max_num_batched_tokens = 2048;
    o.max_num_seqs = 64;
    o.max_model_len = 4096;
    o.kv_cache_fraction = 0.5;
    auto be = CreateCudaBackend(model, o);
    if (!be.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(be.status().message()).c_str());
      return 1;
    }
    double params = 0;
    for (const LayerWeights& L : model.weights().layers) {
      for (const cpu::WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) {
        params += double(w->rows) * w->cols;
      }
    }
    const double head_params = double(c.vocab_size) * c.hidden_size;
    const double es = dtype == "float32" ? 4 : 2;
    std::printf("\nmodel %s: %.0f M parameters in layers + %.0f M output head, %s on %s\n", model.id().c_str(),
                params / 1e6, head_params / 1e6, dtype.c_str(), (*be)->Describe().c_str());
    std::printf("| batch | context | step ms | tok/s | floor ms (weights + KV over copy bw) | step / floor |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|\n");
    for (int batch : {1, 16, 64}) {
      for (int ctx : {512, 2048}) {
        double ms = ModelStepMs(**be, c.vocab_size, batch, ctx, 1);
        double kv = double(batch) * ctx * c.num_layers * 2 * c.kv_dim() * es;
        double floor_ms = ((params + head_params) * es + kv) / (bw * 1e9) * 1e3;
        std::printf("| %d | %d | %.3f | %.0f | %.3f | %.2fx |\n", batch, ctx, ms, batch / ms * 1e3, floor_ms,
                    ms / floor_ms);
        std::fflush(stdout);
      }
    }
    // Prefill of 2048 tokens (one sequence), FLOPs of GEMMs + causal attention.
    const int n = 2048;
    double ms = ModelStepMs(**be, c.vocab_size, 1, n, n);
    double flops = 2.0 * params * n + 2.0 * head_params + 2.0 * c.num_layers * double(n) * n * c.q_dim();
    std::printf("\nprefill %d tokens: %.2f ms, %.0f TFLOP/s = %.0f%% of the 8192^3 GEMM rate\n", n, ms,
                flops / (ms * 1e-3) / 1e12, 100 * flops / (ms * 1e-3) / 1e12 / peak);
    return 0;
  });
}

}  // namespace
}  // namespace ferry::bench

int main(int argc, char** argv) { return ferry::bench::Main(argc, argv); }
