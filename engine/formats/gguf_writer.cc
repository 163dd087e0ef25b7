#include "engine/formats/gguf_writer.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/formats/kquants.h"

namespace ferry {
namespace {


constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kGgufVersion = 3;

template <typename T>
void Append(std::string& out, T v) {
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

void AppendString(std::string& out, std::string_view s) {
  Append<uint64_t>(out, s.size());
  out.append(s);
}

uint32_t GgmlTypeOf(DType t) {
  switch (t) {
    case DType::kF32: return static_cast<uint32_t>(GgmlType::kF32);
    case DType::kF16: return static_cast<uint32_t>(GgmlType::kF16);
    case DType::kBF16: return static_cast<uint32_t>(GgmlType::kBF16);
    case DType::kQ8_0: return static_cast<uint32_t>(GgmlType::kQ8_0);
    case DType::kQ4_K:
      return static_cast<uint32_t>(GgmlType::kQ4_K);
    case DType::kQ6_K:
      return static_cast<uint32_t>(GgmlType::kQ6_K);
    case DType::kQ4_0:
      return static_cast<uint32_t>(GgmlType::kQ4_0);
    case DType::kQ5_0:
      return static_cast<uint32_t>(GgmlType::kQ5_0);
    case DType::kQ5_K:
      return static_cast<uint32_t>(GgmlType::kQ5_K);
    default: return UINT32_MAX;
  }
}

uint64_t AlignUp(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

}  // namespace

GgufWriter::GgufWriter(std::string path) : path_(std::move(path)), tmp_path_(path_ + ".tmp") {
  SetU32("general.alignment", static_cast<uint32_t>(kAlignment));
}

GgufWriter::~GgufWriter() {
  if (out_ != nullptr) std::fclose(out_);
  if (begun_ && !finished_) std::remove(tmp_path_.c_str());
}

void GgufWriter::SetRaw(std::string_view key, GgufType type, std::string bytes) {
  std::string value;
  Append<uint32_t>(value, static_cast<uint32_t>(type));
  value += bytes;
  auto it = metadata_index_.find(key);
  if (it != metadata_index_.end()) {
    metadata_[it->second].second = std::move(value);
    return;
  }
  metadata_index_.emplace(std::string(key), metadata_.size());
  metadata_.emplace_back(std::string(key), std::move(value));
}

void GgufWriter::SetArrayRaw(std::string_view key, GgufType elem, uint64_t count,
                             const void* data, size_t elem_size) {
  std::string bytes;
  Append<uint32_t>(bytes, static_cast<uint32_t>(elem));
  Append<uint64_t>(bytes, count);
  bytes.append(static_cast<const char*>(data), count * elem_size);
  SetRaw(key, GgufType::kArray, std::move(bytes));
}

#define FERRY_GGUF_SCALAR_SETTER(Name, CType, Tag)              \
  void GgufWriter::Name(std::string_view key, CType v) {        \
    std::string bytes;                                          \
    Append<CType>(bytes, v);                                    \
    SetRaw(key, GgufType::Tag, std::move(bytes));               \
  }
FERRY_GGUF_SCALAR_SETTER(SetU8, uint8_t, kU8)
FERRY_GGUF_SCALAR_SETTER(SetI8, int8_t, kI8)
FERRY_GGUF_SCALAR_SETTER(SetU16, uint16_t, kU16)
FERRY_GGUF_SCALAR_SETTER(SetI16, int16_t, kI16)
FERRY_GGUF_SCALAR_SETTER(SetU32, uint32_t, kU32)
FERRY_GGUF_SCALAR_SETTER(SetI32, int32_t, kI32)
FERRY_GGUF_SCALAR_SETTER(SetU64, uint64_t, kU64)
FERRY_GGUF_SCALAR_SETTER(SetI64, int64_t, kI64)
FERRY_GGUF_SCALAR_SETTER(SetF32, float, kF32)
FERRY_GGUF_SCALAR_SETTER(SetF64, double, kF64)
#undef FERRY_GGUF_SCALAR_SETTER

void GgufWriter::SetBool(std::string_view key, bool v) {
  SetRaw(key, GgufType::kBool, std::string(1, v ? '\1' : '\0'));
}

void GgufWriter::SetString(std::string_view key, std::string_view v) {
  std::string bytes;
  AppendString(bytes, v);
  SetRaw(key, GgufType::kString, std::move(bytes));
}

void GgufWriter::SetStringArray(std::string_view key, std::span<const std::string> v) {
  std::string bytes;
  Append<uint32_t>(bytes, static_cast<uint32_t>(GgufType::kString));
  Append<uint64_t>(bytes, v.size());
  for (const std::string& s : v) AppendString(bytes, s);
  SetRaw(key, GgufType::kArray, std::move(bytes));
}

void GgufWriter::SetU8Array(std::string_view key, std::span<const uint8_t> v) {
  SetArrayRaw(key, GgufType::kU8, v.size(), v.data(), 1);
}
void GgufWriter::SetI32Array(std::string_view key, std::span<const int32_t> v) {
  SetArrayRaw(key, GgufType::kI32, v.size(), v.data(), 4);
}
void GgufWriter::SetU32Array(std::string_view key, std::span<const uint32_t> v) {
  SetArrayRaw(key, GgufType::kU32, v.size(), v.data(), 4);
}
void GgufWriter::SetI64Array(std::string_view key, std::span<const int64_t> v) {
  SetArrayRaw(key, GgufType::kI64, v.size(), v.data(), 8);
}
void GgufWriter::SetF32Array(std::string_view key, std::span<const float> v) {
  SetArrayRaw(key, GgufType::kF32, v.size(), v.data(), 4);
}
void GgufWriter::SetF64Array(std::string_view key, std::span<const double> v) {
  SetArrayRaw(key, GgufType::kF64, v.size(), v.data(), 8);
}
void GgufWriter::SetBoolArray(std::string_view key, std::span<const bool> v) {
  std::vector<uint8_t> bytes(v.begin(), v.end());
  SetArrayRaw(key, GgufType::kBool, bytes.size(), bytes.data(), 1);
}

absl::Status GgufWriter::AddTensor(std::string name, DType dtype, std::vector<uint64_t> shape) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", Sv(name), "': ", Sv(why)));
  };
  if (begun_) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": tensor '", Sv(name), "' declared after the header was written"));
  }
  if (tensor_index_.count(name) != 0) return invalid("declared twice");
  if (GgmlTypeOf(dtype) == UINT32_MAX) {
    return invalid("GGUF tensors here are F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K or Q6_K");
  }
  if (shape.empty() || shape.size() > 4) return invalid("needs 1 to 4 dimensions");
  uint64_t elements = 1;
  for (uint64_t d : shape) {
    if (d == 0 || elements > (uint64_t{1} << 48) / d) return invalid("invalid shape");
    elements *= d;
  }
  if (const int block = BlockingOf(dtype).values; shape.back() % block != 0) {
    return invalid(
        absl::StrCat(Sv(DTypeName(dtype)), " rows must be a multiple of ", block, " values"));
  }
  uint64_t bytes = *DTypeBytes(dtype, elements);
  tensor_index_.emplace(name, tensors_.size());
  tensors_.push_back({std::move(name), dtype, std::move(shape), bytes, data_size_});
  data_size_ = AlignUp(data_size_ + bytes, kAlignment);
  return absl::OkStatus();
}

