// The 16-row layouts of kernels.h: packing, reading rows back, the int8
// quantization of x, and the plain kernels that state what the SIMD ones
// compute. Built without SIMD flags: every level may call these.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/cpu_features.h"
#include "engine/cpu/kernel_table.h"
#include "engine/formats/dtype.h"
#include "engine/formats/kquants.h"

namespace ferry::cpu {
namespace {

constexpr int64_t kGroupRows = 16;

float HalfAt(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return Fp16ToFloat(bits);
}

}  // namespace

bool Rows16Fast() { return BestIsa() != Isa::kScalar; }

namespace {

// Whether w is `dtype` in rows, in whole groups of 16 rows and whole blocks.
bool CanPackRows16(const WeightMatrix& w, DType dtype, int64_t block_values) {
  return w.dtype == dtype && w.layout == WeightLayout::kRows && w.rows > 0 &&
         w.rows % kGroupRows == 0 && w.cols > 0 && w.cols % block_values == 0;
}

// Rewrites each group of 16 rows in place: `place(block, r, run)` puts row
// r's block into the run of the group's 16 blocks at that column, which has
// the same size as those 16 blocks.
template <class Place>
void PackGroups(void* data, int64_t rows, int64_t blocks, int64_t block_bytes, Place place) {
  const int64_t row_bytes = blocks * block_bytes;
  std::vector<uint8_t> group(static_cast<size_t>(kGroupRows * row_bytes));
  for (int64_t g = 0; g < rows / kGroupRows; ++g) {
    uint8_t* base = static_cast<uint8_t*>(data) + g * kGroupRows * row_bytes;
    std::memcpy(group.data(), base, group.size());
    for (int64_t b = 0; b < blocks; ++b) {
      for (int64_t r = 0; r < kGroupRows; ++r) {
        place(group.data() + r * row_bytes + b * block_bytes, r,
              base + b * kGroupRows * block_bytes);
      }
    }
  }
}

// The run of 16 blocks holding `row`'s block b.
const uint8_t* RunOf(const void* data, int64_t blocks, int64_t block_bytes, int64_t row,
                     int64_t b) {
  return static_cast<const uint8_t*>(data) +
         (row / kGroupRows * blocks + b) * kGroupRows * block_bytes;
}

void Q8ToRun(const uint8_t* block, int64_t r, uint8_t* run) {
  std::memcpy(run + 2 * r, block, 2);
  for (int64_t i = 0; i < kQ8Rows16Block; ++i) {
    run[32 + 64 * (i / 4) + 4 * r + i % 4] = static_cast<uint8_t>(block[2 + i] ^ 0x80);
  }
}

void Q8FromRun(const uint8_t* run, int64_t r, uint8_t* block) {
  std::memcpy(block, run + 2 * r, 2);
  for (int64_t i = 0; i < kQ8Rows16Block; ++i) {
    block[2 + i] = static_cast<uint8_t>(run[32 + 64 * (i / 4) + 4 * r + i % 4] ^ 0x80);
  }
}

// Q4_K and Q5_K: d, dmin, the 12 (scale, min) bytes and the 128 low-bit
// quant bytes (at `qs` in the block) go to the same places; Q5_K's 32
// fifth-bit bytes (at 16 in its block) follow at 2304.
template <int64_t kQs>
void ScaleMinToRun(const uint8_t* block, int64_t r, uint8_t* run) {
  std::memcpy(run + 2 * r, block, 2);
  std::memcpy(run + 32 + 2 * r, block + 2, 2);
  for (int64_t i = 0; i < 12; ++i) run[64 + 16 * i + r] = block[4 + i];
  for (int64_t p = 0; p < 4; ++p) {
    for (int64_t c = 0; c < 8; ++c) {
      std::memcpy(run + 256 + 512 * p + 64 * c + 4 * r, block + kQs + 32 * p + 4 * c, 4);
    }
  }
  if constexpr (kQs == 48) {
    for (int64_t c = 0; c < 8; ++c) std::memcpy(run + 2304 + 64 * c + 4 * r, block + 16 + 4 * c, 4);
  }
}

template <int64_t kQs>
void ScaleMinFromRun(const uint8_t* run, int64_t r, uint8_t* block) {
  std::memcpy(block, run + 2 * r, 2);
  std::memcpy(block + 2, run + 32 + 2 * r, 2);
  for (int64_t i = 0; i < 12; ++i) block[4 + i] = run[64 + 16 * i + r];
  for (int64_t p = 0; p < 4; ++p) {
    for (int64_t c = 0; c < 8; ++c) {
      std::memcpy(block + kQs + 32 * p + 4 * c, run + 256 + 512 * p + 64 * c + 4 * r, 4);
    }
  }
  if constexpr (kQs == 48) {
    for (int64_t c = 0; c < 8; ++c) std::memcpy(block + 16 + 4 * c, run + 2304 + 64 * c + 4 * r, 4);
  }
}

// Q4_0 and Q5_0: d, Q5_0's fifth-bit word, then the 16 quant bytes as four
// words (at 2 + 4·kFifth in the block, 32 + 64·kFifth in the run).
template <bool kFifth>
void Q4Or5ToRun(const uint8_t* block, int64_t r, uint8_t* run) {
  std::memcpy(run + 2 * r, block, 2);
  if (kFifth) std::memcpy(run + 32 + 4 * r, block + 2, 4);
  for (int64_t c = 0; c < 4; ++c) {
    std::memcpy(run + 32 + 64 * kFifth + 64 * c + 4 * r, block + 2 + 4 * kFifth + 4 * c, 4);
  }
}

template <bool kFifth>
void Q4Or5FromRun(const uint8_t* run, int64_t r, uint8_t* block) {
  std::memcpy(block, run + 2 * r, 2);
  if (kFifth) std::memcpy(block + 2, run + 32 + 4 * r, 4);
  for (int64_t c = 0; c < 4; ++c) {
    std::memcpy(block + 2 + 4 * kFifth + 4 * c, run + 32 + 64 * kFifth + 64 * c + 4 * r, 4);
  }
}

// Where the pieces of row r's Q6_K block go in its kQ6KRows16 run, and back.
void Q6KToRun(const uint8_t* block, int64_t r, uint8_t* run) {
  std::memcpy(run + 2 * r, block + 208, 2);
  for (int64_t s = 0; s < 16; ++s) run[32 + 16 * s + r] = block[192 + s];
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t w = 0; w < 16; ++w) {
      std::memcpy(run + 288 + 1024 * h + 64 * w + 4 * r, block + 64 * h + 4 * w, 4);
    }
    for (int64_t w = 0; w < 8; ++w) {
      std::memcpy(run + 2336 + 512 * h + 64 * w + 4 * r, block + 128 + 32 * h + 4 * w, 4);
    }
  }
}

