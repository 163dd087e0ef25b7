// The 16-row layouts (kernels.h) on AVX2 CPUs without VNNI: built with
// -mavx2 -mfma -mf16c and reached only through the kernel tables after the
// CPU check. Same rules as avx2_kernels.cc: an anonymous namespace, no std
// templates.
//
// vpmaddubsw multiplies the unsigned quants by x's int8 values and adds
// neighbouring pairs into int16; vpmaddwd by ones then adds those pairs into
// int32, so the two together take four values of eight rows, where one
// vpdpbusd takes them for sixteen. Each kernel runs over one half of a group
// (rows 0-7 or 8-15: the first or second 32 bytes of every 64-byte word), so
// one vector holds a row per lane as on AVX-512. Quants of at most 4 bits
// sum eight products in int16 before widening, 5 bits four, 6 bits one;
// Q8_0 multiplies the quants' magnitudes by x with their signs, so that
// every product fits.
// All sums are exact integers and the float steps are the plain kernels', so
// the results are theirs bit for bit.
#include <immintrin.h>

#include <cstdint>

#include "engine/cpu/kernel_table.h"
#include "engine/cpu/rows16_simd.h"

namespace ferry::cpu {
namespace {

// x's four int8 values at p, in every 32-bit lane.
__m256i Four(const int8_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

// int16 pairs to int32 sums.
__m256i Widen(__m256i pairs) { return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)); }

// Eight fp16 values at p.
__m256 Halves(const char* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Eight bytes at p, widened to floats (unsigned or signed).
__m256 BytesU(__m128i bytes) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)); }
__m256 Bytes8(const char* p, bool is_signed) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm256_cvtepi32_ps(is_signed ? _mm256_cvtepi8_epi32(bytes) : _mm256_cvtepu8_epi32(bytes));
}

__m256i Load(const char* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// The x rows of a kernel call start at x; `half` picks rows 8·half.. of the
// group, whose results go to y[i * ldy + 8·half ..].
using HalfKernel = void (*)(const char* group, int64_t cols, QuantizedRows x, float* y, int64_t ldy,
                            int half);

template <int kM>
void Q8Half(const char* group, int64_t cols, QuantizedRows x, float* y, int64_t ldy, int half) {
  const int64_t blocks = cols / kQ8Rows16Block;
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256 acc[kM];
  for (int i = 0; i < kM; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const char* p = group + b * kQ8Rows16GroupBlockBytes;
    const __m256 scale = Halves(p + 16 * half);
    __m256i dot[kM];
    for (int i = 0; i < kM; ++i) dot[i] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      // The file's signed quants; |q| as unsigned bytes (128 for -128) times
      // x with q's sign: every pair sum fits int16.
      const __m256i w = _mm256_xor_si256(Load(p + 32 + 64 * c + 32 * half), flip);
      const __m256i magnitude = _mm256_abs_epi8(w);
      for (int i = 0; i < kM; ++i) {
        const __m256i four = Four(x.q + i * cols + b * kQ8Rows16Block + 4 * c);
        const __m256i pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(four, w));
        dot[i] = _mm256_add_epi32(dot[i], Widen(pairs));
      }
    }
    for (int i = 0; i < kM; ++i) {
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[i]),
                               _mm256_mul_ps(scale, _mm256_set1_ps(x.d[i * blocks + b])), acc[i]);
    }
  }
  for (int i = 0; i < kM; ++i) _mm256_storeu_ps(y + i * ldy + 8 * half, acc[i]);
}

// Bits 0-3 of each 32-bit lane of v as bytes 0x10 or 0 (byte i for bit i).
__m256i SpreadFour(__m256i v) {
  const __m256i first_byte = _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12, 0,
                                              0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
  const __m256i bit = _mm256_set1_epi32(0x08040201);
  const __m256i b = _mm256_and_si256(_mm256_shuffle_epi8(v, first_byte), bit);
  return _mm256_and_si256(_mm256_cmpeq_epi8(b, bit), _mm256_set1_epi8(0x10));
}

