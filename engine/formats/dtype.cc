#include "engine/formats/dtype.h"

#include <limits>

#include "absl/strings/ascii.h"

namespace ferry {

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "f32";
    case DType::kF16: return "f16";
    case DType::kBF16: return "bf16";
    case DType::kQ8_0: return "q8_0";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
    case DType::kU8: return "u8";
    case DType::kI8: return "i8";
  }
  return "unknown";
}

std::optional<DType> ParseDType(std::string_view name) {
  std::string n(name);
  absl::AsciiStrToLower(&n);
  if (n == "f32" || n == "float32") return DType::kF32;
  if (n == "f16" || n == "float16") return DType::kF16;
  if (n == "bf16" || n == "bfloat16") return DType::kBF16;
  if (n == "q8_0") return DType::kQ8_0;
  if (n == "i32" || n == "int32") return DType::kI32;
  if (n == "i64" || n == "int64") return DType::kI64;
  if (n == "u8" || n == "uint8") return DType::kU8;
  if (n == "i8" || n == "int8") return DType::kI8;
  return std::nullopt;
}

std::optional<uint64_t> DTypeBytes(DType t, uint64_t n) {
  uint64_t unit = 0;
  switch (t) {
    case DType::kF32: case DType::kI32: unit = 4; break;
    case DType::kF16: case DType::kBF16: unit = 2; break;
    case DType::kI64: unit = 8; break;
    case DType::kU8: case DType::kI8: unit = 1; break;
    case DType::kQ8_0:
      if (n % kQ8_0BlockValues != 0) return std::nullopt;
      return n / kQ8_0BlockValues * kQ8_0BlockBytes;
  }
  if (n > std::numeric_limits<uint64_t>::max() / unit) return std::nullopt;
  return n * unit;
}

}  // namespace ferry
