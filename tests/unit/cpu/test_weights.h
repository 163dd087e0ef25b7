// Random weight matrices in every dtype, and double-precision references
// computed from the values actually stored (after rounding to the dtype).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "engine/cpu/kernels.h"

namespace ferry::cpu::testing {

// Owns the bytes behind a WeightMatrix.
struct TestWeights {
  std::vector<uint8_t> bytes;
  WeightMatrix matrix;
};

// rows x cols values uniform in [-1, 1), stored as `dtype`.
TestWeights MakeWeights(DType dtype, int64_t rows, int64_t cols, std::mt19937& rng);

// Element (row, col) as stored, widened to double.
double WeightAt(const WeightMatrix& w, int64_t row, int64_t col);
// A whole row of WeightAt (block dtypes decoded once per block).
std::vector<double> WeightRow(const WeightMatrix& w, int64_t row);

std::vector<float> RandomVector(int64_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f);

}  // namespace ferry::cpu::testing
