// Writes GGUF v3 files: metadata of every GGUF value type, then tensors
// (F32, F16, BF16, Q8_0) aligned to `general.alignment` (32). Tensors are
// declared before Begin() (the header holds every offset) and their bytes are
// then streamed in the declared order.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/formats/dtype.h"
#include "engine/formats/gguf.h"

namespace ferry {

class GgufWriter {
 public:
  static constexpr uint64_t kAlignment = 32;

  explicit GgufWriter(std::string path);
  ~GgufWriter();  // Removes the temporary file unless Finish succeeded.
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata, kept in the order first set; setting a key again replaces
  // its value. general.alignment is always written.
  void SetU8(std::string_view key, uint8_t v);
  void SetI8(std::string_view key, int8_t v);
  void SetU16(std::string_view key, uint16_t v);
  void SetI16(std::string_view key, int16_t v);
  void SetU32(std::string_view key, uint32_t v);
  void SetI32(std::string_view key, int32_t v);
  void SetU64(std::string_view key, uint64_t v);
  void SetI64(std::string_view key, int64_t v);
  void SetF32(std::string_view key, float v);
  void SetF64(std::string_view key, double v);
  void SetBool(std::string_view key, bool v);
  void SetString(std::string_view key, std::string_view v);
  void SetStringArray(std::string_view key, std::span<const std::string> v);
  void SetU8Array(std::string_view key, std::span<const uint8_t> v);
  void SetI32Array(std::string_view key, std::span<const int32_t> v);
  void SetU32Array(std::string_view key, std::span<const uint32_t> v);
  void SetI64Array(std::string_view key, std::span<const int64_t> v);
  void SetF32Array(std::string_view key, std::span<const float> v);
  void SetF64Array(std::string_view key, std::span<const double> v);
  void SetBoolArray(std::string_view key, std::span<const bool> v);

  // Declares a tensor with its row-major shape (outermost first; written to
  // GGUF reversed, innermost first). InvalidArgument for a repeated name, a
  // dtype GGUF loaders here do not take (integers), 0 or more than 4
  // dimensions, a zero dimension, or Q8_0 rows that are not a multiple of
  // 32; FailedPrecondition after Begin().
  absl::Status AddTensor(std::string name, DType dtype, std::vector<uint64_t> shape);

  // Creates the file (a temporary renamed by Finish) and writes the header.
  // Internal (naming the path) on I/O errors.
  absl::Status Begin();
  // Appends the next declared tensor's bytes (GGML layout). Errors as
  // SafetensorsWriter::WriteTensor.
  absl::Status WriteTensor(std::string_view name, std::span<const uint8_t> data);
  // Closes and renames into place; FailedPrecondition when a tensor is missing.
  absl::Status Finish();

  // Bytes the whole file will take (valid after Begin()).
  uint64_t file_size() const { return file_size_; }

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<uint64_t> shape;
    uint64_t num_bytes;
    uint64_t offset;
  };
  void SetRaw(std::string_view key, GgufType type, std::string bytes);
  void SetArrayRaw(std::string_view key, GgufType elem, uint64_t count, const void* data,
                   size_t elem_size);
  absl::Status WriteBytes(const void* data, size_t n);
  absl::Status Pad(uint64_t written);

  std::string path_;
  std::string tmp_path_;
  std::FILE* out_ = nullptr;
  // Encoded value (type tag + payload) per key, in insertion order.
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<Tensor> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
  uint64_t data_size_ = 0;
  uint64_t file_size_ = 0;
  size_t next_ = 0;
  bool begun_ = false;
  bool finished_ = false;
};

// Converts f32 values to the bytes of `dtype`: F32/F16/BF16 little-endian
// (round to nearest even), Q8_0 in GGML blocks (per 32 values: fp16 scale
// d = max|x| / 127, then int8 q = round(x / d)). InvalidArgument for Q8_0
// when `values.size()` is not a multiple of 32, or for an integer dtype.
absl::StatusOr<std::vector<uint8_t>> EncodeFromF32(DType dtype, std::span<const float> values);

// The inverse for F32/F16/BF16/Q8_0 bytes (for tests and conversions).
std::vector<float> DecodeToF32(DType dtype, std::span<const uint8_t> bytes);

}  // namespace ferry
