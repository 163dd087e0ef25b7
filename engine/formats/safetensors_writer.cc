#include "engine/formats/safetensors_writer.h"

#include <cerrno>
#include <cstring>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/formats/safetensors.h"
#include "nlohmann/json.hpp"

namespace ferry {
namespace {
}  // namespace

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, std::vector<SafetensorsTensorSpec> tensors,
    const std::map<std::string, std::string>& metadata) {
  std::unique_ptr<SafetensorsWriter> w(new SafetensorsWriter());
  w->path_ = path;
  w->tmp_path_ = path + ".tmp";

  // Keys keep the declared order so the data offsets read in file order.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const SafetensorsTensorSpec& t : tensors) {
    if (t.name.empty() || absl::StartsWith(t.name, "__") || !seen.insert(t.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor name '", t.name, "' is empty, reserved or repeated"));
    }
    std::string_view dtype = SafetensorsDTypeName(t.dtype);
    if (dtype.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", t.name, "': dtype ",
                                                     Sv(DTypeName(t.dtype)),
                                                     " cannot be stored in safetensors"));
    }
    uint64_t elements = 1;
    for (uint64_t d : t.shape) {
      if (d != 0 && elements > (uint64_t{1} << 48) / d) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor '", t.name, "' has a shape too large"));
      }
      elements *= d;
    }
    uint64_t bytes = *DTypeBytes(t.dtype, elements);
    header[t.name] = {{"dtype", dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    w->sizes_.push_back(bytes);
    offset += bytes;
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  w->tensors_ = std::move(tensors);
  w->file_size_ = 8 + text.size() + offset;

  w->out_ = std::fopen(w->tmp_path_.c_str(), "wb");
  if (w->out_ == nullptr) {
    return absl::InternalError(absl::StrCat(w->tmp_path_, ": ", std::strerror(errno)));
  }
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(text.size() >> (8 * i));
  if (std::fwrite(len, 1, 8, w->out_) != 8 ||
      std::fwrite(text.data(), 1, text.size(), w->out_) != text.size()) {
    return absl::InternalError(absl::StrCat(w->tmp_path_, ": write failed"));
  }
  return w;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (out_ != nullptr) std::fclose(out_);
  if (!finished_ && !tmp_path_.empty()) std::remove(tmp_path_.c_str());
}

absl::Status SafetensorsWriter::WriteTensor(std::string_view name,
                                            std::span<const uint8_t> data) {
  if (next_ >= tensors_.size() || tensors_[next_].name != name) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, ": tensor '", Sv(name), "' written out of order (expected '",
        next_ < tensors_.size() ? tensors_[next_].name : std::string("(none)"), "')"));
  }
  if (data.size() != sizes_[next_]) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", Sv(name), "' has ",
                                                   data.size(), " bytes, declared ",
                                                   sizes_[next_]));
  }
  if (!data.empty() && std::fwrite(data.data(), 1, data.size(), out_) != data.size()) {
    return absl::InternalError(absl::StrCat(tmp_path_, ": write failed: ", std::strerror(errno)));
  }
  ++next_;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Finish() {
  if (next_ != tensors_.size()) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": only ", next_, " of ",
                                                      tensors_.size(), " tensors written"));
  }
  int rc = std::fclose(out_);
  out_ = nullptr;
  if (rc != 0) return absl::InternalError(absl::StrCat(tmp_path_, ": close failed"));
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    return absl::InternalError(absl::StrCat(path_, ": rename failed: ", std::strerror(errno)));
  }
  finished_ = true;
  return absl::OkStatus();
}

absl::Status WriteSafetensors(const std::string& path,
                              std::span<const SafetensorsTensorData> tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<SafetensorsTensorSpec> specs;
  for (const SafetensorsTensorData& t : tensors) specs.push_back(t.spec);
  FERRY_ASSIGN_OR_RETURN(auto writer, SafetensorsWriter::Create(path, std::move(specs), metadata));
  for (const SafetensorsTensorData& t : tensors) {
    FERRY_RETURN_IF_ERROR(writer->WriteTensor(t.spec.name, t.data));
  }
  return writer->Finish();
}

}  // namespace ferry
