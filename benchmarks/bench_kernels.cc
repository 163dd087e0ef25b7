// Kernel benchmarks for the 110M model's shapes (dim 768, hidden 2048,
// vocab 32000).
//
// GEMV (m = 1) reports bytes/s of weights streamed. Each iteration uses the
// next of many copies of the matrix, together far larger than the last-level
// cache, so the figure is DRAM bandwidth as in a real decode step (every layer
// reads different weights) and compares with ferry-membw.
// GEMM (m = 128, prefill) reports FLOP/s; its weights stay in cache.
//
//   bench_kernels --benchmark_filter=Gemv
//   bench_kernels --benchmark_filter=Gemm
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/cpu/isa.h"
#include "engine/cpu/kernel_table.h"
#include "engine/cpu/kernels.h"

namespace ferry::cpu {
namespace {

// Bytes of weight copies cycled through by the GEMV benchmark.
constexpr int64_t kColdBytes = int64_t{1} << 29;

ThreadPool& Pool(int threads) {
  static ThreadPool one(1);
  static ThreadPool two(2);
  return threads == 1 ? one : two;
}

int64_t MatrixBytes(DType dtype, int64_t rows, int64_t cols) {
  return static_cast<int64_t>(DTypeBytes(dtype, static_cast<uint64_t>(rows * cols)).value_or(0));
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// `copies` matrices back to to back, 64-byte aligned, filled with small
// finite values of the dtype.
struct WeightCopies {
  std::unique_ptr<uint8_t, FreeDeleter> bytes;
  int64_t stride = 0;
  int64_t copies = 0;
};

WeightCopies MakeCopies(DType dtype, int64_t rows, int64_t cols, int64_t copies) {
  WeightCopies out;
  out.stride = (MatrixBytes(dtype, rows, cols) + 63) / 64 * 64;
  out.copies = copies;
  const size_t total = static_cast<size_t>(out.stride * copies);
  out.bytes.reset(static_cast<uint8_t*>(std::aligned_alloc(64, total)));
  uint8_t* p = out.bytes.get();
  if (dtype == DType::kF32) {
    for (size_t i = 0; i + 4 <= total; i += 4) {
      const float f = 0.001f * static_cast<float>(i % 977);
      std::memcpy(p + i, &f, 4);
    }
  } else if (dtype == DType::kQ8_0) {
    // Any byte is a valid int8; scales must be finite fp16, so write 0x3c00
    // (1.0) at every block start.
    for (size_t i = 0; i < total; ++i) p[i] = static_cast<uint8_t>(i * 37);
    const int64_t blocks_per_copy = rows * cols / kQ8_0BlockValues;
    for (int64_t c = 0; c < copies; ++c) {
      for (int64_t b = 0; b < blocks_per_copy; ++b) {
        const uint16_t one = 0x3c00;
        std::memcpy(p + c * out.stride + b * kQ8_0BlockBytes, &one, 2);
      }
    }
  } else if (dtype != DType::kF16 && dtype != DType::kBF16) {
    // Any quant byte is valid; the fp16 scales (d and dmin at bytes 0 and 2
    // of a Q4_K or Q5_K block, d at byte 0 of Q4_0 and Q5_0 and at byte 208
    // of Q6_K) are set to 2^-8.
    for (size_t i = 0; i < total; ++i) p[i] = static_cast<uint8_t>(i * 37);
    const int block_bytes = BlockingOf(dtype).bytes;
    const int64_t blocks_per_copy = rows * cols / BlockingOf(dtype).values;
    const uint16_t small = 0x1c00;
    for (int64_t c = 0; c < copies; ++c) {
      for (int64_t b = 0; b < blocks_per_copy; ++b) {
        uint8_t* block = p + c * out.stride + b * block_bytes;
        if (dtype == DType::kQ6_K) {
          std::memcpy(block + 208, &small, 2);
        } else {
          std::memcpy(block, &small, 2);
          if (dtype == DType::kQ4_K || dtype == DType::kQ5_K) std::memcpy(block + 2, &small, 2);
        }
      }
    }
  } else {
    // 0x3c00 + small mantissa: finite in both fp16 and bf16.
    for (size_t i = 0; i + 2 <= total; i += 2) {
      const uint16_t h = static_cast<uint16_t>(0x3c00 + (i % 255));
      std::memcpy(p + i, &h, 2);
    }
  }
  return out;
}

// Decode-style MatMul of `batch` x rows over weights cold in memory.
// With `rows16` the copies are packed for the integer kernels.
void RunColdMatMul(benchmark::State& state, int64_t batch, bool batch_invariant = false,
                   bool rows16 = false) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const DType dtype = static_cast<DType>(state.range(2));
  const int threads = static_cast<int>(state.range(3));
  const int64_t bytes = MatrixBytes(dtype, rows, cols);
  const int64_t copies = std::max<int64_t>(2, kColdBytes / bytes);
  const WeightCopies w = MakeCopies(dtype, rows, cols, copies);
  WeightLayout layout = WeightLayout::kRows;
  if (rows16) {
    layout = Rows16LayoutOf({dtype, rows, cols, w.bytes.get()});
    if (layout == WeightLayout::kRows) {
      state.SkipWithError("this dtype and shape have no 16-row layout");
      return;
    }
    for (int64_t c = 0; c < copies; ++c)
      PackRows16(layout, w.bytes.get() + c * w.stride, rows, cols);
  }
  std::vector<float> x(batch * cols, 0.5f), y(batch * rows);
  ThreadPool& pool = Pool(threads);
  int64_t next = 0;
  for (auto _ : state) {
    const WeightMatrix m{dtype, rows, cols, w.bytes.get() + next * w.stride, layout};
    MatMul(m, x.data(), batch, y.data(), nullptr, pool, batch_invariant);
    benchmark::DoNotOptimize(y.data());
    next = next + 1 == copies ? 0 : next + 1;
  }
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["FLOP/s"] = benchmark::Counter(static_cast<double>(2 * batch * rows * cols),
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(DTypeName(dtype)) + " " + IsaName(BestIsa()) +
                 (rows16 ? " rows16" : ""));
}

// Args: rows, cols, dtype (DType as int), threads.
void BM_Gemv(benchmark::State& state) { RunColdMatMul(state, 1); }

// Args: rows, cols, dtype, threads, m: the matrix packed for the integer
// kernels (int8 activations), the layout the loader gives Q8_0, Q4_0, Q5_0
// and k-quant matrices on CPUs with AVX-512 VNNI.
void BM_Q8Rows16(benchmark::State& state) { RunColdMatMul(state, state.range(4), false, true); }

// Args: rows, cols, dtype, threads, m, bi: batched decode around the switch
// from per-row GEMV to the GEMM kernels; bi = 1 keeps the batch-invariant
// kernels (the engine's default) at every m.
void BM_SmallBatch(benchmark::State& state) {
  RunColdMatMul(state, state.range(4), state.range(5) != 0);
}

// Args: rows, cols, dtype (DType as int), threads, isa (Isa as int); m = 128.
// On AVX-512 the GEMM runs Ferry's own kernels; the AVX2 level runs OpenBLAS
// sgemm (one call per pool thread), so the two rows compare them.
void BM_Gemm(benchmark::State& state) {
  constexpr int64_t kM = 128;
  const int64_t rows = state.range(0), cols = state.range(1);
  const DType dtype = static_cast<DType>(state.range(2));
  const int threads = static_cast<int>(state.range(3));
  const Isa isa = static_cast<Isa>(state.range(4));
  if (!IsaAvailable(isa)) {
    state.SkipWithError("level not available on this CPU");
    return;
  }
  const WeightCopies w = MakeCopies(dtype, rows, cols, 1);
  std::vector<float> x(kM * cols, 0.5f), y(kM * rows);
  ThreadPool& pool = Pool(threads);
  const WeightMatrix m{dtype, rows, cols, w.bytes.get()};
  for (auto _ : state) {
    MatMulWithIsa(isa, m, x.data(), kM, y.data(), nullptr, pool);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(static_cast<double>(2 * kM * rows * cols),
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(DTypeName(dtype)) + " " + IsaName(isa) +
                 (GetKernelTable(isa).gemm_panel != nullptr ? " own kernel" : " openblas"));
}

void ModelShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "cols", "dtype", "threads"});
  // The small preset's matrices, then the medium preset's (hidden 2048,
  // FFN 5632, 4 KV heads of 64).
  const int64_t shapes[][2] = {{768, 768},   {2048, 768},  {768, 2048},  {32000, 768},
                               {2048, 2048}, {256, 2048},  {5632, 2048}, {2048, 5632}, {32000, 2048}};
  for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_K,
                      DType::kQ6_K, DType::kQ4_0, DType::kQ5_0, DType::kQ5_K}) {
    for (const auto& shape : shapes) {
      for (int threads : {1, 2}) {
        b->Args({shape[0], shape[1], static_cast<int64_t>(dtype), threads});
      }
    }
  }
  b->UseRealTime();
}

void GemmShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "cols", "dtype", "threads", "isa"});
  const int64_t shapes[][2] = {{768, 768}, {2048, 768}, {768, 2048}, {32000, 768}};
  for (Isa isa : {Isa::kAvx512, Isa::kAvx2}) {
    for (DType dtype : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0}) {
      for (const auto& shape : shapes) {
        for (int threads : {1, 2}) {
          b->Args({shape[0], shape[1], static_cast<int64_t>(dtype), threads,
                   static_cast<int64_t>(isa)});
        }
      }
    }
  }
  b->UseRealTime();
}

void Q8Rows16Shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "cols", "dtype", "threads", "m"});
  const int64_t shapes[][2] = {
      {2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
  for (int64_t m : {1, 128}) {
    for (const auto& shape : shapes) {
      for (int threads : {1, 2}) {
        b->Args({shape[0], shape[1], static_cast<int64_t>(DType::kQ8_0), threads, m});
      }
    }
  }
  // The other layouts on the medium FFN.
  for (DType dtype : {DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kQ4_0, DType::kQ5_0}) {
    for (int threads : {1, 2}) b->Args({5632, 2048, static_cast<int64_t>(dtype), threads, 1});
  }
  b->UseRealTime();
}

void SmallBatchShapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "cols", "dtype", "threads", "m", "bi"});
  for (DType dtype : {DType::kF32, DType::kF16}) {
    for (int64_t m : {2, 4, 6, 8, 12, 16, 32}) {
      for (int64_t threads : {1, 2}) {
        for (int64_t bi : {0, 1}) b->Args({2048, 768, static_cast<int64_t>(dtype), threads, m, bi});
      }
    }
  }
  b->UseRealTime();
}