void Q6KFromRun(const uint8_t* run, int64_t r, uint8_t* block) {
  std::memcpy(block + 208, run + 2 * r, 2);
  for (int64_t s = 0; s < 16; ++s) block[192 + s] = run[32 + 16 * s + r];
  for (int64_t h = 0; h < 2; ++h) {
    for (int64_t w = 0; w < 16; ++w) {
      std::memcpy(block + 64 * h + 4 * w, run + 288 + 1024 * h + 64 * w + 4 * r, 4);
    }
    for (int64_t w = 0; w < 8; ++w) {
      std::memcpy(block + 128 + 32 * h + 4 * w, run + 2336 + 512 * h + 64 * w + 4 * r, 4);
    }
  }
}

// One 16-row layout: its dtype and where the pieces of a block go in a run.
// The block's size and values are the layout's entries in kRows16RunBytes
// (over 16 rows) and kRows16BlockValues, which the kernels read too.
struct Rows16Format {
  DType dtype;
  void (*to_run)(const uint8_t* block, int64_t r, uint8_t* run);
  void (*from_run)(const uint8_t* run, int64_t r, uint8_t* block);
  void (*dequantize)(const uint8_t* block, float* out);
};

// In WeightLayout order, from kQ8Rows16.
constexpr Rows16Format kFormats[kNumRows16Layouts] = {
    {DType::kQ8_0, &Q8ToRun, &Q8FromRun, &DequantizeQ8_0Block},
    {DType::kQ4_K, &ScaleMinToRun<16>, &ScaleMinFromRun<16>, &DequantizeQ4KBlock},
    {DType::kQ6_K, &Q6KToRun, &Q6KFromRun, &DequantizeQ6KBlock},
    {DType::kQ5_K, &ScaleMinToRun<48>, &ScaleMinFromRun<48>, &DequantizeQ5KBlock},
    {DType::kQ4_0, &Q4Or5ToRun<false>, &Q4Or5FromRun<false>, &DequantizeQ4_0Block},
    {DType::kQ5_0, &Q4Or5ToRun<true>, &Q4Or5FromRun<true>, &DequantizeQ5_0Block},
};

