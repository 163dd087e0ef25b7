#include "engine/formats/gguf.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace ferry {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxDims = 4;
constexpr uint64_t kMaxStringBytes = uint64_t{1} << 30;
constexpr int kMaxArrayNesting = 2;

// Bounds-checked little-endian reader.
class Reader {
 public:
  Reader(std::span<const uint8_t> bytes, const std::string& name) : bytes_(bytes), name_(name) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return bytes_.size() - pos_; }

  absl::Status Need(uint64_t n, std::string_view what) const {
    if (n > remaining()) {
      return absl::DataLossError(absl::StrCat(name_, ": truncated GGUF file while reading ", Sv(what),
                                              " at offset ", pos_, " (need ", n, " bytes, ",
                                              remaining(), " left)"));
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::StatusOr<T> Read(std::string_view what) {
    FERRY_RETURN_IF_ERROR(Need(sizeof(T), what));
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  absl::StatusOr<std::string_view> ReadString(std::string_view what) {
    FERRY_ASSIGN_OR_RETURN(uint64_t len, Read<uint64_t>(what));
    if (len > kMaxStringBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(name_, ": string of ", len, " bytes in ", Sv(what), " is too long"));
    }
    FERRY_RETURN_IF_ERROR(Need(len, what));
    std::string_view s(reinterpret_cast<const char*>(bytes_.data() + pos_), len);
    pos_ += len;
    return s;
  }

  const uint8_t* Take(uint64_t n) {
    const uint8_t* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& name_;
  size_t pos_ = 0;
};

uint64_t ScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kU8: case GgufType::kI8: case GgufType::kBool: return 1;
    case GgufType::kU16: case GgufType::kI16: return 2;
    case GgufType::kU32: case GgufType::kI32: case GgufType::kF32: return 4;
    case GgufType::kU64: case GgufType::kI64: case GgufType::kF64: return 8;
    default: return 0;
  }
}

bool IsInteger(GgufType t) {
  switch (t) {
    case GgufType::kU8: case GgufType::kI8: case GgufType::kU16: case GgufType::kI16:
    case GgufType::kU32: case GgufType::kI32: case GgufType::kU64: case GgufType::kI64:
    case GgufType::kBool:
      return true;
    default:
      return false;
  }
}

bool IsSigned(GgufType t) {
  return t == GgufType::kI8 || t == GgufType::kI16 || t == GgufType::kI32 || t == GgufType::kI64;
}

// Decodes a scalar at `p` into v.i64/u64/f64.
void DecodeScalar(GgufType t, const uint8_t* p, GgufValue& v) {
  auto load = [p](auto zero) {
    decltype(zero) x;
    std::memcpy(&x, p, sizeof x);
    return x;
  };
  switch (t) {
    case GgufType::kU8: v.u64 = load(uint8_t{}); v.i64 = static_cast<int64_t>(v.u64); break;
    case GgufType::kBool: v.u64 = load(uint8_t{}) != 0; v.i64 = static_cast<int64_t>(v.u64); break;
    case GgufType::kI8: v.i64 = load(int8_t{}); v.u64 = static_cast<uint64_t>(v.i64); break;
    case GgufType::kU16: v.u64 = load(uint16_t{}); v.i64 = static_cast<int64_t>(v.u64); break;
    case GgufType::kI16: v.i64 = load(int16_t{}); v.u64 = static_cast<uint64_t>(v.i64); break;
    case GgufType::kU32: v.u64 = load(uint32_t{}); v.i64 = static_cast<int64_t>(v.u64); break;
    case GgufType::kI32: v.i64 = load(int32_t{}); v.u64 = static_cast<uint64_t>(v.i64); break;
    case GgufType::kU64: v.u64 = load(uint64_t{}); v.i64 = static_cast<int64_t>(v.u64); break;
    case GgufType::kI64: v.i64 = load(int64_t{}); v.u64 = static_cast<uint64_t>(v.i64); break;
    case GgufType::kF32: v.f64 = load(float{}); break;
    case GgufType::kF64: v.f64 = load(double{}); break;
    default: break;
  }
}

