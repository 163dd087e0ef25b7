#include "engine/formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace ferry {
namespace {


using json = nlohmann::json;

constexpr uint64_t kMaxElements = uint64_t{1} << 48;

absl::Status Invalid(const std::string& file, std::string_view tensor, std::string_view msg) {
  if (tensor.empty()) return absl::InvalidArgumentError(absl::StrCat(file, ": ", Sv(msg)));
  return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", Sv(tensor), "': ", Sv(msg)));
}

// Reads a non-negative integer array of the given length (any length when
// `want_len` is negative).
absl::StatusOr<std::vector<uint64_t>> ReadUintArray(const json& j, std::string_view field,
                                                    int want_len, const std::string& file,
                                                    std::string_view tensor) {
  if (!j.is_array()) return Invalid(file, tensor, absl::StrCat("'", Sv(field), "' must be an array"));
  if (want_len >= 0 && j.size() != static_cast<size_t>(want_len)) {
    return Invalid(file, tensor, absl::StrCat("'", Sv(field), "' must have ", want_len, " entries"));
  }
  std::vector<uint64_t> out;
  out.reserve(j.size());
  for (const json& e : j) {
    if (!e.is_number_unsigned()) {
      return Invalid(file, tensor,
                     absl::StrCat("'", Sv(field), "' must hold non-negative integers"));
    }
    out.push_back(e.get<uint64_t>());
  }
  return out;
}

absl::StatusOr<SafetensorsTensor> ParseTensor(const std::string& key, const json& entry,
                                              std::span<const uint8_t> data,
                                              const std::string& file) {
  SafetensorsTensor t;
  t.name = key;
  if (!entry.is_object()) return Invalid(file, key, "entry must be an object");
  auto dtype_it = entry.find("dtype");
  if (dtype_it == entry.end() || !dtype_it->is_string()) {
    return Invalid(file, key, "'dtype' must be a string");
  }
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  std::optional<DType> dtype = SafetensorsDTypeFromName(dtype_name);
  if (!dtype) {
    return absl::UnimplementedError(absl::StrCat(
        file, ": tensor '", key, "' has dtype '", dtype_name,
        "', which Ferry does not read (F32, F16, BF16, I64, I32, I8, U8)"));
  }
  t.dtype = *dtype;

  auto shape_it = entry.find("shape");
  if (shape_it == entry.end()) return Invalid(file, key, "'shape' is missing");
  FERRY_ASSIGN_OR_RETURN(t.shape, ReadUintArray(*shape_it, "shape", -1, file, key));
  if (t.shape.size() > 8) return Invalid(file, key, "more than 8 dimensions");
  uint64_t elements = 1;
  for (uint64_t d : t.shape) {
    if (d != 0 && elements > kMaxElements / d) return Invalid(file, key, "shape is too large");
    elements *= d;
  }

  auto offsets_it = entry.find("data_offsets");
  if (offsets_it == entry.end()) return Invalid(file, key, "'data_offsets' is missing");
  FERRY_ASSIGN_OR_RETURN(std::vector<uint64_t> offsets,
                         ReadUintArray(*offsets_it, "data_offsets", 2, file, key));
  uint64_t begin = offsets[0];
  uint64_t end = offsets[1];
  if (begin > end) return Invalid(file, key, "data_offsets begin after they end");
  if (end > data.size()) {
    return absl::DataLossError(absl::StrCat(file, ": tensor '", key, "' lies outside the file (",
                                            "bytes ", begin, "..", end, " of a data section of ",
                                            data.size(), " bytes)"));
  }
  // DTypeBytes cannot overflow here: elements <= 2^48 and units <= 8 bytes.
  uint64_t want = *DTypeBytes(t.dtype, elements);
  if (end - begin != want) {
    return Invalid(file, key,
                   absl::StrCat("shape and dtype need ", want, " bytes but data_offsets span ",
                                end - begin));
  }
  t.data = data.data() + begin;
  t.num_bytes = want;
  return t;
}

absl::Status ParseMetadata(const json& j, const std::string& file,
                           std::map<std::string, std::string, std::less<>>& out) {
  if (!j.is_object()) return Invalid(file, "", "'__metadata__' must be an object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it->is_string()) {
      return Invalid(file, "", absl::StrCat("'__metadata__' value '", it.key(),
                                            "' must be a string"));
    }
    out.emplace(it.key(), it->get<std::string>());
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<DType> SafetensorsDTypeFromName(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  if (name == "I64") return DType::kI64;
  if (name == "I32") return DType::kI32;
  if (name == "I8") return DType::kI8;
  if (name == "U8") return DType::kU8;
  return std::nullopt;
}

std::string_view SafetensorsDTypeName(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
    case DType::kI64: return "I64";
    case DType::kI32: return "I32";
    case DType::kI8: return "I8";
    case DType::kU8: return "U8";
    case DType::kQ8_0:
    case DType::kQ4_K:
    case DType::kQ6_K:
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ5_K:
      return "";
  }
  return "";
}

uint64_t SafetensorsTensor::NumElements() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  FERRY_ASSIGN_OR_RETURN(auto mapped, MappedFile::Open(path));
  FERRY_ASSIGN_OR_RETURN(auto file, Parse(mapped->bytes(), path));
  file->file_ = std::move(mapped);
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Parse(
    std::span<const uint8_t> bytes, std::string name) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->name_ = std::move(name);
  const std::string& file = f->name_;