template <int kM, bool kFifth>
void Q4Or5Half(const char* group, int64_t cols, QuantizedRows x, float* y, int64_t ldy, int half) {
  constexpr int64_t kRun = kFifth ? kQ50Rows16GroupBlockBytes : kQ40Rows16GroupBlockBytes;
  constexpr int kQuants = kFifth ? 96 : 32;
  constexpr int32_t kOffset = kFifth ? 16 : 8;
  const int64_t blocks = cols / kQ8Rows16Block;
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  __m256 acc[kM];
  for (int i = 0; i < kM; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const char* run = group + b * kRun;
    const __m256 scale = Halves(run + 16 * half);
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kFifth) qh = Load(run + 32 + 32 * half);
    __m256i dot[kM], sum16[kM];
    for (int i = 0; i < kM; ++i) dot[i] = sum16[i] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m256i wq = Load(run + kQuants + 64 * c + 32 * half);
      __m256i lo = _mm256_and_si256(wq, nibble);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wq, 4), nibble);
      if constexpr (kFifth) {
        lo = _mm256_or_si256(lo, SpreadFour(_mm256_srli_epi32(qh, 4 * c)));
        hi = _mm256_or_si256(hi, SpreadFour(_mm256_srli_epi32(qh, 16 + 4 * c)));
      }
      for (int i = 0; i < kM; ++i) {
        const int8_t* xq = x.q + i * cols + b * kQ8Rows16Block + 4 * c;
        const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(lo, Four(xq)),
                                               _mm256_maddubs_epi16(hi, Four(xq + 16)));
        // 4 bits: 8 x 2·15·127 fits int16; 5 bits: widen each time.
        if constexpr (kFifth) {
          dot[i] = _mm256_add_epi32(dot[i], Widen(pairs));
        } else {
          sum16[i] = _mm256_add_epi16(sum16[i], pairs);
        }
      }
    }
    for (int i = 0; i < kM; ++i) {
      if constexpr (!kFifth) dot[i] = Widen(sum16[i]);
      const __m256i exact =
          _mm256_sub_epi32(dot[i], _mm256_set1_epi32(kOffset * x.s[i * blocks + b]));
      acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact),
                               _mm256_mul_ps(scale, _mm256_set1_ps(x.d[i * blocks + b])), acc[i]);
    }
  }
  for (int i = 0; i < kM; ++i) _mm256_storeu_ps(y + i * ldy + 8 * half, acc[i]);
}

