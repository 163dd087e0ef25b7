// AVX-512 (F/BW/VL) kernels. Built with -mavx512f -mavx512bw -mavx512vl
// -mfma -mf16c and reached only through the table after the CPU check.
//
// Everything here sits in an anonymous namespace and uses no std templates:
// an out-of-line copy of a shared inline function emitted from this file
// could be picked by the linker for baseline code and crash older CPUs.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "common/cpu_features.h"
#include "engine/cpu/kernel_table.h"
#include "engine/cpu/rows16_simd.h"
#include "engine/cpu/simd_exp.h"

namespace ferry::cpu {
namespace {

constexpr int64_t kQ8Block = 32;
constexpr int64_t kQ8BlockBytes = 34;

__mmask16 TailMask(int64_t left) { return static_cast<__mmask16>((1u << left) - 1u); }

// Horizontal sum and max, folding halves.
__m256 HighHalf(__m512 v) { return _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, 0xee)); }

float ReduceAdd(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), HighHalf(v));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

float ReduceMax(__m512 v) {
  const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(v), HighHalf(v));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Software prefetch distance, in bytes of the weight stream, for the kernels
// that read several rows at once (the multi-row GEMV tile, Q8_0): each row is
// a short stream (0.8-3 KiB for the 110M model), too short for the hardware
// prefetcher to get ahead; prefetching the matrix linearly this far ahead
// keeps enough misses in flight (measured: 84 against 131 us for a 2048x768
// F16 matrix and 4 rows of x). The one-row GEMV reads a single linear stream
// and needs none. Addresses past the end are harmless: prefetches never
// fault.
constexpr int64_t kPrefetchBytes = 4096;

// Prefetches the lines in [p, p + bytes).
template <int64_t kBytes>
void PrefetchSpan(const char* p) {
#pragma GCC unroll 8
  for (int64_t off = 0; off < kBytes; off += 64) _mm_prefetch(p + off, _MM_HINT_T0);
}

// Loads 16 weights starting at element k of a row, as fp32.
struct F32Weights {
  static constexpr int64_t kBytes = 4;
  static __m512 Load(const void* row, int64_t k) {
    return _mm512_loadu_ps(static_cast<const float*>(row) + k);
  }
  static __m512 LoadTail(const void* row, int64_t k, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, static_cast<const float*>(row) + k);
  }
};

struct F16Weights {
  static constexpr int64_t kBytes = 2;
  static __m512 Load(const void* row, int64_t k) {
    return _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + k)));
  }
  static __m512 LoadTail(const void* row, int64_t k, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(row) + k));
  }
};

struct Bf16Weights {
  static constexpr int64_t kBytes = 2;
  static __m512 Widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static __m512 Load(const void* row, int64_t k) {
    return Widen(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + k)));
  }
  static __m512 LoadTail(const void* row, int64_t k, __mmask16 m) {
    return Widen(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(row) + k));
  }
};

// Makes the compiler hold v in a register: without it GCC folds the x load
// into every FMA that uses it, and the loads, not the FMAs, bound the tile.
__m512 InRegister(__m512 v) {
  asm("" : "+v"(v));
  return v;
}

// The GEMV's arithmetic for each row: two accumulators (the low and high 16
// values of each 32-value step) fed in order of k, a masked 16-wide tail into
// the first, then ReduceAdd of their sum. Every GEMV kernel here (and
// GemvTile, for batches) keeps exactly this order, so a row's result never
// depends on the kernel that computed it.
//
// One row at a time: out-of-order execution overlaps consecutive rows, and
// rows are contiguous, so the weights are one linear stream that the
// hardware prefetcher follows.
template <class W>
void GemvOneRow(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
               float* y) {
  const char* base = static_cast<const char*>(w);
  const int64_t cols32 = cols & ~int64_t{31};
  for (int64_t r = 0; r < rows; ++r) {
    const void* w0 = base + r * row_bytes;
    __m512 a0 = _mm512_setzero_ps(), b0 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k < cols32; k += 32) {
      a0 = _mm512_fmadd_ps(W::Load(w0, k), _mm512_loadu_ps(x + k), a0);
      b0 = _mm512_fmadd_ps(W::Load(w0, k + 16), _mm512_loadu_ps(x + k + 16), b0);
    }
    for (; k < cols; k += 16) {
      const __mmask16 m = cols - k >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(cols - k);
      a0 = _mm512_fmadd_ps(W::LoadTail(w0, k, m), _mm512_maskz_loadu_ps(m, x + k), a0);
    }
    y[r] = ReduceAdd(_mm512_add_ps(a0, b0));
  }
}

// Four rows at a time share each load of x; two accumulators per row hide
// the FMA latency. Memory, not arithmetic, bounds this loop.
template <class W>
void GemvFourRows(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
                  float* y) {
  const char* base = static_cast<const char*>(w);
  const int64_t cols32 = cols & ~int64_t{31};
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const void* w0 = base + r * row_bytes;
    const void* w1 = base + (r + 1) * row_bytes;
    const void* w2 = base + (r + 2) * row_bytes;
    const void* w3 = base + (r + 3) * row_bytes;
    __m512 a0 = _mm512_setzero_ps(), b0 = _mm512_setzero_ps();
    __m512 a1 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), b2 = _mm512_setzero_ps();
    __m512 a3 = _mm512_setzero_ps(), b3 = _mm512_setzero_ps();
    // Each step consumes 32 values of 4 rows; prefetch as many bytes.
    const char* prefetch = base + r * row_bytes + kPrefetchBytes;
    int64_t k = 0;
    for (; k < cols32; k += 32) {
      PrefetchSpan<4 * 32 * W::kBytes>(prefetch);
      prefetch += 4 * 32 * W::kBytes;
      const __m512 x0 = InRegister(_mm512_loadu_ps(x + k));
      const __m512 x1 = InRegister(_mm512_loadu_ps(x + k + 16));
      a0 = _mm512_fmadd_ps(W::Load(w0, k), x0, a0);
      b0 = _mm512_fmadd_ps(W::Load(w0, k + 16), x1, b0);
      a1 = _mm512_fmadd_ps(W::Load(w1, k), x0, a1);
      b1 = _mm512_fmadd_ps(W::Load(w1, k + 16), x1, b1);
      a2 = _mm512_fmadd_ps(W::Load(w2, k), x0, a2);
      b2 = _mm512_fmadd_ps(W::Load(w2, k + 16), x1, b2);
      a3 = _mm512_fmadd_ps(W::Load(w3, k), x0, a3);
      b3 = _mm512_fmadd_ps(W::Load(w3, k + 16), x1, b3);
    }
    for (; k < cols; k += 16) {
      const __mmask16 m = cols - k >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(cols - k);
      const __m512 x0 = _mm512_maskz_loadu_ps(m, x + k);
      a0 = _mm512_fmadd_ps(W::LoadTail(w0, k, m), x0, a0);
      a1 = _mm512_fmadd_ps(W::LoadTail(w1, k, m), x0, a1);
      a2 = _mm512_fmadd_ps(W::LoadTail(w2, k, m), x0, a2);
      a3 = _mm512_fmadd_ps(W::LoadTail(w3, k, m), x0, a3);
    }
    y[r] = ReduceAdd(_mm512_add_ps(a0, b0));
    y[r + 1] = ReduceAdd(_mm512_add_ps(a1, b1));
    y[r + 2] = ReduceAdd(_mm512_add_ps(a2, b2));
    y[r + 3] = ReduceAdd(_mm512_add_ps(a3, b3));
  }
  GemvOneRow<W>(base + r * row_bytes, row_bytes, rows - r, cols, x, y + r);
}