int LayoutIndex(WeightLayout layout) { return static_cast<int>(layout) - 1; }

int64_t BlockBytes(int i) { return kRows16RunBytes[i] / kGroupRows; }

}  // namespace

WeightLayout Rows16LayoutOf(const WeightMatrix& w) {
  for (int i = 0; i < kNumRows16Layouts; ++i) {
    if (CanPackRows16(w, kFormats[i].dtype, kRows16BlockValues[i])) {
      return static_cast<WeightLayout>(i + 1);
    }
  }
  return WeightLayout::kRows;
}

void PackRows16(WeightLayout layout, void* data, int64_t rows, int64_t cols) {
  const int i = LayoutIndex(layout);
  PackGroups(data, rows, cols / kRows16BlockValues[i], BlockBytes(i), kFormats[i].to_run);
}

void DequantizeRows16Row(const WeightMatrix& w, int64_t row, float* out) {
  const int i = LayoutIndex(w.layout);
  const int64_t values = kRows16BlockValues[i], blocks = w.cols / values;
  uint8_t block[kQ6_KBlockBytes];  // the largest
  for (int64_t b = 0; b < blocks; ++b) {
    kFormats[i].from_run(RunOf(w.data, blocks, BlockBytes(i), row, b), row % kGroupRows, block);
    kFormats[i].dequantize(block, out + b * values);
  }
}

namespace {

// Row r's (scale, min) bytes of one kQ4KRows16 or kQ5KRows16 run, gathered back.
void ScaleMinOfRun(const uint8_t* run, int64_t r, uint8_t* sc, uint8_t* m) {
  uint8_t packed[12];
  for (int64_t i = 0; i < 12; ++i) packed[i] = run[64 + 16 * i + r];
  for (int j = 0; j < 8; ++j) Q4KScaleMin(packed, j, &sc[j], &m[j]);
}

// kQ4KRows16 and, with kFifth, kQ5KRows16: per sub-block j of a block, the
// unsigned quants against x scaled by d·scale_j and x's d, less dmin·min_j
// times x's sum and d.
template <bool kFifth>
void GemvScaleMinRows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x,
                             int64_t m, float* y, int64_t ldy) {
  constexpr int64_t kRun = kFifth ? kQ5KRows16GroupBlockBytes : kQ4KRows16GroupBlockBytes;
  const int64_t blocks = cols / kQKValues, xblocks = cols / kQ8Rows16Block;
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* group = static_cast<const uint8_t*>(w) + g * blocks * kRun;
    for (int64_t i = 0; i < m; ++i) {
      const int8_t* qx = x.q + i * cols;
      const float* dx = x.d + i * xblocks;
      const int32_t* sx = x.s + i * xblocks;
      for (int64_t r = 0; r < kGroupRows; ++r) {
        float acc = 0.0f;
        for (int64_t b = 0; b < blocks; ++b) {
          const uint8_t* run = group + b * kRun;
          const float d = HalfAt(run + 2 * r), dmin = HalfAt(run + 32 + 2 * r);
          uint8_t sc[8], mn[8];
          ScaleMinOfRun(run, r, sc, mn);
          for (int64_t p = 0; p < 4; ++p) {
            for (int h = 0; h < 2; ++h) {
              const int64_t j = 2 * p + h, xb = 8 * b + j;
              int32_t dot = 0;
              for (int64_t k = 0; k < 32; ++k) {
                const int64_t at = 64 * (k / 4) + 4 * r + k % 4;
                const uint8_t byte = run[256 + 512 * p + at];
                int32_t q = h == 0 ? byte & 0x0F : byte >> 4;
                if (kFifth) q |= ((run[2304 + at] >> j) & 1) << 4;
                dot += q * int32_t{qx[32 * xb + k]};
              }
              const float scale = d * static_cast<float>(sc[j]);
              const float min = dmin * static_cast<float>(mn[j]);
              acc = std::fma(static_cast<float>(dot), scale * dx[xb], acc);
              acc = std::fma(-min, static_cast<float>(sx[xb]) * dx[xb], acc);
            }
          }
        }
        y[i * ldy + g * kGroupRows + r] = acc;
      }
    }
  }
}