void VectorOpArgs(benchmark::internal::Benchmark* b) { b->Arg(768)->Arg(2048)->Arg(32000); }

void BM_RmsNorm(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::vector<float> x(n, 0.3f), w(n, 1.1f), out(n);
  for (auto _ : state) {
    RmsNorm(x.data(), w.data(), n, 1e-5f, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// Args: dtype, m. One 256 x 2048 matrix in its 16-row layout, the same one
// every time so that it stays in L2, on one thread: what the integer kernels
// compute per second when memory is not the limit.
void BM_Rows16Hot(benchmark::State& state) {
  const int64_t rows = 256, cols = 2048, m = state.range(1);
  const DType dtype = static_cast<DType>(state.range(0));
  const WeightCopies w = MakeCopies(dtype, rows, cols, 1);
  const WeightLayout layout = Rows16LayoutOf({dtype, rows, cols, w.bytes.get()});
  PackRows16(layout, w.bytes.get(), rows, cols);
  const WeightMatrix matrix{dtype, rows, cols, w.bytes.get(), layout};
  std::vector<float> x(m * cols, 0.5f), y(m * rows);
  for (int64_t k = 0; k < m * cols; ++k) x[k] = 0.01f * static_cast<float>(k % 101) - 0.5f;
  ThreadPool& pool = Pool(1);
  for (auto _ : state) {
    MatMul(matrix, x.data(), m, y.data(), nullptr, pool);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["weights/s"] = benchmark::Counter(static_cast<double>(m * rows * cols),
                                                   benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(DTypeName(dtype)));
}

void Rows16HotArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"dtype", "m"});
  for (DType dtype :
       {DType::kQ8_0, DType::kQ4_K, DType::kQ5_K, DType::kQ6_K, DType::kQ4_0, DType::kQ5_0}) {
    for (int64_t m : {1, 4}) b->Args({static_cast<int64_t>(dtype), m});
  }
}

void BM_Softmax(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::vector<float> x(n);
  for (auto _ : state) {
    for (int64_t i = 0; i < n; ++i) x[i] = static_cast<float>(i % 17) * 0.25f;
    Softmax(x.data(), n);
    benchmark::DoNotOptimize(x.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_SiluMul(benchmark::State& state) {
  const int64_t n = state.range(0);
  std::vector<float> g(n, 0.7f), u(n, 1.3f), out(n);
  for (auto _ : state) {
    SiluMul(g.data(), u.data(), n, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

BENCHMARK(BM_Gemv)->Apply(ModelShapes);
BENCHMARK(BM_Q8Rows16)->Apply(Q8Rows16Shapes);
BENCHMARK(BM_Rows16Hot)->Apply(Rows16HotArgs);
BENCHMARK(BM_Gemm)->Apply(GemmShapes);
BENCHMARK(BM_SmallBatch)->Apply(SmallBatchShapes);
BENCHMARK(BM_RmsNorm)->Apply(VectorOpArgs);
BENCHMARK(BM_Softmax)->Apply(VectorOpArgs);
BENCHMARK(BM_SiluMul)->Apply(VectorOpArgs);

}  // namespace
}  // namespace ferry::cpu

BENCHMARK_MAIN();