template <int kM, bool kFifth>
void ScaleMinHalf(const char* group, int64_t cols, QuantizedRows x, float* y, int64_t ldy,
                  int half) {
  constexpr int64_t kRun = kFifth ? kQ5KRows16GroupBlockBytes : kQ4KRows16GroupBlockBytes;
  const int64_t blocks = cols / 256, xblocks = cols / kQ8Rows16Block;
  const __m256i nibble = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
  __m256 acc[kM];
  for (int i = 0; i < kM; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const char* run = group + b * kRun;
    const __m256 d = Halves(run + 16 * half);
    const __m256 dmin = Halves(run + 32 + 16 * half);
    __m128i plane[12];
    for (int k = 0; k < 12; ++k) {
      plane[k] = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(run + 64 + 16 * k + 8 * half));
    }
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      __m256 scale[2], min[2];
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * p + h;
        __m128i sc, mn;
        UnpackScaleMin(plane, j, &sc, &mn);
        scale[h] = _mm256_mul_ps(d, BytesU(sc));
        min[h] = _mm256_mul_ps(dmin, BytesU(mn));
      }
      __m256i dot_lo[kM], dot_hi[kM], sum_lo[kM], sum_hi[kM];
      for (int i = 0; i < kM; ++i) {
        dot_lo[i] = dot_hi[i] = sum_lo[i] = sum_hi[i] = _mm256_setzero_si256();
      }
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        const __m256i wq = Load(run + 256 + 512 * p + 64 * c + 32 * half);
        __m256i lo = _mm256_and_si256(wq, nibble);
        __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wq, 4), nibble);
        if constexpr (kFifth) {
          const __m256i qh = Load(run + 2304 + 64 * c + 32 * half);
          const __m256i at_lo =
              p < 2 ? _mm256_slli_epi16(qh, 4 - 2 * p) : _mm256_srli_epi16(qh, 2 * p - 4);
          const __m256i at_hi =
              p < 2 ? _mm256_slli_epi16(qh, 3 - 2 * p) : _mm256_srli_epi16(qh, 2 * p - 3);
          lo = _mm256_or_si256(lo, _mm256_and_si256(at_lo, bit4));
          hi = _mm256_or_si256(hi, _mm256_and_si256(at_hi, bit4));
        }
        for (int i = 0; i < kM; ++i) {
          const int8_t* xq = x.q + i * cols + 256 * b + 64 * p + 4 * c;
          sum_lo[i] = _mm256_add_epi16(sum_lo[i], _mm256_maddubs_epi16(lo, Four(xq)));
          sum_hi[i] = _mm256_add_epi16(sum_hi[i], _mm256_maddubs_epi16(hi, Four(xq + 32)));
          // 4 bits: 8 x 2·15·127 fits int16; 5 bits: 4 x 2·31·127.
          if (!kFifth ? c == 7 : c % 4 == 3) {
            dot_lo[i] = _mm256_add_epi32(dot_lo[i], Widen(sum_lo[i]));
            dot_hi[i] = _mm256_add_epi32(dot_hi[i], Widen(sum_hi[i]));
            sum_lo[i] = sum_hi[i] = _mm256_setzero_si256();
          }
        }
      }
      for (int i = 0; i < kM; ++i) {
        const int64_t xb = i * xblocks + 8 * b + 2 * p;
        const float dx0 = x.d[xb], dx1 = x.d[xb + 1];
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_lo[i]),
                                 _mm256_mul_ps(scale[0], _mm256_set1_ps(dx0)), acc[i]);
        acc[i] =
            _mm256_fnmadd_ps(min[0], _mm256_set1_ps(static_cast<float>(x.s[xb]) * dx0), acc[i]);
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_hi[i]),
                                 _mm256_mul_ps(scale[1], _mm256_set1_ps(dx1)), acc[i]);
        acc[i] =
            _mm256_fnmadd_ps(min[1], _mm256_set1_ps(static_cast<float>(x.s[xb + 1]) * dx1), acc[i]);
      }
    }
  }
  for (int i = 0; i < kM; ++i) _mm256_storeu_ps(y + i * ldy + 8 * half, acc[i]);
}

template <int kM>
void Q6KHalf(const char* group, int64_t cols, QuantizedRows x, float* y, int64_t ldy, int half) {
  const int64_t blocks = cols / 256, xblocks = cols / kQ8Rows16Block, sixteens = cols / 16;
  const __m256i nibble = _mm256_set1_epi8(0x0F), top = _mm256_set1_epi8(0x30);
  __m256 acc[kM];
  for (int i = 0; i < kM; ++i) acc[i] = _mm256_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const char* run = group + b * kQ6KRows16GroupBlockBytes;
    const __m256 d = Halves(run + 16 * half);
    for (int h = 0; h < 2; ++h) {
      for (int part = 0; part < 2; ++part) {
        __m256i dot[4][kM];
        for (int t = 0; t < 4; ++t) {
          for (int i = 0; i < kM; ++i) dot[t][i] = _mm256_setzero_si256();
        }
#pragma GCC unroll 4
        for (int c = 4 * part; c < 4 * part + 4; ++c) {
          const __m256i ql_a = Load(run + 288 + 1024 * h + 64 * c + 32 * half);
          const __m256i ql_b = Load(run + 288 + 1024 * h + 64 * (c + 8) + 32 * half);
          const __m256i qh = Load(run + 2336 + 512 * h + 64 * c + 32 * half);
          __m256i q[4];
          q[0] = _mm256_or_si256(_mm256_and_si256(ql_a, nibble),
                                 _mm256_and_si256(_mm256_slli_epi16(qh, 4), top));
          q[1] = _mm256_or_si256(_mm256_and_si256(ql_b, nibble),
                                 _mm256_and_si256(_mm256_slli_epi16(qh, 2), top));
          q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql_a, 4), nibble),
                                 _mm256_and_si256(qh, top));
          q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql_b, 4), nibble),
                                 _mm256_and_si256(_mm256_srli_epi16(qh, 2), top));
          for (int i = 0; i < kM; ++i) {
            for (int t = 0; t < 4; ++t) {
              const __m256i four = Four(x.q + i * cols + 256 * b + 128 * h + 32 * t + 4 * c);
              dot[t][i] = _mm256_add_epi32(dot[t][i], Widen(_mm256_maddubs_epi16(q[t], four)));
            }
          }
        }
        for (int t = 0; t < 4; ++t) {
          const int sub = 8 * h + 2 * t + part;
          const __m256 scale = _mm256_mul_ps(d, Bytes8(run + 32 + 16 * sub + 8 * half, true));
          for (int i = 0; i < kM; ++i) {
            const __m256i exact = _mm256_sub_epi32(
                dot[t][i], _mm256_set1_epi32(32 * x.s16[i * sixteens + 16 * b + sub]));
            acc[i] = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(exact),
                _mm256_mul_ps(scale, _mm256_set1_ps(x.d[i * xblocks + 8 * b + 4 * h + t])), acc[i]);
          }
        }
      }
    }
  }
  for (int i = 0; i < kM; ++i) _mm256_storeu_ps(y + i * ldy + 8 * half, acc[i]);
}

}  // namespace