absl::Status GgufWriter::WriteBytes(const void* data, size_t n) {
  if (n != 0 && std::fwrite(data, 1, n, out_) != n) {
    return absl::InternalError(absl::StrCat(tmp_path_, ": write failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status GgufWriter::Pad(uint64_t written) {
  static constexpr char kZeros[kAlignment] = {};
  return WriteBytes(kZeros, AlignUp(written, kAlignment) - written);
}

absl::Status GgufWriter::Begin() {
  if (begun_) return absl::FailedPreconditionError(absl::StrCat(path_, ": Begin called twice"));
  std::string header;
  Append<uint32_t>(header, kGgufMagic);
  Append<uint32_t>(header, kGgufVersion);
  Append<uint64_t>(header, tensors_.size());
  Append<uint64_t>(header, metadata_.size());
  for (const auto& [key, value] : metadata_) {
    AppendString(header, key);
    header += value;
  }
  for (const Tensor& t : tensors_) {
    AppendString(header, t.name);
    Append<uint32_t>(header, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) Append<uint64_t>(header, *it);
    Append<uint32_t>(header, GgmlTypeOf(t.dtype));
    Append<uint64_t>(header, t.offset);
  }
  file_size_ = AlignUp(header.size(), kAlignment) + data_size_;

  out_ = std::fopen(tmp_path_.c_str(), "wb");
  if (out_ == nullptr) {
    return absl::InternalError(absl::StrCat(tmp_path_, ": ", std::strerror(errno)));
  }
  begun_ = true;
  FERRY_RETURN_IF_ERROR(WriteBytes(header.data(), header.size()));
  return Pad(header.size());
}

absl::Status GgufWriter::WriteTensor(std::string_view name, std::span<const uint8_t> data) {
  if (!begun_ || finished_) {
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": tensor '", Sv(name), "' written outside Begin()..Finish()"));
  }
  if (next_ >= tensors_.size() || tensors_[next_].name != name) {
    return absl::FailedPreconditionError(absl::StrCat(
        path_, ": tensor '", Sv(name), "' written out of order (expected '",
        next_ < tensors_.size() ? tensors_[next_].name : std::string("(none)"), "')"));
  }
  const Tensor& t = tensors_[next_];
  if (data.size() != t.num_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", Sv(name), "' has ",
                                                   data.size(), " bytes, declared ",
                                                   t.num_bytes));
  }
  FERRY_RETURN_IF_ERROR(WriteBytes(data.data(), data.size()));
  FERRY_RETURN_IF_ERROR(Pad(data.size()));
  ++next_;
  return absl::OkStatus();
}

