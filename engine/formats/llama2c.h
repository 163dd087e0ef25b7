// llama2.c checkpoints (Karpathy's run.c / export.py): the legacy format
// (seven int32 hyper-parameters, then f32 weights) and version 1 (magic
// "ak42", a 256-byte header, then f32 weights in another order). Every size
// is checked against the file: a short, long or inconsistent file gives an
// error naming it, never a bad read.
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

namespace ferry {

struct Llama2cConfig {
  int version = 0;  // 0: legacy header; 1: "ak42" header
  int dim = 0;
  int hidden_dim = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int vocab_size = 0;  // always positive here
  int seq_len = 0;
  bool shared_classifier = true;  // output matrix == token embeddings

  int head_dim() const { return dim / num_heads; }
  int kv_dim() const { return num_kv_heads * head_dim(); }
};

// One weight, named as llama2.c's model.py names it
// ("layers.3.attention.wq.weight"). Row-major [out, in]; f32.
struct Llama2cTensor {
  std::string name;
  std::vector<uint64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t num_bytes = 0;
};

class Llama2cCheckpoint {
 public:
  // The version-1 file magic ("ak42" as a little-endian uint32).
  static constexpr uint32_t kMagic = 0x616b3432;

  // True when `bytes` (the start of a file) followed by `file_size` bytes in
  // all can only be a llama2.c checkpoint: the version-1 magic, or a legacy
  // header whose numbers agree with each other and with the file's size.
  static bool Sniff(std::span<const uint8_t> head, uint64_t file_size);
  // Reads the first bytes of `path` and sniffs them; false when unreadable.
  static bool SniffFile(const std::string& path);

  // Maps and parses `path`. NotFound/PermissionDenied when it cannot be
  // opened; InvalidArgument for a header whose numbers are out of range or
  // inconsistent, or an unknown version (naming the file and the field);
  // DataLoss when the file is shorter or longer than its header says.
  static absl::StatusOr<std::unique_ptr<Llama2cCheckpoint>> Open(const std::string& path);
  // Parses bytes that must outlive the returned object; `name` is used in
  // errors. Fails as Open does.
  static absl::StatusOr<std::unique_ptr<Llama2cCheckpoint>> Parse(std::span<const uint8_t> bytes,
                                                                  std::string name);

  const std::string& name() const { return name_; }
  const Llama2cConfig& config() const { return config_; }
  const std::vector<Llama2cTensor>& tensors() const { return tensors_; }
  // Null when absent ("output.weight" is absent when the classifier is shared).
  const Llama2cTensor* Find(std::string_view name) const;

 private:
  Llama2cCheckpoint() = default;
  std::unique_ptr<MappedFile> file_;  // null when parsed from caller's bytes
  std::string name_;
  Llama2cConfig config_;
  std::vector<Llama2cTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

}  // namespace ferry