// The layouts of 32-value blocks (kQ8Rows16, kQ40Rows16, kQ50Rows16): per
// block the unsigned quants against x, less their offset (128, 8 or 16)
// times x's sum, scaled by d and x's d.
template <WeightLayout L>
void GemvBlock32Rows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                            float* y, int64_t ldy) {
  constexpr bool kQ8 = L == WeightLayout::kQ8Rows16, kFifth = L == WeightLayout::kQ50Rows16;
  constexpr int64_t kRun = kRows16RunBytes[static_cast<int>(L) - 1];
  constexpr int64_t kQuants = kFifth ? 96 : 32;
  constexpr int32_t kOffset = kQ8 ? 128 : kFifth ? 16 : 8;
  const int64_t blocks = cols / kQ8Rows16Block;
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* group = static_cast<const uint8_t*>(w) + g * blocks * kRun;
    for (int64_t i = 0; i < m; ++i) {
      const int8_t* qx = x.q + i * cols;
      const float* dx = x.d + i * blocks;
      const int32_t* sx = x.s + i * blocks;
      for (int64_t r = 0; r < kGroupRows; ++r) {
        float acc = 0.0f;
        for (int64_t b = 0; b < blocks; ++b) {
          const uint8_t* run = group + b * kRun;
          uint32_t qh = 0;
          if (kFifth) std::memcpy(&qh, run + 32 + 4 * r, 4);
          int32_t dot = 0;
          for (int64_t k = 0; k < 32; ++k) {
            int32_t q;
            if (kQ8) {
              q = run[kQuants + 64 * (k / 4) + 4 * r + k % 4];
            } else {
              const uint8_t byte = run[kQuants + 64 * ((k % 16) / 4) + 4 * r + k % 4];
              q = k < 16 ? byte & 0x0F : byte >> 4;
              if (kFifth) q |= static_cast<int32_t>((qh >> k) & 1) << 4;
            }
            dot += q * int32_t{qx[32 * b + k]};
          }
          dot -= kOffset * sx[b];
          acc = std::fma(static_cast<float>(dot), HalfAt(run + 2 * r) * dx[b], acc);
        }
        y[i * ldy + g * kGroupRows + r] = acc;
      }
    }
  }
}

}  // namespace

void GemvQ4KRows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                        float* y, int64_t ldy) {
  GemvScaleMinRows16Plain<false>(w, groups, cols, x, m, y, ldy);
}

void GemvQ5KRows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                        float* y, int64_t ldy) {
  GemvScaleMinRows16Plain<true>(w, groups, cols, x, m, y, ldy);
}

void GemvQ40Rows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                        float* y, int64_t ldy) {
  GemvBlock32Rows16Plain<WeightLayout::kQ40Rows16>(w, groups, cols, x, m, y, ldy);
}

void GemvQ50Rows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                        float* y, int64_t ldy) {
  GemvBlock32Rows16Plain<WeightLayout::kQ50Rows16>(w, groups, cols, x, m, y, ldy);
}