// Four rows at a time with software prefetch wins for fp32 weights, one row
// at a time for 16-bit ones (decode on the small preset, tok/s on 1 and 2
// threads: F32 67 / 136 against 49 / 95; F16 173 / 300 against 138 / 222).
template <class W>
void GemvTyped(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
               float* y) {
  if constexpr (W::kBytes == 4) {
    GemvFourRows<W>(w, row_bytes, rows, cols, x, y);
  } else {
    GemvOneRow<W>(w, row_bytes, rows, cols, x, y);
  }
}

// One tile of GemvRowsTyped: kR rows of W against kM rows of x. The low and
// high 16 values of each 32-value step are separate passes, so only kR
// weight vectors and one x vector are live beside the 2·kR·kM accumulators.
// kPrefetch: W comes from memory (the first x rows over a block of W); the
// later ones find it in cache, where prefetches only take load slots.
template <class W, int kR, int kM, bool kPrefetch>
void GemvTile(const char* w0, int64_t row_bytes, int64_t cols, const float* x, int64_t ldx,
              float* y, int64_t ldy) {
  const int64_t cols32 = cols & ~int64_t{31};
  __m512 a[kR][kM], b[kR][kM];
#pragma GCC unroll 4
  for (int j = 0; j < kR; ++j) {
#pragma GCC unroll 4
    for (int i = 0; i < kM; ++i) {
      a[j][i] = _mm512_setzero_ps();
      b[j][i] = _mm512_setzero_ps();
    }
  }
  const char* prefetch = w0 + kPrefetchBytes;
  int64_t k = 0;
  for (; k < cols32; k += 32) {
    if constexpr (kPrefetch) {
      PrefetchSpan<kR * 32 * W::kBytes>(prefetch);
      prefetch += kR * 32 * W::kBytes;
    }
    __m512 p[kR];
#pragma GCC unroll 4
    for (int j = 0; j < kR; ++j) p[j] = W::Load(w0 + j * row_bytes, k);
#pragma GCC unroll 4
    for (int i = 0; i < kM; ++i) {
      const __m512 x0 = InRegister(_mm512_loadu_ps(x + i * ldx + k));
#pragma GCC unroll 4
      for (int j = 0; j < kR; ++j) a[j][i] = _mm512_fmadd_ps(p[j], x0, a[j][i]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < kR; ++j) p[j] = W::Load(w0 + j * row_bytes, k + 16);
#pragma GCC unroll 4
    for (int i = 0; i < kM; ++i) {
      const __m512 x1 = InRegister(_mm512_loadu_ps(x + i * ldx + k + 16));
#pragma GCC unroll 4
      for (int j = 0; j < kR; ++j) b[j][i] = _mm512_fmadd_ps(p[j], x1, b[j][i]);
    }
  }
  for (; k < cols; k += 16) {
    const __mmask16 m = cols - k >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(cols - k);
    __m512 p[kR];
#pragma GCC unroll 4
    for (int j = 0; j < kR; ++j) p[j] = W::LoadTail(w0 + j * row_bytes, k, m);
#pragma GCC unroll 4
    for (int i = 0; i < kM; ++i) {
      const __m512 x0 = _mm512_maskz_loadu_ps(m, x + i * ldx + k);
#pragma GCC unroll 4
      for (int j = 0; j < kR; ++j) a[j][i] = _mm512_fmadd_ps(p[j], x0, a[j][i]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < kM; ++i) {
#pragma GCC unroll 4
    for (int j = 0; j < kR; ++j) y[i * ldy + j] = ReduceAdd(_mm512_add_ps(a[j][i], b[j][i]));
  }
}

// GemvTyped for kM rows of x at once (x rows ldx apart, y rows ldy apart):
// three rows of W share each x load and every W load serves kM rows of x, so
// a small batch streams W from memory once. Each (W row, x row) pair keeps
// the same two accumulators, fed in the same order, and the same final
// reduction as GemvTyped: the results are bit-for-bit those of one GemvTyped
// call per x row, which is what keeps the engine's batches invariant.
template <class W, int kM, bool kPrefetch>
void GemvRowsTyped(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
                   int64_t ldx, float* y, int64_t ldy) {
  constexpr int kR = kM >= 3 ? 3 : 4;
  const char* base = static_cast<const char*>(w);
  int64_t r = 0;
  for (; r + kR <= rows; r += kR) {
    GemvTile<W, kR, kM, kPrefetch>(base + r * row_bytes, row_bytes, cols, x, ldx, y + r, ldy);
  }
  for (; r < rows; ++r) {
    GemvTile<W, 1, kM, kPrefetch>(base + r * row_bytes, row_bytes, cols, x, ldx, y + r, ldy);
  }
}

float Q8Scale(const char* block) {
  uint16_t bits;
  __builtin_memcpy(&bits, block, sizeof bits);
  return _cvtsh_ss(bits);
}

__m512 Q8Half(const char* block, int half) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2 + 16 * half))));
}

// Σ over one Q8_0 block of q·x from its two widened halves, still to be
// multiplied by the block scale. Every Q8_0 kernel goes through this, so
// all keep one arithmetic order.
__m512 Q8HalvesDot(__m512 lo, __m512 hi, __m512 x0, __m512 x1) {
  return _mm512_fmadd_ps(hi, x1, _mm512_mul_ps(lo, x0));
}

__m512 Q8BlockDot(const char* block, __m512 x0, __m512 x1) {
  return Q8HalvesDot(Q8Half(block, 0), Q8Half(block, 1), x0, x1);
}

