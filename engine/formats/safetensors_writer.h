// Writes safetensors files. Tensors are declared up front (the header holds
// every offset) and their bytes are then streamed in the declared order, so a
// model larger than memory can be written one tensor at a time.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/formats/dtype.h"

namespace ferry {

struct SafetensorsTensorSpec {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<uint64_t> shape;  // row-major, outermost first
};

class SafetensorsWriter {
 public:
  // Creates `path` (through a temporary file renamed by Finish) and writes
  // the header. InvalidArgument for a duplicate or empty name, a name
  // starting with "__", a dtype safetensors cannot hold (Q8_0) or a shape
  // too large; Internal (naming the path) when the file cannot be created.
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, std::vector<SafetensorsTensorSpec> tensors,
      const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();  // Removes the temporary file unless Finish succeeded.
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // Appends the bytes of the next declared tensor (little-endian elements).
  // FailedPrecondition when `name` is not the next tensor; InvalidArgument
  // when the size is not the declared one; Internal on a write error.
  absl::Status WriteTensor(std::string_view name, std::span<const uint8_t> data);
  // Flushes, closes and renames into place. FailedPrecondition when some
  // declared tensor was not written.
  absl::Status Finish();

  // Bytes the whole file will take.
  uint64_t file_size() const { return file_size_; }

 private:
  SafetensorsWriter() = default;
  std::string path_;
  std::string tmp_path_;
  std::FILE* out_ = nullptr;
  std::vector<SafetensorsTensorSpec> tensors_;
  std::vector<uint64_t> sizes_;
  size_t next_ = 0;
  uint64_t file_size_ = 0;
  bool finished_ = false;
};

// A whole tensor held in memory, for WriteSafetensors.
struct SafetensorsTensorData {
  SafetensorsTensorSpec spec;
  std::span<const uint8_t> data;
};

// Writes `tensors` (in this order) to `path` in one go; errors as above.
absl::Status WriteSafetensors(const std::string& path,
                              std::span<const SafetensorsTensorData> tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace ferry