// Per half h of a block, per 16-value half g of its 32-value quarters t
// (sub-block 8h + 2t + g): the unsigned 6-bit quants against x, less 32 times
// x's sum over those 16 values, scaled by d·scale and x's d.
void GemvQ6KRows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                        float* y, int64_t ldy) {
  const int64_t blocks = cols / kQKValues, xblocks = cols / kQ8Rows16Block;
  for (int64_t g = 0; g < groups; ++g) {
    const uint8_t* group = static_cast<const uint8_t*>(w) + g * blocks * kQ6KRows16GroupBlockBytes;
    for (int64_t i = 0; i < m; ++i) {
      const int8_t* qx = x.q + i * cols;
      const float* dx = x.d + i * xblocks;
      const int32_t* s16 = x.s16 + i * (cols / 16);
      for (int64_t r = 0; r < kGroupRows; ++r) {
        float acc = 0.0f;
        for (int64_t b = 0; b < blocks; ++b) {
          uint8_t block[kQ6_KBlockBytes];
          Q6KFromRun(group + b * kQ6KRows16GroupBlockBytes, r, block);
          const float d = HalfAt(block + 208);
          for (int64_t h = 0; h < 2; ++h) {
            const uint8_t* ql = block + 64 * h;
            const uint8_t* qh = block + 128 + 32 * h;
            for (int64_t half = 0; half < 2; ++half) {
              for (int64_t t = 0; t < 4; ++t) {
                int32_t dot = 0;
                for (int64_t l = 16 * half; l < 16 * half + 16; ++l) {
                  const uint8_t low = t % 2 == 0 ? ql[l] : ql[l + 32];
                  const int q = (t < 2 ? low & 0x0F : low >> 4) | (((qh[l] >> (2 * t)) & 3) << 4);
                  dot += q * int32_t{qx[256 * b + 128 * h + 32 * t + l]};
                }
                const int64_t sixteen = (256 * b + 128 * h + 32 * t + 16 * half) / 16;
                dot -= 32 * s16[sixteen];
                const float scale =
                    d * static_cast<float>(static_cast<int8_t>(block[192 + 8 * h + 2 * t + half]));
                acc = std::fma(static_cast<float>(dot), scale * dx[8 * b + 4 * h + t], acc);
              }
            }
          }
        }
        y[i * ldy + g * kGroupRows + r] = acc;
      }
    }
  }
}

void QuantizeActivationRow(const float* x, int64_t n, int8_t* q, float* d, int32_t* s,
                           int32_t* s16) {
  // Adding and taking away 1.5·2²³ rounds to the nearest integer, ties to
  // even, for |v| < 2²²; unlike a libm call it vectorizes.
  constexpr float kRound = 12582912.0f;
  for (int64_t b = 0; b < n / kQ8Rows16Block; ++b) {
    const float* xb = x + b * kQ8Rows16Block;
    float amax = 0.0f;
    for (int64_t i = 0; i < kQ8Rows16Block; ++i) {
      const float a = std::fabs(xb[i]);
      amax = a > amax ? a : amax;  // a NaN is passed over
    }
    const float scale = amax / 127.0f;
    const float inv = scale > 0.0f && std::isfinite(scale) ? 1.0f / scale : 0.0f;
    int32_t sum[2] = {0, 0};
    for (int64_t i = 0; i < kQ8Rows16Block; ++i) {
      float v = (xb[i] * inv + kRound) - kRound;
      // |x·inv| <= 127 up to rounding; NaN (from a NaN x) becomes 0.
      v = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v == v ? v : 0.0f;
      const int8_t qi = static_cast<int8_t>(v);
      q[b * kQ8Rows16Block + i] = qi;
      sum[i / 16] += qi;
    }
    d[b] = inv > 0.0f ? scale : 0.0f;
    s[b] = sum[0] + sum[1];
    if (s16 != nullptr) {
      s16[2 * b] = sum[0];
      s16[2 * b + 1] = sum[1];
    }
  }
}

void GemvQ8Rows16Plain(const void* w, int64_t groups, int64_t cols, QuantizedRows x, int64_t m,
                       float* y, int64_t ldy) {
  GemvBlock32Rows16Plain<WeightLayout::kQ8Rows16>(w, groups, cols, x, m, y, ldy);
}

}  // namespace ferry::cpu