absl::StatusOr<GgufValue> ReadValue(Reader& r, GgufType type, const std::string& file,
                                    std::string_view key, int depth) {
  GgufValue v;
  v.type = type;
  if (type == GgufType::kString) {
    FERRY_ASSIGN_OR_RETURN(v.str, r.ReadString(key));
    return v;
  }
  if (type == GgufType::kArray) {
    if (depth >= kMaxArrayNesting) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": metadata '", Sv(key), "': arrays nested too deeply"));
    }
    FERRY_ASSIGN_OR_RETURN(uint32_t et, r.Read<uint32_t>(key));
    FERRY_ASSIGN_OR_RETURN(v.count, r.Read<uint64_t>(key));
    v.elem_type = static_cast<GgufType>(et);
    if (v.elem_type == GgufType::kString) {
      // Each string takes at least its 8-byte length.
      if (v.count > r.remaining() / 8) {
        return absl::DataLossError(absl::StrCat(file, ": metadata '", Sv(key), "': array of ",
                                                v.count, " strings overruns the file"));
      }
      v.strings.reserve(v.count);
      for (uint64_t i = 0; i < v.count; ++i) {
        FERRY_ASSIGN_OR_RETURN(auto s, r.ReadString(key));
        v.strings.push_back(s);
      }
      return v;
    }
    if (v.elem_type == GgufType::kArray) {
      // Nested arrays are legal but unused by Llama models: skip them.
      for (uint64_t i = 0; i < v.count; ++i) {
        FERRY_ASSIGN_OR_RETURN(auto ignored, ReadValue(r, GgufType::kArray, file, key, depth + 1));
        (void)ignored;
      }
      return v;
    }
    uint64_t size = ScalarSize(v.elem_type);
    if (size == 0) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": metadata '", Sv(key),
                                                     "': unknown array element type ", et));
    }
    if (v.count > r.remaining() / size) {
      return absl::DataLossError(absl::StrCat(file, ": metadata '", Sv(key), "': array of ",
                                              v.count, " elements overruns the file"));
    }
    v.raw = r.Take(v.count * size);
    return v;
  }
  uint64_t size = ScalarSize(type);
  if (size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": metadata '", Sv(key),
                                                   "': unknown value type ",
                                                   static_cast<uint32_t>(type)));
  }
  FERRY_RETURN_IF_ERROR(r.Need(size, key));
  DecodeScalar(type, r.Take(size), v);
  return v;
}

absl::StatusOr<DType> GgmlToDType(uint32_t t, const std::string& file, const std::string& tensor) {
  switch (static_cast<GgmlType>(t)) {
    case GgmlType::kF32: return DType::kF32;
    case GgmlType::kF16: return DType::kF16;
    case GgmlType::kQ8_0: return DType::kQ8_0;
    case GgmlType::kQ4_K:
      return DType::kQ4_K;
    case GgmlType::kQ6_K:
      return DType::kQ6_K;
    case GgmlType::kQ4_0:
      return DType::kQ4_0;
    case GgmlType::kQ5_0:
      return DType::kQ5_0;
    case GgmlType::kQ5_K:
      return DType::kQ5_K;
    case GgmlType::kBF16: return DType::kBF16;
  }
  return absl::UnimplementedError(absl::StrCat(
      file, ": tensor '", tensor, "' has ggml type ", t,
      ", which Ferry does not load (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K, Q5_K, Q6_K)"));
}

}  // namespace

uint64_t GgufTensorInfo::NumElements() const {
  uint64_t n = 1;
  for (uint64_t d : ne) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  FERRY_ASSIGN_OR_RETURN(auto mapped, MappedFile::Open(path));
  FERRY_ASSIGN_OR_RETURN(auto file, Parse(mapped->bytes(), path));
  file->file_ = std::move(mapped);
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Parse(std::span<const uint8_t> bytes,
                                                         std::string name) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->name_ = std::move(name);
  const std::string& file = f->name_;
  Reader r(bytes, file);

  FERRY_ASSIGN_OR_RETURN(uint32_t magic, r.Read<uint32_t>("magic"));
  if (magic != kGgufMagic) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": not a GGUF file (bad magic)"));
  }
  FERRY_ASSIGN_OR_RETURN(f->version_, r.Read<uint32_t>("version"));
  if (f->version_ != 2 && f->version_ != 3) {
    return absl::UnimplementedError(
        absl::StrCat(file, ": GGUF version ", f->version_, " is not supported (2 and 3 are)"));
  }
  FERRY_ASSIGN_OR_RETURN(uint64_t n_tensors, r.Read<uint64_t>("tensor count"));
  FERRY_ASSIGN_OR_RETURN(uint64_t n_kv, r.Read<uint64_t>("metadata count"));
  // Each metadata entry and each tensor info takes well over 8 bytes.
  if (n_kv > r.remaining() / 8 || n_tensors > r.remaining() / 8) {
    return absl::DataLossError(absl::StrCat(file, ": header counts (", n_tensors, " tensors, ",
                                            n_kv, " metadata entries) overrun the file"));
  }

  for (uint64_t i = 0; i < n_kv; ++i) {
    FERRY_ASSIGN_OR_RETURN(std::string_view key, r.ReadString("metadata key"));
    FERRY_ASSIGN_OR_RETURN(uint32_t type, r.Read<uint32_t>(key));
    FERRY_ASSIGN_OR_RETURN(GgufValue v, ReadValue(r, static_cast<GgufType>(type), file, key, 0));
    f->metadata_.insert_or_assign(std::string(key), std::move(v));
  }

  if (const GgufValue* a = f->Find("general.alignment")) {
    if (!IsInteger(a->type) || a->u64 == 0 || (a->u64 & (a->u64 - 1)) != 0 ||
        a->u64 > 1u << 20) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": general.alignment must be a power of two"));
    }
    f->alignment_ = a->u64;
  }

  f->tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    FERRY_ASSIGN_OR_RETURN(std::string_view tname, r.ReadString("tensor name"));
    t.name = std::string(tname);
    FERRY_ASSIGN_OR_RETURN(uint32_t n_dims, r.Read<uint32_t>(t.name));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor '", t.name, "' has ", n_dims, " dimensions (1-4 allowed)"));
    }
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      FERRY_ASSIGN_OR_RETURN(uint64_t dim, r.Read<uint64_t>(t.name));
      if (dim == 0 || dim > (uint64_t{1} << 40) || elements > (uint64_t{1} << 48) / dim) {
        return absl::InvalidArgumentError(
            absl::StrCat(file, ": tensor '", t.name, "' has an invalid shape"));
      }
      elements *= dim;
      t.ne.push_back(dim);
    }
    FERRY_ASSIGN_OR_RETURN(uint32_t ggml_type, r.Read<uint32_t>(t.name));
    FERRY_ASSIGN_OR_RETURN(t.dtype, GgmlToDType(ggml_type, file, t.name));
    FERRY_ASSIGN_OR_RETURN(t.offset, r.Read<uint64_t>(t.name));
    if (const int block = BlockingOf(t.dtype).values; t.ne[0] % block != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor '", t.name, "' is ", Sv(DTypeName(t.dtype)),
                       " but its rows are not a multiple of ", block));
    }
    auto bytes_needed = DTypeBytes(t.dtype, elements);
    if (!bytes_needed) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor '", t.name, "' has an invalid size"));
    }
    t.num_bytes = *bytes_needed;
    if (f->tensor_index_.count(t.name) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(file, ": tensor '", t.name, "' appears twice"));
    }
    f->tensor_index_.emplace(t.name, f->tensors_.size());
    f->tensors_.push_back(std::move(t));
  }

  uint64_t data_start = (r.pos() + f->alignment_ - 1) / f->alignment_ * f->alignment_;
  uint64_t file_size = bytes.size();
  for (GgufTensorInfo& t : f->tensors_) {
    if (t.offset % f->alignment_ != 0) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", t.name,
                                                     "' data offset is not aligned"));
    }
    if (data_start > file_size || t.offset > file_size - data_start ||
        t.num_bytes > file_size - data_start - t.offset) {
      return absl::DataLossError(absl::StrCat(file, ": tensor '", t.name,
                                              "' lies outside the file (offset ", t.offset,
                                              ", ", t.num_bytes, " bytes; file is ", file_size,
                                              " bytes)"));
    }
    t.data = bytes.data() + data_start + t.offset;
  }
  return f;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
