// MatMul: splits the rows of W (output features) across the pool and runs
// the chosen level's kernels on each thread's share.
//
// Decode (small m) streams each weight once from memory: it is bound by
// memory bandwidth, so the split only has to keep every core's loads busy.
// Prefill (large m) is bound by arithmetic and goes through an fp32 GEMM;
// other dtypes are first widened to fp32 a tile of rows at a time, which
// costs one conversion per weight against m multiply-adds.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "engine/cpu/blas_gemm.h"
#include "engine/cpu/kernel_table.h"
#include "engine/cpu/kernels.h"

namespace ferry::cpu {
namespace {

// Below this m the weights are streamed once per row block and each x row
// runs a GEMV against the block while it is in cache; at and above it the
// GEMM wins (measured with bench_kernels on AVX-512; the crossover is flat).
constexpr int64_t kGemmMinM = 8;
// Rows per thread share are a multiple of this, so the 4-row GEMV kernels,
// the 12-row GEMM kernels and the 16-row groups of the integer layouts only see a
// ragged tail in the last share.
constexpr int64_t kRowGranule = 48;
// Rows of W kept in cache while every x row of a small batch passes over them.
constexpr int64_t kBatchedGemvBlockBytes = 128 * 1024;
// fp32 tile of W converted for the GEMM: about a quarter of a 1 MiB L2.
constexpr int64_t kGemmTileBytes = 256 * 1024;
// Products one MatMulMany call takes.
constexpr int kMaxMatMulOuts = 8;
// Calls touching fewer weight bytes (times m) run on the calling thread:
// waking the pool costs more than the work.
constexpr int64_t kMinParallelBytes = 64 * 1024;

int DTypeIndex(DType t) { return static_cast<int>(t); }

int64_t RowBytes(const WeightMatrix& w) {
  const DTypeBlocking b = BlockingOf(w.dtype);
  return w.cols / b.values * b.bytes;
}

void CheckWeights(const WeightMatrix& w) {
  const bool ok_dtype = static_cast<int>(w.dtype) < kNumWeightDTypes;
  const bool ok_layout = w.layout == WeightLayout::kRows ||
                         (static_cast<int>(w.layout) <= kNumRows16Layouts &&
                          Rows16LayoutOf({w.dtype, w.rows, w.cols, w.data}) == w.layout);
  if (!ok_dtype || !ok_layout || w.cols % BlockingOf(w.dtype).values != 0 || w.rows < 0 ||
      w.cols < 0) {
    std::fprintf(stderr, "ferry::cpu::MatMul: unsupported weights (dtype %d, %lld x %lld)\n",
                 static_cast<int>(w.dtype), static_cast<long long>(w.rows),
                 static_cast<long long>(w.cols));
    std::abort();
  }
}

const char* RowPtr(const WeightMatrix& w, int64_t row_bytes, int64_t row) {
  return static_cast<const char*>(w.data) + row * row_bytes;
}

void AddBias(const float* bias, int64_t m, int64_t ld, int64_t begin, int64_t end, float* y) {
  if (bias == nullptr) return;
  for (int64_t i = 0; i < m; ++i) {
    float* yi = y + i * ld;
    for (int64_t r = begin; r < end; ++r) yi[r] += bias[r];
  }
}

bool IsRows16(const WeightMatrix& w) { return w.layout != WeightLayout::kRows; }

// y rows [begin, end) of a matrix in a 16-row layout (multiples of 16, or
// rows) for any m: each group of 16 rows stays in cache while every x row
// passes.
void Rows16Range(const KernelTable& t, const WeightMatrix& w, QuantizedRows x, int64_t m, float* y,
                 int64_t begin, int64_t end) {
  const GemvRows16Fn gemv = t.gemv_rows16[static_cast<int>(w.layout) - 1];
  const int64_t group_bytes = RowBytes(w) * 16;
  const int64_t blocks = w.cols / kQ8Rows16Block, sixteens = w.cols / 16;
  for (int64_t g = begin / 16; g < end / 16; ++g) {
    const char* group = static_cast<const char*>(w.data) + g * group_bytes;
    for (int64_t i = 0; i < m; i += kGemvRowsMax) {
      const QuantizedRows xi{x.q + i * w.cols, x.d + i * blocks, x.s + i * blocks,
                             x.s16 + i * sixteens};
      gemv(group, 1, w.cols, xi, std::min(kGemvRowsMax, m - i), y + i * w.rows + 16 * g, w.rows);
    }
  }
}

// y rows [begin, end) for m small x rows.
void GemvRange(const KernelTable& t, const WeightMatrix& w, int64_t row_bytes, const float* x,
               int64_t m, float* y, int64_t begin, int64_t end) {
  const GemvFn gemv = t.gemv[DTypeIndex(w.dtype)];
  if (m == 1) {
    gemv(RowPtr(w, row_bytes, begin), row_bytes, end - begin, w.cols, x, y + begin);
    return;
  }
  const GemvRowsFn gemv_rows = t.gemv_rows[DTypeIndex(w.dtype)];
  const int64_t block = std::max<int64_t>(kRowGranule, kBatchedGemvBlockBytes / std::max<int64_t>(row_bytes, 1));
  for (int64_t r0 = begin; r0 < end; r0 += block) {
    const int64_t r1 = std::min(end, r0 + block);
    if (gemv_rows != nullptr) {
      for (int64_t i = 0; i < m; i += kGemvRowsMax) {
        gemv_rows(RowPtr(w, row_bytes, r0), row_bytes, r1 - r0, w.cols, x + i * w.cols, w.cols,
                  std::min(kGemvRowsMax, m - i), y + i * w.rows + r0, w.rows, /*w_cached=*/i > 0);
      }
      continue;
    }
    for (int64_t i = 0; i < m; ++i) {
      gemv(RowPtr(w, row_bytes, r0), row_bytes, r1 - r0, w.cols, x + i * w.cols, y + i * w.rows + r0);
    }
  }
}

// GEMM through OpenBLAS: one single-threaded sgemm per tile of W rows.
void BlasGemmRange(const KernelTable& t, const WeightMatrix& w, int64_t row_bytes, const float* x,
                   int64_t m, float* y, int64_t begin, int64_t end) {
  const int64_t k = w.cols;
  if (w.dtype == DType::kF32) {
    SgemmSingleThread(x, k, reinterpret_cast<const float*>(RowPtr(w, row_bytes, begin)), k, m,
                      end - begin, k, y + begin, w.rows);
    return;
  }
  const int64_t tile_rows = std::clamp<int64_t>(kGemmTileBytes / std::max<int64_t>(k * 4, 1),
                                                kRowGranule, 256) / kRowGranule * kRowGranule;
  thread_local std::vector<float> tile;
  tile.resize(static_cast<size_t>(tile_rows * k));
  const ToF32Fn to_f32 = t.to_f32[DTypeIndex(w.dtype)];
  for (int64_t r0 = begin; r0 < end; r0 += tile_rows) {
    const int64_t n = std::min(end, r0 + tile_rows) - r0;
    for (int64_t r = 0; r < n; ++r) to_f32(RowPtr(w, row_bytes, r0 + r), k, tile.data() + r * k);
    SgemmSingleThread(x, k, tile.data(), k, m, n, k, y + r0, w.rows);
  }
}

// GEMM through the level's own panel kernels; `panels` holds x packed by
// PackPanels. Each group of kGemmWRows weight rows (widened to fp32 if
// needed) stays in L1 while every panel of x streams past it from L2.
void PanelGemmRange(const KernelTable& t, const WeightMatrix& w, int64_t row_bytes,
                    const float* panels, int64_t m, float* y, int64_t begin, int64_t end) {
  const int64_t k = w.cols;
  const int64_t num_panels = (m + kGemmPanelRows - 1) / kGemmPanelRows;
  thread_local std::vector<float> group;
  if (w.dtype != DType::kF32) group.resize(static_cast<size_t>(kGemmWRows * k));
  const ToF32Fn to_f32 = t.to_f32[DTypeIndex(w.dtype)];
  for (int64_t r0 = begin; r0 < end; r0 += kGemmWRows) {
    const int64_t n = std::min<int64_t>(end - r0, kGemmWRows);
    const float* wf = reinterpret_cast<const float*>(RowPtr(w, row_bytes, r0));
    if (w.dtype != DType::kF32) {
      for (int64_t r = 0; r < n; ++r) to_f32(RowPtr(w, row_bytes, r0 + r), k, group.data() + r * k);
      wf = group.data();
    }
    for (int64_t p = 0; p < num_panels; ++p) {
      const int64_t rows_in_panel = std::min<int64_t>(kGemmPanelRows, m - p * kGemmPanelRows);
      t.gemm_panel(wf, k, n, panels + p * kGemmPanelRows * k, k, rows_in_panel,
                   y + p * kGemmPanelRows * w.rows + r0, w.rows);
    }
  }
}

}  // namespace

void MatMulManyWithIsa(Isa isa, const MatMulOut* outs, int count, const float* x, int64_t m,
                       ThreadPool& pool, bool batch_invariant) {
  if (m <= 0 || count <= 0) return;
  const int64_t cols = outs[0].w->cols;
  int64_t total_units = 0, total_bytes = 0, total_rows = 0;
  int64_t unit_start[kMaxMatMulOuts + 1];
  int64_t row_bytes[kMaxMatMulOuts];
  if (count > kMaxMatMulOuts) {
    std::fprintf(stderr, "ferry::cpu::MatMulMany: %d products, at most %d\n", count, kMaxMatMulOuts);
    std::abort();
  }
  for (int j = 0; j < count; ++j) {
    const WeightMatrix& w = *outs[j].w;
    CheckWeights(w);
    if (w.cols != cols) {
      std::fprintf(stderr, "ferry::cpu::MatMulMany: cols %lld and %lld differ\n",
                   static_cast<long long>(cols), static_cast<long long>(w.cols));
      std::abort();
    }
    row_bytes[j] = RowBytes(w);
    unit_start[j] = total_units;
    total_units += (w.rows + kRowGranule - 1) / kRowGranule;
    total_bytes += w.rows * row_bytes[j];
    total_rows += w.rows;
  }
  unit_start[count] = total_units;
  if (total_rows == 0) return;
  const KernelTable& t = GetKernelTable(isa);
  const bool use_gemm = !batch_invariant && m >= kGemmMinM && cols > 0;
  const bool parallel = pool.num_threads() > 1 && total_bytes * m >= kMinParallelBytes &&
                        total_rows >= 2 * kRowGranule;

  // x quantized to int8 once for the products in 16-row layouts, by the calling
  // thread into buffers it keeps (the lambdas below use the pointers).
  bool any_packed = false, all_packed = true;
  for (int j = 0; j < count; ++j) {
    const bool packed = IsRows16(*outs[j].w);
    any_packed = any_packed || packed;
    all_packed = all_packed && packed;
  }
  thread_local std::vector<int8_t> xq_buffer;
  thread_local std::vector<float> xd_buffer;
  thread_local std::vector<int32_t> xs_buffer, xs16_buffer;
  QuantizedRows xq{nullptr, nullptr, nullptr, nullptr};
  if (any_packed) {
    const int64_t blocks = cols / kQ8Rows16Block, sixteens = cols / 16;
    xq_buffer.resize(static_cast<size_t>(m * cols));
    xd_buffer.resize(static_cast<size_t>(m * blocks));
    xs_buffer.resize(static_cast<size_t>(m * blocks));
    xs16_buffer.resize(static_cast<size_t>(m * sixteens));
    for (int64_t i = 0; i < m; ++i) {
      QuantizeActivationRow(x + i * cols, cols, xq_buffer.data() + i * cols,
                            xd_buffer.data() + i * blocks, xs_buffer.data() + i * blocks,
                            xs16_buffer.data() + i * sixteens);
    }
    xq = {xq_buffer.data(), xd_buffer.data(), xs_buffer.data(), xs16_buffer.data()};
  }

  // x packed for the panel kernels, once for every product; kept by the
  // calling thread across calls. A thread_local name means each thread's own
  // copy, so the lambdas below (which run on the workers too) must use the
  // pointer, not the vector.
  thread_local std::vector<float> panel_buffer;
  float* panels = nullptr;
  const bool use_panels = use_gemm && t.gemm_panel != nullptr && !all_packed;
  if (use_panels) {
    const int64_t num_panels = (m + kGemmPanelRows - 1) / kGemmPanelRows;
    panel_buffer.resize(static_cast<size_t>(num_panels * kGemmPanelRows * cols));
    panels = panel_buffer.data();
    auto pack = [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        t.pack_panel(x + p * kGemmPanelRows * cols, cols,
                     std::min<int64_t>(kGemmPanelRows, m - p * kGemmPanelRows), cols,
                     panels + p * kGemmPanelRows * cols);
      }
    };
    if (parallel) {
      pool.ParallelFor(num_panels, pack);
    } else {
      pack(0, num_panels);
    }
  }
  // Rows [begin, end) of product j.
  auto run = [&](int j, int64_t begin, int64_t end) {
    const WeightMatrix& w = *outs[j].w;
    float* y = outs[j].y;
    if (IsRows16(w)) {
      Rows16Range(t, w, xq, m, y, begin, end);
    } else if (use_panels) {
      PanelGemmRange(t, w, row_bytes[j], panels, m, y, begin, end);
    } else if (use_gemm) {
      BlasGemmRange(t, w, row_bytes[j], x, m, y, begin, end);
    } else {
      GemvRange(t, w, row_bytes[j], x, m, y, begin, end);
    }
    AddBias(outs[j].bias, m, w.rows, begin, end, y);
  };
  // Units [u0, u1) of the concatenated products, cut at product borders.
  auto run_units = [&](int64_t u0, int64_t u1) {
    for (int j = 0; j < count && u0 < u1; ++j) {
      if (u0 >= unit_start[j + 1]) continue;
      const int64_t rows = outs[j].w->rows;
      const int64_t a = u0 - unit_start[j], b = std::min(u1, unit_start[j + 1]) - unit_start[j];
      const int64_t begin = std::min(rows, a * kRowGranule), end = std::min(rows, b * kRowGranule);
      if (begin < end) run(j, begin, end);
      u0 = unit_start[j + 1];
    }
  };
  if (!parallel) {
    run_units(0, total_units);
    return;
  }
  // Chunks are whole granules so that kernels see few ragged row groups;
  // handed out dynamically, so a descheduled thread holds up only its chunk.
  const int64_t grain = std::max<int64_t>(1, total_units / (4 * int64_t{pool.num_threads()}));
  pool.ParallelFor(total_units, run_units, grain);
}

void MatMulWithIsa(Isa isa, const WeightMatrix& w, const float* x, int64_t m, float* y,
                   const float* bias, ThreadPool& pool, bool batch_invariant) {
  const MatMulOut out{&w, y, bias};
  MatMulManyWithIsa(isa, &out, 1, x, m, pool, batch_invariant);
}

void MatMulMany(const MatMulOut* outs, int count, const float* x, int64_t m, ThreadPool& pool,
                bool batch_invariant) {
  MatMulManyWithIsa(BestIsa(), outs, count, x, m, pool, batch_invariant);
}

void MatMul(const WeightMatrix& w, const float* x, int64_t m, float* y, const float* bias,
            ThreadPool& pool, bool batch_invariant) {
  MatMulWithIsa(BestIsa(), w, x, m, y, bias, pool, batch_invariant);
}

}  // namespace ferry::cpu
