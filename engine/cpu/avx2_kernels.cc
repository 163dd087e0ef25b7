// AVX2 + FMA + F16C kernels. Built with -mavx2 -mfma -mf16c and reached only
// through the table after the CPU check.
//
// Everything here sits in an anonymous namespace and uses no std templates:
// an out-of-line copy of a shared inline function emitted from this file
// could be picked by the linker for baseline code and crash older CPUs.
// Tails shorter than a vector run a scalar loop.
#include <immintrin.h>

#include <cstdint>

#include "engine/cpu/kernel_table.h"
#include "engine/cpu/simd_exp.h"

namespace ferry::cpu {
namespace {

constexpr int64_t kQ8Block = 32;
constexpr int64_t kQ8BlockBytes = 34;

float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

float HorizontalMax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

float Bf16Scalar(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}

// Loads 8 weights starting at element k of a row as fp32; Scalar(k) one.
struct F32Weights {
  static __m256 Load(const void* row, int64_t k) {
    return _mm256_loadu_ps(static_cast<const float*>(row) + k);
  }
  static float Scalar(const void* row, int64_t k) { return static_cast<const float*>(row)[k]; }
};

struct F16Weights {
  static __m256 Load(const void* row, int64_t k) {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k)));
  }
  static float Scalar(const void* row, int64_t k) {
    return _cvtsh_ss(static_cast<const uint16_t*>(row)[k]);
  }
};

struct Bf16Weights {
  static __m256 Load(const void* row, int64_t k) {
    const __m128i h =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float Scalar(const void* row, int64_t k) {
    return Bf16Scalar(static_cast<const uint16_t*>(row)[k]);
  }
};

template <class W>
float RowTail(const void* row, const float* x, int64_t from, int64_t cols) {
  float s = 0.0f;
  for (int64_t k = from; k < cols; ++k) s += W::Scalar(row, k) * x[k];
  return s;
}

// Four rows at a time share each load of x; two accumulators per row hide
// the FMA latency. Memory, not arithmetic, bounds this loop.
template <class W>
void GemvTyped(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x,
               float* y) {
  const char* base = static_cast<const char*>(w);
  const int64_t cols16 = cols & ~int64_t{15};
  const int64_t cols8 = cols & ~int64_t{7};
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const void* w0 = base + r * row_bytes;
    const void* w1 = base + (r + 1) * row_bytes;
    const void* w2 = base + (r + 2) * row_bytes;
    const void* w3 = base + (r + 3) * row_bytes;
    __m256 a0 = _mm256_setzero_ps(), b0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps();
    __m256 a3 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k < cols16; k += 16) {
      const __m256 x0 = _mm256_loadu_ps(x + k);
      const __m256 x1 = _mm256_loadu_ps(x + k + 8);
      a0 = _mm256_fmadd_ps(W::Load(w0, k), x0, a0);
      b0 = _mm256_fmadd_ps(W::Load(w0, k + 8), x1, b0);
      a1 = _mm256_fmadd_ps(W::Load(w1, k), x0, a1);
      b1 = _mm256_fmadd_ps(W::Load(w1, k + 8), x1, b1);
      a2 = _mm256_fmadd_ps(W::Load(w2, k), x0, a2);
      b2 = _mm256_fmadd_ps(W::Load(w2, k + 8), x1, b2);
      a3 = _mm256_fmadd_ps(W::Load(w3, k), x0, a3);
      b3 = _mm256_fmadd_ps(W::Load(w3, k + 8), x1, b3);
    }
    for (; k < cols8; k += 8) {
      const __m256 x0 = _mm256_loadu_ps(x + k);
      a0 = _mm256_fmadd_ps(W::Load(w0, k), x0, a0);
      a1 = _mm256_fmadd_ps(W::Load(w1, k), x0, a1);
      a2 = _mm256_fmadd_ps(W::Load(w2, k), x0, a2);
      a3 = _mm256_fmadd_ps(W::Load(w3, k), x0, a3);
    }
    y[r] = HorizontalSum(_mm256_add_ps(a0, b0)) + RowTail<W>(w0, x, k, cols);
    y[r + 1] = HorizontalSum(_mm256_add_ps(a1, b1)) + RowTail<W>(w1, x, k, cols);
    y[r + 2] = HorizontalSum(_mm256_add_ps(a2, b2)) + RowTail<W>(w2, x, k, cols);
    y[r + 3] = HorizontalSum(_mm256_add_ps(a3, b3)) + RowTail<W>(w3, x, k, cols);
  }
  for (; r < rows; ++r) {
    const void* w0 = base + r * row_bytes;
    __m256 a0 = _mm256_setzero_ps(), b0 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k < cols16; k += 16) {
      a0 = _mm256_fmadd_ps(W::Load(w0, k), _mm256_loadu_ps(x + k), a0);
      b0 = _mm256_fmadd_ps(W::Load(w0, k + 8), _mm256_loadu_ps(x + k + 8), b0);
    }
    for (; k < cols8; k += 8) a0 = _mm256_fmadd_ps(W::Load(w0, k), _mm256_loadu_ps(x + k), a0);
    y[r] = HorizontalSum(_mm256_add_ps(a0, b0)) + RowTail<W>(w0, x, k, cols);
  }
}