absl::Status GgufWriter::Finish() {
  if (!begun_) FERRY_RETURN_IF_ERROR(Begin());
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

absl::StatusOr<std::vector<uint8_t>> EncodeFromF32(DType dtype, std::span<const float> values) {
  std::vector<uint8_t> out;
  switch (dtype) {
    case DType::kF32:
      out.resize(values.size() * 4);
      if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
      return out;
    case DType::kF16:
    case DType::kBF16: {
      out.resize(values.size() * 2);
      for (size_t i = 0; i < values.size(); ++i) {
        uint16_t h = dtype == DType::kF16 ? FloatToFp16(values[i]) : FloatToBf16(values[i]);
        std::memcpy(&out[2 * i], &h, 2);
      }
      return out;
    }
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K: {
      const DTypeBlocking b = BlockingOf(dtype);
      if (values.size() % b.values != 0) {
        return absl::InvalidArgumentError(absl::StrCat(Sv(DTypeName(dtype)),
                                                       " needs a multiple of ", b.values,
                                                       " values, got ", values.size()));
      }
      const BlockCodec codec = CodecOf(dtype);
      out.resize(values.size() / b.values * b.bytes);
      for (size_t k = 0; k < values.size() / b.values; ++k) {
        codec.encode(values.data() + k * b.values, out.data() + k * b.bytes);
      }
      return out;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("cannot encode floats as ", Sv(DTypeName(dtype))));
  }
}

std::vector<float> DecodeToF32(DType dtype, std::span<const uint8_t> bytes) {
  std::vector<float> out;
  switch (dtype) {
    case DType::kF32:
      out.resize(bytes.size() / 4);
      if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * 4);
      break;
    case DType::kF16:
    case DType::kBF16:
      out.resize(bytes.size() / 2);
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t h;
        std::memcpy(&h, &bytes[2 * i], 2);
        out[i] = dtype == DType::kF16 ? Fp16ToFloat(h) : Bf16ToFloat(h);
      }
      break;
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K: {
      const DTypeBlocking b = BlockingOf(dtype);
      const BlockCodec codec = CodecOf(dtype);
      const size_t blocks = bytes.size() / b.bytes;
      out.resize(blocks * b.values);
      for (size_t k = 0; k < blocks; ++k) {
        codec.decode(bytes.data() + k * b.bytes, out.data() + k * b.values);
      }
      break;
    }
    default:
      break;
  }
  return out;
}

}  // namespace ferry