void GemvQ8(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
            float* y) {
  const char* base = static_cast<const char*>(w);
  const int64_t blocks = cols / kQ8Block;
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const char* w0 = base + r * row_bytes;
    const char* w1 = w0 + row_bytes;
    const char* w2 = w1 + row_bytes;
    const char* w3 = w2 + row_bytes;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    const char* prefetch = w0 + kPrefetchBytes;
    for (int64_t b = 0; b < blocks; ++b) {
      PrefetchSpan<4 * kQ8BlockBytes>(prefetch);
      prefetch += 4 * kQ8BlockBytes;
      const __m512 x0 = _mm512_loadu_ps(x + b * kQ8Block);
      const __m512 x1 = _mm512_loadu_ps(x + b * kQ8Block + 16);
      const int64_t off = b * kQ8BlockBytes;
      a0 = _mm512_fmadd_ps(Q8BlockDot(w0 + off, x0, x1), _mm512_set1_ps(Q8Scale(w0 + off)), a0);
      a1 = _mm512_fmadd_ps(Q8BlockDot(w1 + off, x0, x1), _mm512_set1_ps(Q8Scale(w1 + off)), a1);
      a2 = _mm512_fmadd_ps(Q8BlockDot(w2 + off, x0, x1), _mm512_set1_ps(Q8Scale(w2 + off)), a2);
      a3 = _mm512_fmadd_ps(Q8BlockDot(w3 + off, x0, x1), _mm512_set1_ps(Q8Scale(w3 + off)), a3);
    }
    y[r] = ReduceAdd(a0);
    y[r + 1] = ReduceAdd(a1);
    y[r + 2] = ReduceAdd(a2);
    y[r + 3] = ReduceAdd(a3);
  }
  for (; r < rows; ++r) {
    const char* w0 = base + r * row_bytes;
    __m512 a0 = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const __m512 x0 = _mm512_loadu_ps(x + b * kQ8Block);
      const __m512 x1 = _mm512_loadu_ps(x + b * kQ8Block + 16);
      const int64_t off = b * kQ8BlockBytes;
      a0 = _mm512_fmadd_ps(Q8BlockDot(w0 + off, x0, x1), _mm512_set1_ps(Q8Scale(w0 + off)), a0);
    }
    y[r] = ReduceAdd(a0);
  }
}

// The same for Q8_0 weights, against GemvQ8's order: one accumulator per
// pair, fed block by block with the block's dot product times its scale.
template <int kM>
void GemvRowsQ8(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
                int64_t ldx, float* y, int64_t ldy) {
  const char* base = static_cast<const char*>(w);
  const int64_t blocks = cols / kQ8Block;
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    const char* w0 = base + r * row_bytes;
    const char* w1 = w0 + row_bytes;
    __m512 a0[kM], a1[kM];
#pragma GCC unroll 4
    for (int i = 0; i < kM; ++i) {
      a0[i] = _mm512_setzero_ps();
      a1[i] = _mm512_setzero_ps();
    }
    const char* prefetch = w0 + kPrefetchBytes;
    for (int64_t b = 0; b < blocks; ++b) {
      PrefetchSpan<2 * kQ8BlockBytes>(prefetch);
      prefetch += 2 * kQ8BlockBytes;
      const int64_t off = b * kQ8BlockBytes;
      const __m512 lo0 = Q8Half(w0 + off, 0), hi0 = Q8Half(w0 + off, 1);
      const __m512 lo1 = Q8Half(w1 + off, 0), hi1 = Q8Half(w1 + off, 1);
      const __m512 s0 = _mm512_set1_ps(Q8Scale(w0 + off)), s1 = _mm512_set1_ps(Q8Scale(w1 + off));
#pragma GCC unroll 4
      for (int i = 0; i < kM; ++i) {
        const __m512 x0 = _mm512_loadu_ps(x + i * ldx + b * kQ8Block);
        const __m512 x1 = _mm512_loadu_ps(x + i * ldx + b * kQ8Block + 16);
        a0[i] = _mm512_fmadd_ps(Q8HalvesDot(lo0, hi0, x0, x1), s0, a0[i]);
        a1[i] = _mm512_fmadd_ps(Q8HalvesDot(lo1, hi1, x0, x1), s1, a1[i]);
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < kM; ++i) {
      y[i * ldy + r] = ReduceAdd(a0[i]);
      y[i * ldy + r + 1] = ReduceAdd(a1[i]);
    }
  }
  if (r < rows) {
    for (int i = 0; i < kM; ++i) GemvQ8(base + r * row_bytes, row_bytes, rows - r, cols, x + i * ldx, y + i * ldy + r);
  }
}

// GemvRowsTyped for m = 2..4; false for any other m.
template <class W, bool kPrefetch>
bool GemvRowsOf(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
                int64_t ldx, int64_t m, float* y, int64_t ldy) {
  switch (m) {
    case 4: GemvRowsTyped<W, 4, kPrefetch>(w, row_bytes, rows, cols, x, ldx, y, ldy); return true;
    case 3: GemvRowsTyped<W, 3, kPrefetch>(w, row_bytes, rows, cols, x, ldx, y, ldy); return true;
    case 2: GemvRowsTyped<W, 2, kPrefetch>(w, row_bytes, rows, cols, x, ldx, y, ldy); return true;
    default: return false;
  }
}

// m rows of x, 1 <= m <= kGemvRowsMax.
template <class W>
void GemvRows(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
              int64_t ldx, int64_t m, float* y, int64_t ldy, bool w_cached) {
  const bool done = w_cached ? GemvRowsOf<W, false>(w, row_bytes, rows, cols, x, ldx, m, y, ldy)
                             : GemvRowsOf<W, true>(w, row_bytes, rows, cols, x, ldx, m, y, ldy);
  if (!done) GemvTyped<W>(w, row_bytes, rows, cols, x, y);
}

void GemvRowsQ8Any(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
                   int64_t ldx, int64_t m, float* y, int64_t ldy, bool /*w_cached*/) {
  switch (m) {
    case 4: GemvRowsQ8<4>(w, row_bytes, rows, cols, x, ldx, y, ldy); break;
    case 3: GemvRowsQ8<3>(w, row_bytes, rows, cols, x, ldx, y, ldy); break;
    case 2: GemvRowsQ8<2>(w, row_bytes, rows, cols, x, ldx, y, ldy); break;
    default: GemvQ8(w, row_bytes, rows, cols, x, y); break;
  }
}

template <class W>
void ToF32Typed(const void* src, int64_t n, float* out) {
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) _mm512_storeu_ps(out + k, W::Load(src, k));
  if (k < n) {
    const __mmask16 m = TailMask(n - k);
    _mm512_mask_storeu_ps(out + k, m, W::LoadTail(src, k, m));
  }
}