float Q8Scale(const char* block) {
  uint16_t bits;
  __builtin_memcpy(&bits, block, sizeof bits);
  return _cvtsh_ss(bits);
}

__m256 Q8Quarter(const char* block, int quarter) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
      _mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + 8 * quarter))));
}

// Σ over one Q8_0 block of q·x, still to be multiplied by the block scale.
__m256 Q8BlockDot(const char* block, const __m256* x) {
  __m256 s = _mm256_mul_ps(Q8Quarter(block, 0), x[0]);
  s = _mm256_fmadd_ps(Q8Quarter(block, 1), x[1], s);
  s = _mm256_fmadd_ps(Q8Quarter(block, 2), x[2], s);
  return _mm256_fmadd_ps(Q8Quarter(block, 3), x[3], s);
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
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const float* xb = x + b * kQ8Block;
      const __m256 xv[4] = {_mm256_loadu_ps(xb), _mm256_loadu_ps(xb + 8), _mm256_loadu_ps(xb + 16),
                            _mm256_loadu_ps(xb + 24)};
      const int64_t off = b * kQ8BlockBytes;
      a0 = _mm256_fmadd_ps(Q8BlockDot(w0 + off, xv), _mm256_set1_ps(Q8Scale(w0 + off)), a0);
      a1 = _mm256_fmadd_ps(Q8BlockDot(w1 + off, xv), _mm256_set1_ps(Q8Scale(w1 + off)), a1);
      a2 = _mm256_fmadd_ps(Q8BlockDot(w2 + off, xv), _mm256_set1_ps(Q8Scale(w2 + off)), a2);
      a3 = _mm256_fmadd_ps(Q8BlockDot(w3 + off, xv), _mm256_set1_ps(Q8Scale(w3 + off)), a3);
    }
    y[r] = HorizontalSum(a0);
    y[r + 1] = HorizontalSum(a1);
    y[r + 2] = HorizontalSum(a2);
    y[r + 3] = HorizontalSum(a3);
  }
  for (; r < rows; ++r) {
    const char* w0 = base + r * row_bytes;
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      const float* xb = x + b * kQ8Block;
      const __m256 xv[4] = {_mm256_loadu_ps(xb), _mm256_loadu_ps(xb + 8), _mm256_loadu_ps(xb + 16),
                            _mm256_loadu_ps(xb + 24)};
      const int64_t off = b * kQ8BlockBytes;
      a0 = _mm256_fmadd_ps(Q8BlockDot(w0 + off, xv), _mm256_set1_ps(Q8Scale(w0 + off)), a0);
    }
    y[r] = HorizontalSum(a0);
  }
}

template <class W>
void ToF32Typed(const void* src, int64_t n, float* out) {
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) _mm256_storeu_ps(out + k, W::Load(src, k));
  for (; k < n; ++k) out[k] = W::Scalar(src, k);
}

void ToF32Q8(const void* src, int64_t n, float* out) {
  const char* block = static_cast<const char*>(src);
  for (int64_t b = 0; b < n / kQ8Block; ++b, block += kQ8BlockBytes) {
    const __m256 scale = _mm256_set1_ps(Q8Scale(block));
    for (int q = 0; q < 4; ++q) {
      _mm256_storeu_ps(out + b * kQ8Block + 8 * q, _mm256_mul_ps(Q8Quarter(block, q), scale));
    }
  }
}

// The k-quants (engine/formats/kquants.h has the layouts), walked as 32
// groups of 8 values widened to fp32 and scaled in registers; `sink(g, w)`
// takes group g (values 8g .. 8g + 7).
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