// Each group's two halves, for x rows two at a time.
template <WeightLayout L>
void GemvRows16Avx2(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                    float* y, int64_t ldy) {
  HalfKernel one, two;
  if constexpr (L == WeightLayout::kQ8Rows16) {
    one = &Q8Half<1>, two = &Q8Half<2>;
  } else if constexpr (L == WeightLayout::kQ4KRows16) {
    one = &ScaleMinHalf<1, false>, two = &ScaleMinHalf<2, false>;
  } else if constexpr (L == WeightLayout::kQ6KRows16) {
    one = &Q6KHalf<1>, two = &Q6KHalf<2>;
  } else if constexpr (L == WeightLayout::kQ5KRows16) {
    one = &ScaleMinHalf<1, true>, two = &ScaleMinHalf<2, true>;
  } else if constexpr (L == WeightLayout::kQ40Rows16) {
    one = &Q4Or5Half<1, false>, two = &Q4Or5Half<2, false>;
  } else {
    static_assert(L == WeightLayout::kQ50Rows16);
    one = &Q4Or5Half<1, true>, two = &Q4Or5Half<2, true>;
  }
  constexpr int kIndex = static_cast<int>(L) - 1;
  const int64_t group_bytes = cols / kRows16BlockValues[kIndex] * kRows16RunBytes[kIndex];
  const int64_t xblocks = cols / kQ8Rows16Block, sixteens = cols / 16;
  for (int64_t g = 0; g < groups; ++g) {
    const char* group = static_cast<const char*>(w) + g * group_bytes;
    for (int64_t i = 0; i < m; i += 2) {
      const QuantizedRows xi{x.q + i * cols, x.d + i * xblocks, x.s + i * xblocks,
                             x.s16 + i * sixteens};
      const HalfKernel kernel = m - i >= 2 ? two : one;
      for (int half = 0; half < 2; ++half) kernel(group, cols, xi, y + i * ldy + 16 * g, ldy, half);
    }
  }
}

template void GemvRows16Avx2<WeightLayout::kQ8Rows16>(const void*, int64_t, int64_t, QuantizedRows,
                                                      int64_t, float*, int64_t);
template void GemvRows16Avx2<WeightLayout::kQ4KRows16>(const void*, int64_t, int64_t, QuantizedRows,
                                                       int64_t, float*, int64_t);
template void GemvRows16Avx2<WeightLayout::kQ6KRows16>(const void*, int64_t, int64_t, QuantizedRows,
                                                       int64_t, float*, int64_t);
template void GemvRows16Avx2<WeightLayout::kQ5KRows16>(const void*, int64_t, int64_t, QuantizedRows,
                                                       int64_t, float*, int64_t);
template void GemvRows16Avx2<WeightLayout::kQ40Rows16>(const void*, int64_t, int64_t, QuantizedRows,
                                                       int64_t, float*, int64_t);
template void GemvRows16Avx2<WeightLayout::kQ50Rows16>(const void*, int64_t, int64_t, QuantizedRows,
                                                       int64_t, float*, int64_t);

}  // namespace ferry::cpu