void ToF32Q8(const void* src, int64_t n, float* out) {
  const char* block = static_cast<const char*>(src);
  for (int64_t b = 0; b < n / kQ8Block; ++b, block += kQ8BlockBytes) {
    const __m512 scale = _mm512_set1_ps(Q8Scale(block));
    _mm512_storeu_ps(out + b * kQ8Block, _mm512_mul_ps(Q8Half(block, 0), scale));
    _mm512_storeu_ps(out + b * kQ8Block + 16, _mm512_mul_ps(Q8Half(block, 1), scale));
  }
}

// The k-quants (engine/formats/kquants.h has the layouts). Each block is
// walked as sixteen groups of 16 values, widened to fp32 and scaled in
// registers; `sink(g, w)` takes group g (values 16g .. 16g + 15).
float HalfAt(const char* p) {
  uint16_t bits;
  __builtin_memcpy(&bits, p, sizeof bits);
  return _cvtsh_ss(bits);
}

// The eight (scale, min) pairs of a Q4_K or Q5_K block, multiplied out by the
// block's d and dmin: 6-bit values packed into 12 bytes after the two halves.
void KScalesAndOffsets(const char* block, float* scale, float* offset) {
  const float d = HalfAt(block), dmin = HalfAt(block + 2);
  const uint8_t* p = reinterpret_cast<const uint8_t*>(block + 4);
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    scale[j] = d * static_cast<float>(p[j] & 63);
    offset[j] = dmin * static_cast<float>(p[j + 4] & 63);
    scale[j + 4] = d * static_cast<float>((p[j + 8] & 0x0F) | ((p[j] >> 6) << 4));
    offset[j + 4] = dmin * static_cast<float>((p[j + 8] >> 4) | ((p[j + 4] >> 6) << 4));
  }
}

// Q4_K, and Q5_K (kFifth) with a fifth bit per quant from the 32 bytes after
// the (scale, min) pairs.
template <bool kFifth>
struct ScaleMinK {
  static constexpr int64_t kValues = 256;
  static constexpr int64_t kBytes = kFifth ? 176 : 144;
  template <class Sink>
  static void ForEachGroup(const char* block, Sink&& sink) {
    float scale[8], offset[8];
    KScalesAndOffsets(block, scale, offset);
    const __m256i mask = _mm256_set1_epi8(0x0F), fifth = _mm256_set1_epi8(0x10);
    const __m256i high =
        kFifth ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16)) : __m256i{};
    const char* qs = block + (kFifth ? 48 : 16);
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * c));
      __m256i lo = _mm256_and_si256(raw, mask);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
      if constexpr (kFifth) {
        const __m256i bit_lo = _mm256_set1_epi8(static_cast<char>(1 << (2 * c)));
        const __m256i bit_hi = _mm256_set1_epi8(static_cast<char>(2 << (2 * c)));
        lo = _mm256_or_si256(
            lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(high, bit_lo), bit_lo), fifth));
        hi = _mm256_or_si256(
            hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(high, bit_hi), bit_hi), fifth));
      }
      const __m512 s_lo = _mm512_set1_ps(scale[2 * c]), o_lo = _mm512_set1_ps(offset[2 * c]);
      const __m512 s_hi = _mm512_set1_ps(scale[2 * c + 1]),
                   o_hi = _mm512_set1_ps(offset[2 * c + 1]);
      sink(4 * c, Widen(_mm256_castsi256_si128(lo), s_lo, o_lo));
      sink(4 * c + 1, Widen(_mm256_extracti128_si256(lo, 1), s_lo, o_lo));
      sink(4 * c + 2, Widen(_mm256_castsi256_si128(hi), s_hi, o_hi));
      sink(4 * c + 3, Widen(_mm256_extracti128_si256(hi, 1), s_hi, o_hi));
    }
  }
  // scale·q − offset for 16 quants in [0, 32), rounded twice as the plain
  // decoder does, so every level converts a block to the same floats.
  static __m512 Widen(__m128i q, __m512 scale, __m512 offset) {
    return _mm512_sub_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q)), scale), offset);
  }
};
using Q4K = ScaleMinK<false>;
using Q5K = ScaleMinK<true>;

struct Q6K {
  static constexpr int64_t kValues = 256;
  static constexpr int64_t kBytes = 210;
  template <class Sink>
  static void ForEachGroup(const char* block, Sink&& sink) {
    const float d = HalfAt(block + 208);
    const int8_t* scales = reinterpret_cast<const int8_t*>(block + 192);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i bias = _mm256_set1_epi8(32);
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {
      const char* ql = block + 64 * half;
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i h =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 128 + 32 * half));
      // Values 32t + l of this half, t = 0..3, as q − 32 in int8.
      __m256i v[4];
      v[0] =
          _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
      v[1] =
          _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
      v[2] =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
      v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                             _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
#pragma GCC unroll 4
      for (int t = 0; t < 4; ++t) {
        const __m256i q = _mm256_sub_epi8(v[t], bias);
        const int g = 8 * half + 2 * t;
        sink(g, Widen(_mm256_castsi256_si128(q), d * static_cast<float>(scales[g])));
        sink(g + 1, Widen(_mm256_extracti128_si256(q, 1), d * static_cast<float>(scales[g + 1])));
      }
    }
  }
  static __m512 Widen(__m128i q, float scale) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(scale));
  }
};

// d·(q − bias) for 16 quants already biased to int8.
__m512 WidenSigned(__m128i q, __m512 d) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), d);
}

// Q4_0: 32 values, the low nibbles first.
struct Q40 {
  static constexpr int64_t kValues = 32;
  static constexpr int64_t kBytes = 18;
  template <class Sink>
  static void ForEachGroup(const char* block, Sink&& sink) {
    const __m512 d = _mm512_set1_ps(HalfAt(block));
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2));
    const __m128i mask = _mm_set1_epi8(0x0F), bias = _mm_set1_epi8(8);
    sink(0, WidenSigned(_mm_sub_epi8(_mm_and_si128(qs, mask), bias), d));
    sink(1, WidenSigned(_mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), mask), bias), d));
  }
};