// Calls sink for the four groups of 8 in 32 bytes of quants (group g0 first),
// each widened by `widen`.
template <class Widen, class Sink>
void Quarters(__m256i q, int g0, Widen&& widen, Sink&& sink) {
  const __m128i a = _mm256_castsi256_si128(q), b = _mm256_extracti128_si256(q, 1);
  sink(g0, widen(a));
  sink(g0 + 1, widen(_mm_unpackhi_epi64(a, a)));
  sink(g0 + 2, widen(b));
  sink(g0 + 3, widen(_mm_unpackhi_epi64(b, b)));
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
      for (int part = 0; part < 2; ++part) {
        __m256i q = part == 0 ? _mm256_and_si256(raw, mask)
                              : _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
        if constexpr (kFifth) {
          const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << (2 * c + part)));
          q = _mm256_or_si256(
              q, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(high, bit), bit), fifth));
        }
        const __m256 s = _mm256_set1_ps(scale[2 * c + part]),
                     o = _mm256_set1_ps(offset[2 * c + part]);
        Quarters(
            q, 8 * c + 4 * part,
            [&](__m128i v) {
              // Rounded twice, as the plain decoder does.
              return _mm256_sub_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)), s),
                                   o);
            },
            sink);
      }
    }
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
        // 32 values: scale 8·half + 2t for the first 16, the next for the rest.
        const int s = 8 * half + 2 * t;
        const __m256 s0 = _mm256_set1_ps(d * static_cast<float>(scales[s]));
        const __m256 s1 = _mm256_set1_ps(d * static_cast<float>(scales[s + 1]));
        const __m128i a = _mm256_castsi256_si128(q), b = _mm256_extracti128_si256(q, 1);
        const int g = 16 * half + 4 * t;
        sink(g, Widen(a, s0));
        sink(g + 1, Widen(_mm_unpackhi_epi64(a, a), s0));
        sink(g + 2, Widen(b, s1));
        sink(g + 3, Widen(_mm_unpackhi_epi64(b, b), s1));
      }
    }
  }
  // scale·(q − 32) for the low 8 of 16 quants already biased to int8.
  static __m256 Widen(__m128i q, __m256 scale) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), scale);
  }
};

// d·(q − bias) for the low 8 of 16 quants already biased to int8.
__m256 WidenSigned(__m128i q, __m256 d) {
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
}

// Byte i of the result is 0x10 where bit i of `bits` (16 bits) is set.
__m128i FifthBits(uint32_t bits) {
  const __m128i spread =
      _mm_shuffle_epi8(_mm_cvtsi32_si128(static_cast<int>(bits)),
                       _mm_set_epi8(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0));
  const __m128i select = _mm_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  return _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(spread, select), select), _mm_set1_epi8(0x10));
}

// Q4_0 and Q5_0 (kFifth): 32 values, the low nibbles first.
template <bool kFifth>
struct Q32 {
  static constexpr int64_t kValues = 32;
  static constexpr int64_t kBytes = kFifth ? 22 : 18;
  template <class Sink>
  static void ForEachGroup(const char* block, Sink&& sink) {
    const __m256 d = _mm256_set1_ps(HalfAt(block));
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + (kFifth ? 6 : 2)));
    const __m128i mask = _mm_set1_epi8(0x0F), bias = _mm_set1_epi8(kFifth ? 16 : 8);
    __m128i lo = _mm_and_si128(qs, mask), hi = _mm_and_si128(_mm_srli_epi16(qs, 4), mask);
    if constexpr (kFifth) {
      uint32_t qh;
      __builtin_memcpy(&qh, block + 2, sizeof qh);
      lo = _mm_or_si128(lo, FifthBits(qh & 0xFFFF));
      hi = _mm_or_si128(hi, FifthBits(qh >> 16));
    }
    lo = _mm_sub_epi8(lo, bias);
    hi = _mm_sub_epi8(hi, bias);
    sink(0, WidenSigned(lo, d));
    sink(1, WidenSigned(_mm_unpackhi_epi64(lo, lo), d));
    sink(2, WidenSigned(hi, d));
    sink(3, WidenSigned(_mm_unpackhi_epi64(hi, hi), d));
  }
};

template <class K>
void GemvK(const void* w, int64_t row_bytes, int64_t rows, int64_t cols, const float* x, float* y) {
  const char* base = static_cast<const char*>(w);
  const int64_t blocks = cols / K::kValues;
  for (int64_t r = 0; r < rows; ++r) {
    const char* row = base + r * row_bytes;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    for (int64_t b = 0; b < blocks; ++b) {
      const float* xb = x + b * K::kValues;
      K::ForEachGroup(row + b * K::kBytes, [&](int g, __m256 v) {
        acc[g & 3] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xb + 8 * g), acc[g & 3]);
      });
    }
    y[r] =
        HorizontalSum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  }
}