absl::Status NotFound(const std::string& file, std::string_view key) {
  return absl::NotFoundError(absl::StrCat(file, ": metadata key '", Sv(key), "' is missing"));
}
absl::Status WrongType(const std::string& file, std::string_view key, std::string_view want) {
  return absl::InvalidArgumentError(
      absl::StrCat(file, ": metadata key '", Sv(key), "' is not ", Sv(want)));
}
}  // namespace

absl::StatusOr<std::string_view> GgufFile::GetString(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return NotFound(name_, key);
  if (v->type != GgufType::kString) return WrongType(name_, key, "a string");
  return v->str;
}

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return NotFound(name_, key);
  if (!IsInteger(v->type)) return WrongType(name_, key, "an integer");
  if (v->type == GgufType::kU64 && v->u64 > static_cast<uint64_t>(INT64_MAX)) {
    return WrongType(name_, key, "an integer in range");
  }
  return v->i64;
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return NotFound(name_, key);
  if (v->type == GgufType::kF32 || v->type == GgufType::kF64) return v->f64;
  if (IsInteger(v->type) && v->type != GgufType::kBool) {
    return IsSigned(v->type) ? static_cast<double>(v->i64) : static_cast<double>(v->u64);
  }
  return WrongType(name_, key, "a number");
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return NotFound(name_, key);
  if (v->type != GgufType::kBool) return WrongType(name_, key, "a bool");
  return v->u64 != 0;
}

absl::StatusOr<std::vector<std::string_view>> GgufFile::GetStringArray(
    std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return NotFound(name_, key);
  if (v->type != GgufType::kArray || v->elem_type != GgufType::kString) {
    return WrongType(name_, key, "an array of strings");
  }
  return v->strings;
}

absl::StatusOr<std::vector<float>> GgufFile::GetFloatArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return NotFound(name_, key);
  if (v->type != GgufType::kArray ||
      (v->elem_type != GgufType::kF32 && v->elem_type != GgufType::kF64)) {
    return WrongType(name_, key, "an array of floats");
  }
  std::vector<float> out(v->count);
  uint64_t size = ScalarSize(v->elem_type);
  for (uint64_t i = 0; i < v->count; ++i) {
    GgufValue e;
    DecodeScalar(v->elem_type, v->raw + i * size, e);
    out[i] = static_cast<float>(e.f64);
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (!v) return NotFound(name_, key);
  if (v->type != GgufType::kArray || !IsInteger(v->elem_type)) {
    return WrongType(name_, key, "an array of integers");
  }
  std::vector<int64_t> out(v->count);
  uint64_t size = ScalarSize(v->elem_type);
  for (uint64_t i = 0; i < v->count; ++i) {
    GgufValue e;
    DecodeScalar(v->elem_type, v->raw + i * size, e);
    out[i] = e.i64;
  }
  return out;
}

}  // namespace ferry
