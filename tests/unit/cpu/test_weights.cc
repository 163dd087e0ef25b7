#include "tests/unit/cpu/test_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/formats/kquants.h"

namespace ferry::cpu::testing {

std::vector<float> RandomVector(int64_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

TestWeights MakeWeights(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  const std::vector<float> values = RandomVector(rows * cols, rng);
  TestWeights out;
  switch (dtype) {
    case DType::kF32:
      out.bytes.resize(values.size() * 4);
      std::memcpy(out.bytes.data(), values.data(), out.bytes.size());
      break;
    case DType::kF16:
    case DType::kBF16:
      out.bytes.resize(values.size() * 2);
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t h = dtype == DType::kF16 ? FloatToFp16(values[i]) : FloatToBf16(values[i]);
        std::memcpy(out.bytes.data() + 2 * i, &h, 2);
      }
      break;
    case DType::kQ8_0: {
      const int64_t blocks = values.size() / kQ8_0BlockValues;
      out.bytes.resize(blocks * kQ8_0BlockBytes);
      for (int64_t b = 0; b < blocks; ++b) {
        const float* v = values.data() + b * kQ8_0BlockValues;
        float amax = 0.0f;
        for (int i = 0; i < kQ8_0BlockValues; ++i) amax = std::max(amax, std::fabs(v[i]));
        const uint16_t scale_bits = FloatToFp16(amax / 127.0f);
        const float scale = Fp16ToFloat(scale_bits);
        uint8_t* block = out.bytes.data() + b * kQ8_0BlockBytes;
        std::memcpy(block, &scale_bits, 2);
        for (int i = 0; i < kQ8_0BlockValues; ++i) {
          const float q = scale == 0.0f ? 0.0f : std::round(v[i] / scale);
          block[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f)));
        }
      }
      break;
    }
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K: {
      const DTypeBlocking b = BlockingOf(dtype);
      const int64_t blocks = values.size() / b.values;
      out.bytes.resize(blocks * b.bytes);
      for (int64_t k = 0; k < blocks; ++k) {
        CodecOf(dtype).encode(values.data() + k * b.values, out.bytes.data() + k * b.bytes);
      }
      break;
    }
    default:
      break;
  }
  out.matrix = WeightMatrix{dtype, rows, cols, out.bytes.data()};
  return out;
}

double WeightAt(const WeightMatrix& w, int64_t row, int64_t col) {
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  switch (w.dtype) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, base + (row * w.cols + col) * 4, 4);
      return f;
    }
    case DType::kF16:
    case DType::kBF16: {
      uint16_t h;
      std::memcpy(&h, base + (row * w.cols + col) * 2, 2);
      return w.dtype == DType::kF16 ? Fp16ToFloat(h) : Bf16ToFloat(h);
    }
    case DType::kQ8_0: {
      const uint8_t* block = base + row * (w.cols / kQ8_0BlockValues) * kQ8_0BlockBytes +
                             (col / kQ8_0BlockValues) * kQ8_0BlockBytes;
      uint16_t scale;
      std::memcpy(&scale, block, 2);
      return static_cast<double>(Fp16ToFloat(scale)) *
             static_cast<int8_t>(block[2 + col % kQ8_0BlockValues]);
    }
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K: {
      const DTypeBlocking b = BlockingOf(w.dtype);
      const uint8_t* block = base + (row * (w.cols / b.values) + col / b.values) * b.bytes;
      float values[kQKValues];
      CodecOf(w.dtype).decode(block, values);
      return values[col % b.values];
    }
    default:
      return 0.0;
  }
}

std::vector<double> WeightRow(const WeightMatrix& w, int64_t row) {
  std::vector<double> out(static_cast<size_t>(w.cols));
  if (w.dtype != DType::kQ8_0 && CodecOf(w.dtype).decode != nullptr) {
    const DTypeBlocking b = BlockingOf(w.dtype);
    for (int64_t k = 0; k < w.cols; k += b.values) {
      float values[kQKValues];
      const uint8_t* block = static_cast<const uint8_t*>(w.data) +
                             (row * (w.cols / b.values) + k / b.values) * b.bytes;
      CodecOf(w.dtype).decode(block, values);
      for (int i = 0; i < b.values; ++i) out[k + i] = values[i];
    }
    return out;
  }
  for (int64_t k = 0; k < w.cols; ++k) out[k] = WeightAt(w, row, k);
  return out;
}

}  // namespace ferry::cpu::testing
