// GGUF (v2, v3) reader over memory-mapped bytes. Every offset and length is
// checked against the file: malformed input gives an error naming the file
// (and the key or tensor), never an out-of-bounds read.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mapped_file.h"
#include "engine/formats/dtype.h"

namespace ferry {

enum class GgufType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};

// One metadata value. Scalars are held decoded; arrays keep a view of their
// raw little-endian bytes (numbers) or a list of views (strings) into the file.
struct GgufValue {
  GgufType type = GgufType::kU8;
  // Scalars: integers (and bool) widen into i64/u64, floats into f64.
  int64_t i64 = 0;
  uint64_t u64 = 0;
  double f64 = 0;
  std::string_view str;
  // Arrays.
  GgufType elem_type = GgufType::kU8;
  uint64_t count = 0;
  const uint8_t* raw = nullptr;            // numeric arrays
  std::vector<std::string_view> strings;   // string arrays
};

// ggml tensor types that Ferry can load (others are rejected by name).
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ5_0 = 6,
  kQ8_0 = 8,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kBF16 = 30
};

struct GgufTensorInfo {
  std::string name;
  // GGML order: ne[0] is the fastest-varying (innermost) dimension.
  std::vector<uint64_t> ne;
  DType dtype = DType::kF32;
  uint64_t offset = 0;       // relative to the data section
  uint64_t num_bytes = 0;
  const uint8_t* data = nullptr;

  uint64_t NumElements() const;
  // Row-major shape (outermost first): the reverse of `ne`.
  std::vector<uint64_t> Shape() const { return {ne.rbegin(), ne.rend()}; }
};

class GgufFile {
 public:
  // Maps and parses `path`.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // Parses bytes that outlive the returned object. `name` is used in errors.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Parse(std::span<const uint8_t> bytes,
                                                        std::string name);

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* Find(std::string_view key) const;
  const GgufTensorInfo* FindTensor(std::string_view name) const;

  // Typed getters: NotFound when the key is absent, InvalidArgument (naming
  // the key and file) when it has another type. Integer getters accept any
  // integer type whose value fits.
  absl::StatusOr<std::string_view> GetString(std::string_view key) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<std::vector<std::string_view>> GetStringArray(std::string_view key) const;
  absl::StatusOr<std::vector<float>> GetFloatArray(std::string_view key) const;
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;

 private:
  GgufFile() = default;
  std::unique_ptr<MappedFile> file_;  // null when parsed from caller's bytes
  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace ferry
