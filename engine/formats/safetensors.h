// Safetensors reader over memory-mapped bytes, for single files and for
// Hugging Face model directories (model.safetensors or shards listed in
// model.safetensors.index.json). Every offset and size is checked: malformed
// input gives an error naming the file (and the tensor), never a bad read.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/mapped_file.h"
#include "engine/formats/dtype.h"

namespace ferry {

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<uint64_t> shape;  // row-major, outermost first; empty for a scalar
  // Into the mapped file; not necessarily aligned (copy before wide loads
  // when the writer did not pad the header to 8 bytes).
  const uint8_t* data = nullptr;
  uint64_t num_bytes = 0;

  uint64_t NumElements() const;
  // F32, F16 and BF16 are model weights; integer tensors (position ids,
  // masks) are read so that a file holding them still opens, but a model
  // loader should refuse to use them as weights.
  bool IsFloat() const {
    return dtype == DType::kF32 || dtype == DType::kF16 || dtype == DType::kBF16;
  }
};

class SafetensorsFile {
 public:
  // The header may not exceed this (the reference implementation's limit).
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  // Maps and parses `path`. NotFound/PermissionDenied when it cannot be
  // opened; DataLoss when truncated or a tensor lies outside the data;
  // InvalidArgument for malformed JSON, an unknown dtype or a shape that
  // does not match the byte range.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Parses bytes that must outlive the returned object; `name` is used in
  // errors. Fails as Open does.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(std::span<const uint8_t> bytes,
                                                               std::string name);

  const std::string& name() const { return name_; }
  // In the order of their data offsets.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  // The "__metadata__" string map (empty when absent).
  const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }
  // Null when absent.
  const SafetensorsTensor* Find(std::string_view name) const;

 private:
  SafetensorsFile() = default;
  std::unique_ptr<MappedFile> file_;  // null when parsed from caller's bytes
  std::string name_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string, std::less<>> metadata_;
  std::map<std::string, size_t, std::less<>> index_;
};

// The weights of a Hugging Face model directory, possibly sharded.
class SafetensorsModel {
 public:
  // Opens `dir`/model.safetensors.index.json and every shard it names, or
  // else `dir`/model.safetensors. NotFound when neither exists or a shard is
  // missing (naming the shard); InvalidArgument when the index is malformed or
  // names a tensor its shard lacks; otherwise the errors of
  // SafetensorsFile::Open.
  static absl::StatusOr<std::unique_ptr<SafetensorsModel>> Open(const std::string& dir);

  // Null when no shard holds `name`.
  const SafetensorsTensor* Find(std::string_view name) const;
  // Every tensor of every shard.
  std::vector<const SafetensorsTensor*> tensors() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  SafetensorsModel() = default;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsTensor*, std::less<>> index_;
};

// "F32" -> kF32 and so on for the safetensors dtype names Ferry knows.
std::optional<DType> SafetensorsDTypeFromName(std::string_view name);
// The safetensors name of `t` ("F32", "BF16", ...); empty for Q8_0.
std::string_view SafetensorsDTypeName(DType t);

}  // namespace ferry