// Q5_0: Q4_0 with a fifth bit per quant from a 32-bit word; bias 16.
struct Q50 {
  static constexpr int64_t kValues = 32;
  static constexpr int64_t kBytes = 22;
  template <class Sink>
  static void ForEachGroup(const char* block, Sink&& sink) {
    const __m512 d = _mm512_set1_ps(HalfAt(block));
    uint32_t qh;
    __builtin_memcpy(&qh, block + 2, sizeof qh);
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 6));
    const __m128i mask = _mm_set1_epi8(0x0F), bias = _mm_set1_epi8(16), fifth = _mm_set1_epi8(0x10);
    const __m128i lo = _mm_or_si128(_mm_and_si128(qs, mask),
                                    _mm_maskz_mov_epi8(static_cast<__mmask16>(qh & 0xFFFF), fifth));
    const __m128i hi = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(qs, 4), mask),
                                    _mm_maskz_mov_epi8(static_cast<__mmask16>(qh >> 16), fifth));
    sink(0, WidenSigned(_mm_sub_epi8(lo, bias), d));
    sink(1, WidenSigned(_mm_sub_epi8(hi, bias), d));
  }
};

// One row at a time: the rows of a share are one linear stream, which the
// hardware prefetcher follows; four accumulators hide the FMA latency.
template <class K>
void GemvK(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x, float* y) {
  const char* base = static_cast<const char*>(w);
  const int64_t blocks = cols / K::kValues;
  constexpr int kGroups = static_cast<int>(K::kValues / 16);
  for (int64_t r = 0; r < rows; ++r) {
    const char* row = base + r * row_bytes;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    for (int64_t b = 0; b < blocks; ++b) {
      const float* xb = x + b * K::kValues;
      // Small blocks rotate through the accumulators from block to block.
      const int first = static_cast<int>(b * kGroups);
      K::ForEachGroup(row + b * K::kBytes, [&](int g, __m512 v) {
        const int a = (first + g) & 3;
        acc[a] = _mm512_fmadd_ps(v, _mm512_loadu_ps(xb + 16 * g), acc[a]);
      });
    }
    y[r] = ReduceAdd(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
  }
}

// Q4_K rows with the scales taken out of the inner loop: each 32-value
// sub-block's Σ q·x is formed from the raw quants, then scaled once, and the
// mins are applied through the sub-block sums of x. Three vector operations
// per 16 weights instead of five; rows wider than kQ4KMaxCols fall back.
constexpr int64_t kQ4KMaxCols = 32768;

void GemvQ4K(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
             float* y) {
  if (cols > kQ4KMaxCols) {
    GemvK<Q4K>(w, row_bytes, rows, cols, x, y);
    return;
  }
  float xsum[kQ4KMaxCols / 32];
  for (int64_t s = 0; s < cols / 32; ++s) {
    xsum[s] = ReduceAdd(_mm512_add_ps(_mm512_loadu_ps(x + 32 * s), _mm512_loadu_ps(x + 32 * s + 16)));
  }
  const char* base = static_cast<const char*>(w);
  const int64_t blocks = cols / 256;
  const __m256i mask = _mm256_set1_epi8(0x0F);
  for (int64_t r = 0; r < rows; ++r) {
    const char* row = base + r * row_bytes;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m256 mins = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const char* block = row + b * 144;
      const float* xb = x + b * 256;
      float scale[8], offset[8];
      KScalesAndOffsets(block, scale, offset);
      mins = _mm256_fmadd_ps(_mm256_loadu_ps(offset), _mm256_loadu_ps(xsum + 8 * b), mins);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m256i raw =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16 + 32 * c));
        const __m256i lo = _mm256_and_si256(raw, mask);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
        const float* xc = xb + 64 * c;
        __m512 s0 = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(lo))), _mm512_loadu_ps(xc));
        s0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(lo, 1))),
                             _mm512_loadu_ps(xc + 16), s0);
        __m512 s1 = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(hi))), _mm512_loadu_ps(xc + 32));
        s1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(hi, 1))),
                             _mm512_loadu_ps(xc + 48), s1);
        acc0 = _mm512_fmadd_ps(s0, _mm512_set1_ps(scale[2 * c]), acc0);
        acc1 = _mm512_fmadd_ps(s1, _mm512_set1_ps(scale[2 * c + 1]), acc1);
      }
    }
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(mins), _mm256_extractf128_ps(mins, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    y[r] = ReduceAdd(_mm512_add_ps(acc0, acc1)) - _mm_cvtss_f32(m);
  }
}

template <class K>
void ToF32K(const void* src, int64_t n, float* out) {
  const char* block = static_cast<const char*>(src);
  for (int64_t b = 0; b < n / K::kValues; ++b) {
    float* o = out + b * K::kValues;
    K::ForEachGroup(block + b * K::kBytes,
                    [&](int g, __m512 v) { _mm512_storeu_ps(o + 16 * g, v); });
  }
}

float Dot(const float* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(n - i);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
  }
  return ReduceAdd(_mm512_add_ps(s0, s1));
}

void Axpy(float a, const float* x, int64_t n, float* y) {
  const __m512 va = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  }
  if (i < n) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(
        y + i, m,
        _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

void DotRows(const float* a, const float* rows, int64_t stride, int64_t count, int64_t n,
             float scale, float* out) {
  for (int64_t i = 0; i < count; ++i) out[i] = Dot(a, rows + i * stride, n) * scale;
}

// Axpy's arithmetic per 16 values of y, with that part of y kept in a
// register across the rows.
void AxpyRows(const float* w, const float* rows, int64_t stride, int64_t count, int64_t n,
              float* y) {
  for (int64_t c = 0; c < n; c += 16) {
    const __mmask16 m = n - c >= 16 ? static_cast<__mmask16>(0xffff) : TailMask(n - c);
    __m512 acc = _mm512_maskz_loadu_ps(m, y + c);
    for (int64_t i = 0; i < count; ++i) {
      acc = _mm512_fmadd_ps(_mm512_set1_ps(w[i]), _mm512_maskz_loadu_ps(m, rows + i * stride + c), acc);
    }
    _mm512_mask_storeu_ps(y + c, m, acc);
  }
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  const float mean_square = Dot(x, x, n) / static_cast<float>(n);
  const __m512 scale = _mm512_set1_ps(1.0f / __builtin_sqrtf(mean_square + eps));
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), scale),
                                            _mm512_loadu_ps(weight + i)));
  }
  if (i < n) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(out + i, m,
                          _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), scale),
                                        _mm512_maskz_loadu_ps(m, weight + i)));
  }
}