template <class K>
void ToF32K(const void* src, int64_t n, float* out) {
  const char* block = static_cast<const char*>(src);
  for (int64_t b = 0; b < n / K::kValues; ++b) {
    float* o = out + b * K::kValues;
    K::ForEachGroup(block + b * K::kBytes,
                    [&](int g, __m256 v) { _mm256_storeu_ps(o + 8 * g, v); });
  }
}

float Dot(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = HorizontalSum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void Axpy(float a, const float* x, int64_t n, float* y) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += a * x[i];
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  const float mean_square = Dot(x, x, n) / static_cast<float>(n);
  const float scale = 1.0f / __builtin_sqrtf(mean_square + eps);
  const __m256 vscale = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vscale),
                                            _mm256_loadu_ps(weight + i)));
  }
  for (; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

// e^x; 0 below simd_exp::kMinInput (so -inf gives 0), clamped above.
__m256 Exp(__m256 x) {
  using namespace simd_exp;
  const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(kMinInput), _CMP_GE_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kMinInput)), _mm256_set1_ps(kMaxInput));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kP0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // n is in [-126, 127] after the clamp, so 2^n is a normal float.
  const __m256i pow2n =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(pow2n)), keep);
}

float ExpScalar(float v) {
  alignas(32) float lanes[8] = {v, 0, 0, 0, 0, 0, 0, 0};
  _mm256_store_ps(lanes, Exp(_mm256_load_ps(lanes)));
  return lanes[0];
}

void Softmax(float* x, int64_t n) {
  if (n <= 0) return;
  __m256 vmax = _mm256_set1_ps(-__builtin_inff());
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(x + i));
  float max = HorizontalMax(vmax);
  for (; i < n; ++i) max = x[i] > max ? x[i] : max;
  const __m256 vm = _mm256_set1_ps(max);
  __m256 vsum = _mm256_setzero_ps();
  for (i = 0; i + 8 <= n; i += 8) {
    const __m256 e = Exp(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    _mm256_storeu_ps(x + i, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = HorizontalSum(vsum);
  for (; i < n; ++i) {
    x[i] = ExpScalar(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  const __m256 vinv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
  for (; i < n; ++i) x[i] *= inv;
}

__m256 SiluMulVec(__m256 g, __m256 u) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sig =
      _mm256_div_ps(one, _mm256_add_ps(one, Exp(_mm256_sub_ps(_mm256_setzero_ps(), g))));
  return _mm256_mul_ps(_mm256_mul_ps(g, sig), u);
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, SiluMulVec(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  }
  if (i < n) {
    alignas(32) float g[8] = {}, u[8] = {}, o[8];
    for (int64_t j = i; j < n; ++j) {
      g[j - i] = gate[j];
      u[j - i] = up[j];
    }
    _mm256_store_ps(o, SiluMulVec(_mm256_load_ps(g), _mm256_load_ps(u)));
    for (int64_t j = i; j < n; ++j) out[j] = o[j - i];
  }
}

constexpr KernelTable kAvx2Table = {
    .isa = Isa::kAvx2,
    .gemv = {&GemvTyped<F32Weights>, &GemvTyped<F16Weights>, &GemvTyped<Bf16Weights>, &GemvQ8,
             &GemvK<Q4K>, &GemvK<Q6K>, &GemvK<Q32<false>>, &GemvK<Q32<true>>, &GemvK<Q5K>},
    .gemv_rows = {},
    .to_f32 = {&ToF32Typed<F32Weights>, &ToF32Typed<F16Weights>, &ToF32Typed<Bf16Weights>, &ToF32Q8,
               &ToF32K<Q4K>, &ToF32K<Q6K>, &ToF32K<Q32<false>>, &ToF32K<Q32<true>>, &ToF32K<Q5K>},
    .gemv_rows16 = {&GemvRows16Avx2<WeightLayout::kQ8Rows16>,
                    &GemvRows16Avx2<WeightLayout::kQ4KRows16>,
                    &GemvRows16Avx2<WeightLayout::kQ6KRows16>,
                    &GemvRows16Avx2<WeightLayout::kQ5KRows16>,
                    &GemvRows16Avx2<WeightLayout::kQ40Rows16>,
                    &GemvRows16Avx2<WeightLayout::kQ50Rows16>},
    .pack_panel = nullptr,
    .gemm_panel = nullptr,
    .dot = &Dot,
    .axpy = &Axpy,
    .dot_rows = nullptr,
    .axpy_rows = nullptr,
    .rms_norm = &RmsNorm,
    .softmax = &Softmax,
    .silu_mul = &SiluMul,
};

}  // namespace

const KernelTable& Avx2KernelTable() { return kAvx2Table; }

}  // namespace ferry::cpu
