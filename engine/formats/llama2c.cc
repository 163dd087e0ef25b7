#include "engine/formats/llama2c.h"

#include <algorithm>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace ferry {
namespace {

constexpr uint64_t kLegacyHeaderBytes = 7 * sizeof(int32_t);
constexpr uint64_t kV1HeaderBytes = 256;

int32_t ReadI32(std::span<const uint8_t> bytes, size_t offset) {
  int32_t v;
  std::memcpy(&v, bytes.data() + offset, sizeof(v));
  return v;
}

// The seven numbers every version carries, in this order.
struct RawHeader {
  int32_t dim, hidden_dim, num_layers, num_heads, num_kv_heads, vocab_size, seq_len;
};

RawHeader ReadRawHeader(std::span<const uint8_t> bytes, size_t offset) {
  RawHeader h;
  int32_t* fields[] = {&h.dim,          &h.hidden_dim, &h.num_layers, &h.num_heads,
                       &h.num_kv_heads, &h.vocab_size, &h.seq_len};
  for (int i = 0; i < 7; ++i) *fields[i] = ReadI32(bytes, offset + 4 * i);
  return h;
}

// Checks the numbers; `vocab_size` is taken as its absolute value (a legacy
// header's sign says whether the classifier is shared).
absl::StatusOr<Llama2cConfig> CheckHeader(const RawHeader& h, const std::string& name) {
  const auto bad = [&](std::string_view field, int64_t value, std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": llama2.c header field ", Sv(field), " = ", value, " ", Sv(why)));
  };
  const int64_t vocab = h.vocab_size < 0 ? -static_cast<int64_t>(h.vocab_size) : h.vocab_size;
  struct Range {
    const char* field;
    int64_t value;
    int64_t max;
  } ranges[] = {{"dim", h.dim, 1 << 16},
                {"hidden_dim", h.hidden_dim, 1 << 18},
                {"n_layers", h.num_layers, 1024},
                {"n_heads", h.num_heads, 1024},
                {"n_kv_heads", h.num_kv_heads, 1024},
                {"vocab_size", vocab, 1 << 22},
                {"seq_len", h.seq_len, 1 << 24}};
  for (const Range& r : ranges) {
    if (r.value < 1 || r.value > r.max) {
      return bad(r.field, r.value, absl::StrCat("is outside [1, ", r.max, "]"));
    }
  }
  if (h.dim % h.num_heads != 0) return bad("dim", h.dim, "is not a multiple of n_heads");
  if ((h.dim / h.num_heads) % 2 != 0) return bad("dim", h.dim, "gives an odd head size");
  if (h.num_kv_heads > h.num_heads || h.num_heads % h.num_kv_heads != 0) {
    return bad("n_kv_heads", h.num_kv_heads, "does not divide n_heads");
  }
  Llama2cConfig c;
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.num_layers = h.num_layers;
  c.num_heads = h.num_heads;
  c.num_kv_heads = h.num_kv_heads;
  c.vocab_size = static_cast<int>(vocab);
  c.seq_len = h.seq_len;
  c.shared_classifier = h.vocab_size > 0;
  return c;
}

// The tensors of a checkpoint in file order, with no data yet. The legacy
// format keeps each layer's weights of one kind together, as version 1 does,
// but in another order, with the RoPE tables (unused: we compute them) after
// the final norm.
struct Planned {
  std::string name;
  std::vector<uint64_t> shape;  // empty: skipped bytes of `skip_floats`
  uint64_t skip_floats = 0;
};

std::vector<Planned> Plan(const Llama2cConfig& c) {
  const uint64_t dim = c.dim, hidden = c.hidden_dim, kv = c.kv_dim(), vocab = c.vocab_size;
  std::vector<Planned> out;
  const auto per_layer = [&](const std::string& part, std::vector<uint64_t> shape) {
    for (int l = 0; l < c.num_layers; ++l)
      out.push_back({absl::StrCat("layers.", l, ".", part), shape});
  };
  const auto attn_norm = [&] { per_layer("attention_norm.weight", {dim}); };
  const auto ffn_norm = [&] { per_layer("ffn_norm.weight", {dim}); };
  const auto attention = [&] {
    per_layer("attention.wq.weight", {dim, dim});
    per_layer("attention.wk.weight", {kv, dim});
    per_layer("attention.wv.weight", {kv, dim});
    per_layer("attention.wo.weight", {dim, dim});
  };
  const auto ffn = [&] {
    per_layer("feed_forward.w1.weight", {hidden, dim});
    per_layer("feed_forward.w2.weight", {dim, hidden});
    per_layer("feed_forward.w3.weight", {hidden, dim});
  };
  if (c.version == 0) {
    out.push_back({"tok_embeddings.weight", {vocab, dim}});
    attn_norm();
    attention();
    ffn_norm();
    ffn();
    out.push_back({"norm.weight", {dim}});
    const uint64_t rope_table = static_cast<uint64_t>(c.seq_len) * (c.head_dim() / 2);
    out.push_back({"", {}, 2 * rope_table});
  } else {
    attn_norm();
    ffn_norm();
    out.push_back({"norm.weight", {dim}});
    out.push_back({"tok_embeddings.weight", {vocab, dim}});
    attention();
    ffn();
  }
  if (!c.shared_classifier) out.push_back({"output.weight", {vocab, dim}});
  return out;
}