// e^x; 0 below simd_exp::kMinInput (so -inf gives 0), clamped above.
__m512 Exp(__m512 x) {
  using namespace simd_exp;
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kMinInput), _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kMinInput)), _mm512_set1_ps(kMaxInput));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kP0);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP1));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kP5));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_scalef_ps(static_cast<__mmask16>(~underflow), p, n);
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  __m512 vmax = _mm512_set1_ps(-__builtin_inff());
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + i));
  if (i < n) vmax = _mm512_mask_max_ps(vmax, TailMask(n - i), vmax, _mm512_maskz_loadu_ps(TailMask(n - i), x + i));
  const __m512 max = _mm512_set1_ps(ReduceMax(vmax));
  __m512 sum = _mm512_setzero_ps();
  for (i = 0; i + 16 <= n; i += 16) {
    const __m512 e = Exp(_mm512_sub_ps(_mm512_loadu_ps(x + i), max));
    _mm512_storeu_ps(x + i, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (i < n) {
    const __mmask16 m = TailMask(n - i);
    const __m512 e = _mm512_maskz_mov_ps(m, Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), max)));
    _mm512_mask_storeu_ps(x + i, m, e);
    sum = _mm512_add_ps(sum, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / ReduceAdd(sum));
  for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
  if (i < n) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
  }
}

__m512 SiluMulVec(__m512 g, __m512 u) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 sig = _mm512_div_ps(one, _mm512_add_ps(one, Exp(_mm512_sub_ps(_mm512_setzero_ps(), g))));
  return _mm512_mul_ps(_mm512_mul_ps(g, sig), u);
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(out + i, SiluMulVec(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
  }
  if (i < n) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(
        out + i, m, SiluMulVec(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i)));
  }
}

// kQ8Rows16 against int8 x with VNNI: lane l of every 512-bit product is
// row l of the group, so one vpdpbusd takes four values of all sixteen rows
// and nothing is reduced across lanes. Per block, x's sum times 128 undoes
// the +128 that made the weights unsigned; then one multiply-add by the
// rows' scales times x's.
template <int kM>
__attribute__((target("avx512vnni"))) void GemvQ8Rows16Vnni(const char* group, int64_t cols,
                                                            QuantizedRows x, float* y,
                                                            int64_t ldy) {
  const int64_t blocks = cols / kQ8Rows16Block;
  __m512 acc[kM];
#pragma GCC unroll 4
  for (int i = 0; i < kM; ++i) acc[i] = _mm512_setzero_ps();
  const char* prefetch = group + kPrefetchBytes;
  for (int64_t b = 0; b < blocks; ++b) {
    const char* p = group + b * kQ8Rows16GroupBlockBytes;
    PrefetchSpan<kQ8Rows16GroupBlockBytes>(prefetch);
    prefetch += kQ8Rows16GroupBlockBytes;
    const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    __m512i dot[kM];
#pragma GCC unroll 4
    for (int i = 0; i < kM; ++i) dot[i] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const __m512i wq = _mm512_loadu_si512(p + 32 + 64 * c);
#pragma GCC unroll 4
      for (int i = 0; i < kM; ++i) {
        int32_t four;
        __builtin_memcpy(&four, x.q + i * cols + b * kQ8Rows16Block + 4 * c, sizeof four);
        dot[i] = _mm512_dpbusd_epi32(dot[i], wq, _mm512_set1_epi32(four));
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < kM; ++i) {
      const __m512i exact = _mm512_sub_epi32(dot[i], _mm512_set1_epi32(128 * x.s[i * blocks + b]));
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact),
                               _mm512_mul_ps(scale, _mm512_set1_ps(x.d[i * blocks + b])), acc[i]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < kM; ++i) _mm512_storeu_ps(y + i * ldy, acc[i]);
}

// One of a layout's VNNI kernels, for m = 1..4 x rows, over one group.
using Rows16Kernel = void (*)(const char* group, int64_t cols, QuantizedRows x, float* y,
                              int64_t ldy);

// kQ4KRows16 against int8 x with VNNI: as GemvQ8Rows16Vnni, with the low
// and high nibbles of each 64-byte word run as sub-blocks 2p and 2p + 1.
// The sixteen rows' (scale, min) pairs are unpacked side by side from the
// byte planes; x's sum times min·dmin takes away each sub-block's offset.
// With kFifth, kQ5KRows16: bit j of each fifth-bit byte, moved to bit 4,
// completes sub-block j's quants.
template <int kM, bool kFifth>
__attribute__((target("avx512vnni"))) void GemvScaleMinRows16Vnni(const char* group, int64_t cols,
                                                                  QuantizedRows x, float* y,
                                                                  int64_t ldy) {
  constexpr int64_t kRun = kFifth ? kQ5KRows16GroupBlockBytes : kQ4KRows16GroupBlockBytes;
  const int64_t blocks = cols / 256, xblocks = cols / kQ8Rows16Block;
  const __m512i nibble = _mm512_set1_epi8(0x0F), bit4 = _mm512_set1_epi8(0x10);
  __m512 acc[kM];
#pragma GCC unroll 4
  for (int i = 0; i < kM; ++i) acc[i] = _mm512_setzero_ps();
  auto widen = [](__m128i bytes) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes)); };
  for (int64_t b = 0; b < blocks; ++b) {
    const char* run = group + b * kRun;
    PrefetchSpan<kRun>(run + kPrefetchBytes);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(run)));
    const __m512 dmin =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(run + 32)));
    __m128i plane[12];
#pragma GCC unroll 12
    for (int k = 0; k < 12; ++k) {
      plane[k] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(run + 64 + 16 * k));
    }
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      // Sub-blocks 2p and 2p + 1: (scale, min) as Q4KScaleMin unpacks them.
      __m512 scale[2], min[2];
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * p + h;
        __m128i sc, mn;
        UnpackScaleMin(plane, j, &sc, &mn);
        scale[h] = _mm512_mul_ps(d, widen(sc));
        min[h] = _mm512_mul_ps(dmin, widen(mn));
      }
      __m512i dot_lo[kM], dot_hi[kM];
#pragma GCC unroll 4
      for (int i = 0; i < kM; ++i) {
        dot_lo[i] = _mm512_setzero_si512();
        dot_hi[i] = _mm512_setzero_si512();
      }
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        const __m512i wq = _mm512_loadu_si512(run + 256 + 512 * p + 64 * c);
        __m512i lo = _mm512_and_si512(wq, nibble);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(wq, 4), nibble);
        if constexpr (kFifth) {
          // Bits 2p and 2p + 1 of each byte to bit 4 (no bit of a
          // neighbouring byte lands there for shifts up to 4).
          const __m512i qh = _mm512_loadu_si512(run + 2304 + 64 * c);
          const __m512i at_lo =
              p < 2 ? _mm512_slli_epi16(qh, 4 - 2 * p) : _mm512_srli_epi16(qh, 2 * p - 4);
          const __m512i at_hi =
              p < 2 ? _mm512_slli_epi16(qh, 3 - 2 * p) : _mm512_srli_epi16(qh, 2 * p - 3);
          lo = _mm512_or_si512(lo, _mm512_and_si512(at_lo, bit4));
          hi = _mm512_or_si512(hi, _mm512_and_si512(at_hi, bit4));
        }
