// Internal: a step shared by the AVX2 and AVX-512 kernels of the kQ4KRows16
// and kQ5KRows16 layouts. The function is static: each SIMD translation unit
// compiles its own copy with its own flags, so no code built for one level
// can be linked into another.
#pragma once

#include <immintrin.h>

namespace ferry::cpu {

// Sub-block j's 6-bit scales and mins (as Q4KScaleMin unpacks them) of the
// rows whose packed (scale, min) bytes the 12 planes hold: byte r of plane i
// is row r's byte i.
static inline void UnpackScaleMin(const __m128i* plane, int j, __m128i* sc, __m128i* mn) {
  const __m128i low6 = _mm_set1_epi8(63), low4 = _mm_set1_epi8(0x0F), top2 = _mm_set1_epi8(0x30);
  if (j < 4) {
    *sc = _mm_and_si128(plane[j], low6);
    *mn = _mm_and_si128(plane[j + 4], low6);
  } else {
    *sc = _mm_or_si128(_mm_and_si128(plane[j + 4], low4),
                       _mm_and_si128(_mm_srli_epi16(plane[j - 4], 2), top2));
    *mn = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(plane[j + 4], 4), low4),
                       _mm_and_si128(_mm_srli_epi16(plane[j], 2), top2));
  }
}

}  // namespace ferry::cpu