  if (bytes.size() < 8) {
    return absl::DataLossError(absl::StrCat(file, ": truncated safetensors file (", bytes.size(),
                                            " bytes, the header length alone takes 8)"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": safetensors header of ", header_len,
                                                   " bytes exceeds the limit of ",
                                                   kMaxHeaderBytes, " (not a safetensors file?)"));
  }
  if (header_len > bytes.size() - 8) {
    return absl::DataLossError(absl::StrCat(file, ": truncated safetensors file: header of ",
                                            header_len, " bytes but only ", bytes.size() - 8,
                                            " bytes follow"));
  }
  const char* header_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  // The reference writer pads the header with spaces, which JSON allows.
  json header = json::parse(header_begin, header_begin + header_len, nullptr,
                            /*allow_exceptions=*/false);
  if (header.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": safetensors header is not well-formed JSON"));
  }
  if (!header.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": safetensors header must be a JSON object"));
  }

  std::span<const uint8_t> data = bytes.subspan(8 + header_len);
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      FERRY_RETURN_IF_ERROR(ParseMetadata(*it, file, f->metadata_));
      continue;
    }
    FERRY_ASSIGN_OR_RETURN(SafetensorsTensor t, ParseTensor(it.key(), *it, data, file));
    f->tensors_.push_back(std::move(t));
  }

  std::sort(f->tensors_.begin(), f->tensors_.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return a.data != b.data ? a.data < b.data : a.num_bytes < b.num_bytes;
            });
  for (size_t i = 0; i < f->tensors_.size(); ++i) {
    const SafetensorsTensor& t = f->tensors_[i];
    if (i > 0) {
      const SafetensorsTensor& prev = f->tensors_[i - 1];
      if (t.num_bytes > 0 && prev.data + prev.num_bytes > t.data) {
        return Invalid(file, t.name, absl::StrCat("data overlaps tensor '", prev.name, "'"));
      }
    }
    f->index_.emplace(t.name, i);
  }
  return f;
}

const SafetensorsTensor* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<std::unique_ptr<SafetensorsModel>> SafetensorsModel::Open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::unique_ptr<SafetensorsModel> m(new SafetensorsModel());
  const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  const std::string single_path = (fs::path(dir) / "model.safetensors").string();
  std::error_code ec;

  if (!fs::exists(index_path, ec)) {
    if (!fs::exists(single_path, ec)) {
      return absl::NotFoundError(absl::StrCat(
          dir, ": neither model.safetensors nor model.safetensors.index.json exists"));
    }
    FERRY_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single_path));
    for (const SafetensorsTensor& t : file->tensors()) m->index_.emplace(t.name, &t);
    m->files_.push_back(std::move(file));
    return m;
  }

  FERRY_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  json index = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (index.is_discarded() || !index.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": not a well-formed JSON object"));
  }
  auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(index_path, ": 'weight_map' must be an object of tensor name -> file"));
  }
  std::map<std::string, SafetensorsFile*> shards;
  for (auto it = map_it->begin(); it != map_it->end(); ++it) {
    if (!it->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map entry for '",
                                                     it.key(), "' must be a file name"));
    }
    const std::string& shard = it->get_ref<const std::string&>();
    // Shards live beside the index; a path out of the directory is refused.
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..") {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor '", it.key(),
                                                     "' names an invalid shard '", shard, "'"));
    }
    if (shards.count(shard) == 0) {
      const std::string shard_path = (fs::path(dir) / shard).string();
      if (!fs::exists(shard_path, ec)) {
        return absl::NotFoundError(absl::StrCat(index_path, ": shard file ", shard_path,
                                                " (holding tensor '", it.key(),
                                                "') is missing"));
      }
      FERRY_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(shard_path));
      shards.emplace(shard, file.get());
      m->files_.push_back(std::move(file));
    }
    const SafetensorsFile* file = shards[shard];
    const SafetensorsTensor* t = file->Find(it.key());
    if (t == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(index_path, ": tensor '", it.key(),
                                                     "' is not in its shard ", file->name()));
    }
    m->index_.emplace(it.key(), t);
  }
  return m;
}

const SafetensorsTensor* SafetensorsModel::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<const SafetensorsTensor*> SafetensorsModel::tensors() const {
  std::vector<const SafetensorsTensor*> out;
  for (const auto& f : files_) {
    for (const SafetensorsTensor& t : f->tensors()) out.push_back(&t);
  }
  return out;
}

}  // namespace ferry