#pragma GCC unroll 4
        for (int i = 0; i < kM; ++i) {
          const int8_t* xq = x.q + i * cols + 256 * b + 64 * p + 4 * c;
          int32_t four_lo, four_hi;
          __builtin_memcpy(&four_lo, xq, sizeof four_lo);
          __builtin_memcpy(&four_hi, xq + 32, sizeof four_hi);
          dot_lo[i] = _mm512_dpbusd_epi32(dot_lo[i], lo, _mm512_set1_epi32(four_lo));
          dot_hi[i] = _mm512_dpbusd_epi32(dot_hi[i], hi, _mm512_set1_epi32(four_hi));
        }
      }
#pragma GCC unroll 4
      for (int i = 0; i < kM; ++i) {
        const int64_t xb = i * xblocks + 8 * b + 2 * p;
        const float dx0 = x.d[xb], dx1 = x.d[xb + 1];
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot_lo[i]),
                                 _mm512_mul_ps(scale[0], _mm512_set1_ps(dx0)), acc[i]);
        acc[i] =
            _mm512_fnmadd_ps(min[0], _mm512_set1_ps(static_cast<float>(x.s[xb]) * dx0), acc[i]);
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot_hi[i]),
                                 _mm512_mul_ps(scale[1], _mm512_set1_ps(dx1)), acc[i]);
        acc[i] =
            _mm512_fnmadd_ps(min[1], _mm512_set1_ps(static_cast<float>(x.s[xb + 1]) * dx1), acc[i]);
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < kM; ++i) _mm512_storeu_ps(y + i * ldy, acc[i]);
}

// kQ40Rows16 against int8 x with VNNI: per 64-byte word c, the low nibbles
// are values 4c..4c+3 and the high ones 16 + 4c..; x's sum times 8 takes
// away the offset. With kFifth, kQ50Rows16: a permute looks up the four
// fifth bits of each lane's values as bytes (lane r's word shifted right by
// 4c indexes a table of the sixteen 4-bit patterns), and the offset is 16.
template <int kM, bool kFifth>
__attribute__((target("avx512vnni"))) void GemvQ4Or5Rows16Vnni(const char* group, int64_t cols,
                                                               QuantizedRows x, float* y,
                                                               int64_t ldy) {
  constexpr int64_t kRun = kFifth ? kQ50Rows16GroupBlockBytes : kQ40Rows16GroupBlockBytes;
  constexpr int kQuants = kFifth ? 96 : 32;
  constexpr int32_t kOffset = kFifth ? 16 : 8;
  const int64_t blocks = cols / kQ8Rows16Block;
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  // Entry k: byte i is 0x10 where bit i of k is set.
  const __m512i spread =
      _mm512_setr_epi32(0x00000000, 0x00000010, 0x00001000, 0x00001010, 0x00100000, 0x00100010,
                        0x00101000, 0x00101010, 0x10000000, 0x10000010, 0x10001000, 0x10001010,
                        0x10100000, 0x10100010, 0x10101000, 0x10101010);
  __m512 acc[kM];
#pragma GCC unroll 4
  for (int i = 0; i < kM; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const char* run = group + b * kRun;
    PrefetchSpan<kRun>(run + kPrefetchBytes);
    const __m512 scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(run)));
    __m512i qh = _mm512_setzero_si512();
    if constexpr (kFifth) qh = _mm512_loadu_si512(run + 32);
    __m512i dot[kM];
#pragma GCC unroll 4
    for (int i = 0; i < kM; ++i) dot[i] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m512i wq = _mm512_loadu_si512(run + kQuants + 64 * c);
      __m512i lo = _mm512_and_si512(wq, nibble);
      __m512i hi = _mm512_and_si512(_mm512_srli_epi16(wq, 4), nibble);
      if constexpr (kFifth) {
        lo = _mm512_or_si512(lo, _mm512_permutexvar_epi32(_mm512_srli_epi32(qh, 4 * c), spread));
        hi = _mm512_or_si512(hi,
                             _mm512_permutexvar_epi32(_mm512_srli_epi32(qh, 16 + 4 * c), spread));
      }
#pragma GCC unroll 4
      for (int i = 0; i < kM; ++i) {
        const int8_t* xq = x.q + i * cols + b * kQ8Rows16Block + 4 * c;
        int32_t four_lo, four_hi;
        __builtin_memcpy(&four_lo, xq, sizeof four_lo);
        __builtin_memcpy(&four_hi, xq + 16, sizeof four_hi);
        dot[i] = _mm512_dpbusd_epi32(dot[i], lo, _mm512_set1_epi32(four_lo));
        dot[i] = _mm512_dpbusd_epi32(dot[i], hi, _mm512_set1_epi32(four_hi));
      }
    }
#pragma GCC unroll 4
    for (int i = 0; i < kM; ++i) {
      const __m512i exact =
          _mm512_sub_epi32(dot[i], _mm512_set1_epi32(kOffset * x.s[i * blocks + b]));
      acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact),
                               _mm512_mul_ps(scale, _mm512_set1_ps(x.d[i * blocks + b])), acc[i]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < kM; ++i) _mm512_storeu_ps(y + i * ldy, acc[i]);
}

// kQ6KRows16 against int8 x with VNNI: the 6-bit quants of four 32-value
// quarters come out of two ql words and one qh word per four values of
// sixteen rows; 32 times x's 16-value sums takes away the quants' offset.
template <int kM>
__attribute__((target("avx512vnni"))) void GemvQ6KRows16Vnni(const char* group, int64_t cols,
                                                             QuantizedRows x, float* y,
                                                             int64_t ldy) {
  const int64_t blocks = cols / 256, xblocks = cols / kQ8Rows16Block, sixteens = cols / 16;
  const __m512i nibble = _mm512_set1_epi8(0x0F), top = _mm512_set1_epi8(0x30);
  __m512 acc[kM];
#pragma GCC unroll 4
  for (int i = 0; i < kM; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const char* run = group + b * kQ6KRows16GroupBlockBytes;
    PrefetchSpan<kQ6KRows16GroupBlockBytes>(run + kPrefetchBytes);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(run)));
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
#pragma GCC unroll 2
      for (int half = 0; half < 2; ++half) {
        __m512i dot[4][kM];
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) {
#pragma GCC unroll 4
          for (int i = 0; i < kM; ++i) dot[t][i] = _mm512_setzero_si512();
        }