uint64_t NumFloats(const Planned& p) {
  if (p.shape.empty()) return p.skip_floats;
  uint64_t n = 1;
  for (uint64_t d : p.shape) n *= d;
  return n;
}

uint64_t HeaderBytes(const Llama2cConfig& c) {
  return c.version == 0 ? kLegacyHeaderBytes : kV1HeaderBytes;
}

uint64_t ExpectedBytes(const Llama2cConfig& c) {
  uint64_t floats = 0;
  for (const Planned& p : Plan(c)) floats += NumFloats(p);
  return HeaderBytes(c) + floats * sizeof(float);
}

// The header of `bytes`, whichever version; errors as Parse.
absl::StatusOr<Llama2cConfig> ReadHeader(std::span<const uint8_t> bytes, const std::string& name) {
  if (bytes.size() >= 8 && static_cast<uint32_t>(ReadI32(bytes, 0)) == Llama2cCheckpoint::kMagic) {
    const int32_t version = ReadI32(bytes, 4);
    if (version != 1) {
      return absl::UnimplementedError(
          absl::StrCat(name, ": llama2.c checkpoint version ", version,
                       " is not supported (versions 0 and 1, f32 weights, are)"));
    }
    if (bytes.size() < kV1HeaderBytes) {
      return absl::DataLossError(absl::StrCat(name, ": truncated llama2.c header (", bytes.size(),
                                              " bytes of ", kV1HeaderBytes, ")"));
    }
    const RawHeader raw = ReadRawHeader(bytes, 8);
    if (raw.vocab_size < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": llama2.c header field vocab_size = ", raw.vocab_size, " is negative"));
    }
    FERRY_ASSIGN_OR_RETURN(Llama2cConfig c, CheckHeader(raw, name));
    const uint8_t shared = bytes[8 + 7 * 4];
    if (shared > 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": llama2.c header field shared_classifier = ", shared, " is not 0 or 1"));
    }
    c.version = 1;
    c.shared_classifier = shared == 1;
    return c;
  }
  if (bytes.size() < kLegacyHeaderBytes) {
    return absl::DataLossError(absl::StrCat(name, ": truncated llama2.c header (", bytes.size(),
                                            " bytes of ", kLegacyHeaderBytes, ")"));
  }
  return CheckHeader(ReadRawHeader(bytes, 0), name);
}

}  // namespace

bool Llama2cCheckpoint::Sniff(std::span<const uint8_t> head, uint64_t file_size) {
  if (head.size() >= 4 && static_cast<uint32_t>(ReadI32(head, 0)) == kMagic) return true;
  if (head.size() < kLegacyHeaderBytes) return false;
  auto config = CheckHeader(ReadRawHeader(head, 0), "");
  return config.ok() && ExpectedBytes(*config) == file_size;
}

bool Llama2cCheckpoint::SniffFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return false;
  const auto size = static_cast<uint64_t>(in.tellg());
  uint8_t head[kLegacyHeaderBytes] = {};
  in.seekg(0);
  in.read(reinterpret_cast<char*>(head), sizeof(head));
  const auto got = static_cast<size_t>(in.gcount());
  return Sniff({head, got}, size);
}

absl::StatusOr<std::unique_ptr<Llama2cCheckpoint>> Llama2cCheckpoint::Open(
    const std::string& path) {
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<Llama2cCheckpoint> checkpoint, Parse(file->bytes(), path));
  checkpoint->file_ = std::move(file);
  return checkpoint;
}

absl::StatusOr<std::unique_ptr<Llama2cCheckpoint>> Llama2cCheckpoint::Parse(
    std::span<const uint8_t> bytes, std::string name) {
  FERRY_ASSIGN_OR_RETURN(Llama2cConfig config, ReadHeader(bytes, name));
  const uint64_t expected = ExpectedBytes(config);
  if (bytes.size() != expected) {
    return absl::DataLossError(absl::StrCat(
        name, ": a llama2.c checkpoint with this header holds ", expected, " bytes, the file ",
        bytes.size(), bytes.size() < expected ? " (truncated)" : " (trailing bytes)"));
  }
  std::unique_ptr<Llama2cCheckpoint> out(new Llama2cCheckpoint());
  out->name_ = std::move(name);
  out->config_ = config;
  uint64_t offset = HeaderBytes(config);
  for (Planned& p : Plan(config)) {
    const uint64_t num_bytes = NumFloats(p) * sizeof(float);
    if (!p.shape.empty()) {
      out->index_.emplace(p.name, out->tensors_.size());
      out->tensors_.push_back(
          {std::move(p.name), std::move(p.shape), bytes.data() + offset, num_bytes});
    }
    offset += num_bytes;
  }
  return out;
}

const Llama2cTensor* Llama2cCheckpoint::Find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace ferry
