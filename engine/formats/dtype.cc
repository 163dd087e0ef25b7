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
    case DType::kQ4_K:
      return "q4_k";
    case DType::kQ6_K:
      return "q6_k";
    case DType::kQ4_0:
      return "q4_0";
    case DType::kQ5_0:
      return "q5_0";
    case DType::kQ5_K:
      return "q5_k";
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
  if (n == "q4_k") return DType::kQ4_K;
  if (n == "q6_k") return DType::kQ6_K;
  if (n == "q4_0") return DType::kQ4_0;
  if (n == "q5_0") return DType::kQ5_0;
  if (n == "q5_k") return DType::kQ5_K;
  if (n == "i32" || n == "int32") return DType::kI32;
  if (n == "i64" || n == "int64") return DType::kI64;
  if (n == "u8" || n == "uint8") return DType::kU8;
  if (n == "i8" || n == "int8") return DType::kI8;
  return std::nullopt;
}

DTypeBlocking BlockingOf(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kI32:
      return {1, 4};
    case DType::kF16:
    case DType::kBF16:
      return {1, 2};
    case DType::kI64:
      return {1, 8};
    case DType::kU8:
    case DType::kI8:
      return {1, 1};
    case DType::kQ8_0:
      return {kQ8_0BlockValues, kQ8_0BlockBytes};
    case DType::kQ4_K:
      return {kQKValues, kQ4_KBlockBytes};
    case DType::kQ6_K:
      return {kQKValues, kQ6_KBlockBytes};
    case DType::kQ4_0:
      return {kQ8_0BlockValues, kQ4_0BlockBytes};
    case DType::kQ5_0:
      return {kQ8_0BlockValues, kQ5_0BlockBytes};
    case DType::kQ5_K:
      return {kQKValues, kQ5_KBlockBytes};
  }
  return {1, 1};
}

std::optional<uint64_t> DTypeBytes(DType t, uint64_t n) {
  const DTypeBlocking b = BlockingOf(t);
  if (n % static_cast<uint64_t>(b.values) != 0) return std::nullopt;
  const uint64_t blocks = n / static_cast<uint64_t>(b.values);
  if (blocks > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(b.bytes))
    return std::nullopt;
  return blocks * static_cast<uint64_t>(b.bytes);
}

}  // namespace ferry