#pragma GCC unroll 4
        for (int c = 4 * half; c < 4 * half + 4; ++c) {
          const __m512i ql_a = _mm512_loadu_si512(run + 288 + 1024 * h + 64 * c);
          const __m512i ql_b = _mm512_loadu_si512(run + 288 + 1024 * h + 64 * (c + 8));
          const __m512i qh = _mm512_loadu_si512(run + 2336 + 512 * h + 64 * c);
          __m512i q[4];
          q[0] = _mm512_or_si512(_mm512_and_si512(ql_a, nibble),
                                 _mm512_and_si512(_mm512_slli_epi16(qh, 4), top));
          q[1] = _mm512_or_si512(_mm512_and_si512(ql_b, nibble),
                                 _mm512_and_si512(_mm512_slli_epi16(qh, 2), top));
          q[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql_a, 4), nibble),
                                 _mm512_and_si512(qh, top));
          q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql_b, 4), nibble),
                                 _mm512_and_si512(_mm512_srli_epi16(qh, 2), top));
#pragma GCC unroll 4
          for (int i = 0; i < kM; ++i) {
#pragma GCC unroll 4
            for (int t = 0; t < 4; ++t) {
              int32_t four;
              __builtin_memcpy(&four, x.q + i * cols + 256 * b + 128 * h + 32 * t + 4 * c,
                               sizeof four);
              dot[t][i] = _mm512_dpbusd_epi32(dot[t][i], q[t], _mm512_set1_epi32(four));
            }
          }
        }
#pragma GCC unroll 4
        for (int t = 0; t < 4; ++t) {
          const int sub = 8 * h + 2 * t + half;
          const __m512 scale = _mm512_mul_ps(
              d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(run + 32 + 16 * sub)))));
#pragma GCC unroll 4
          for (int i = 0; i < kM; ++i) {
            const __m512i exact = _mm512_sub_epi32(
                dot[t][i], _mm512_set1_epi32(32 * x.s16[i * sixteens + 16 * b + sub]));
            acc[i] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(exact),
                _mm512_mul_ps(scale, _mm512_set1_ps(x.d[i * xblocks + 8 * b + 4 * h + t])), acc[i]);
          }
        }
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < kM; ++i) _mm512_storeu_ps(y + i * ldy, acc[i]);
}

// A GemvRows16Fn for layout L: its VNNI kernel for up to four x rows at a
// time, or its AVX2 kernel where this CPU has no VNNI.
template <WeightLayout L>
void GemvRows16(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m, float* y,
                int64_t ldy) {
  static const bool vnni = GetCpuFeatures().avx512vnni;
  if (!vnni) {
    GemvRows16Avx2<L>(w, groups, cols, x, m, y, ldy);
    return;
  }
  Rows16Kernel by_m[4];
  if constexpr (L == WeightLayout::kQ8Rows16) {
    by_m[0] = &GemvQ8Rows16Vnni<1>, by_m[1] = &GemvQ8Rows16Vnni<2>;
    by_m[2] = &GemvQ8Rows16Vnni<3>, by_m[3] = &GemvQ8Rows16Vnni<4>;
  } else if constexpr (L == WeightLayout::kQ4KRows16 || L == WeightLayout::kQ5KRows16) {
    constexpr bool kFifth = L == WeightLayout::kQ5KRows16;
    by_m[0] = &GemvScaleMinRows16Vnni<1, kFifth>, by_m[1] = &GemvScaleMinRows16Vnni<2, kFifth>;
    by_m[2] = &GemvScaleMinRows16Vnni<3, kFifth>, by_m[3] = &GemvScaleMinRows16Vnni<4, kFifth>;
  } else if constexpr (L == WeightLayout::kQ6KRows16) {
    by_m[0] = &GemvQ6KRows16Vnni<1>, by_m[1] = &GemvQ6KRows16Vnni<2>;
    by_m[2] = &GemvQ6KRows16Vnni<3>, by_m[3] = &GemvQ6KRows16Vnni<4>;
  } else {
    constexpr bool kFifth = L == WeightLayout::kQ50Rows16;
    static_assert(kFifth || L == WeightLayout::kQ40Rows16);
    by_m[0] = &GemvQ4Or5Rows16Vnni<1, kFifth>, by_m[1] = &GemvQ4Or5Rows16Vnni<2, kFifth>;
    by_m[2] = &GemvQ4Or5Rows16Vnni<3, kFifth>, by_m[3] = &GemvQ4Or5Rows16Vnni<4, kFifth>;
  }
  constexpr int kIndex = static_cast<int>(L) - 1;
  const int64_t group_bytes = cols / kRows16BlockValues[kIndex] * kRows16RunBytes[kIndex];
  const Rows16Kernel kernel = by_m[std::clamp<int64_t>(m, 1, 4) - 1];
  for (int64_t g = 0; g < groups; ++g) {
    kernel(static_cast<const char*>(w) + g * group_bytes, cols, x, y + 16 * g, ldy);
  }
}

constexpr KernelTable kAvx512Table = {
    .isa = Isa::kAvx512,
    .gemv = {&GemvTyped<F32Weights>, &GemvTyped<F16Weights>, &GemvTyped<Bf16Weights>, &GemvQ8,
             &GemvQ4K, &GemvK<Q6K>, &GemvK<Q40>, &GemvK<Q50>, &GemvK<Q5K>},
    .gemv_rows = {&GemvRows<F32Weights>, &GemvRows<F16Weights>, &GemvRows<Bf16Weights>,
                  &GemvRowsQ8Any, nullptr, nullptr, nullptr, nullptr, nullptr},
    .to_f32 = {&ToF32Typed<F32Weights>, &ToF32Typed<F16Weights>, &ToF32Typed<Bf16Weights>, &ToF32Q8,
               &ToF32K<Q4K>, &ToF32K<Q6K>, &ToF32K<Q40>, &ToF32K<Q50>, &ToF32K<Q5K>},
    .gemv_rows16 = {&GemvRows16<WeightLayout::kQ8Rows16>, &GemvRows16<WeightLayout::kQ4KRows16>,
                    &GemvRows16<WeightLayout::kQ6KRows16>, &GemvRows16<WeightLayout::kQ5KRows16>,
                    &GemvRows16<WeightLayout::kQ40Rows16>, &GemvRows16<WeightLayout::kQ50Rows16>},
    .pack_panel = &Avx512PackGemmPanel,
    .gemm_panel = &Avx512GemmPanel,
    .dot = &Dot,
    .axpy = &Axpy,
    .dot_rows = &DotRows,
    .axpy_rows = &AxpyRows,
    .rms_norm = &RmsNorm,
    .softmax = &Softmax,
    .silu_mul = &SiluMul,
};

}  // namespace

const KernelTable& Avx512KernelTable() { return kAvx512Table; }

}  // namespace ferry::cpu
