// Regenerates the seed corpus under tests/fuzz/corpus/: small valid files
// from the writers plus truncated and corrupted variants.
//   make_corpus tests/fuzz/corpus
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/formats/gguf_writer.h"
#include "engine/formats/safetensors_writer.h"

namespace {

using namespace ferry;
using Bytes = std::vector<uint8_t>;
namespace fs = std::filesystem;

Bytes Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void Write(const fs::path& p, const Bytes& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void Check(const absl::Status& s) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    std::exit(1);
  }
}

std::vector<float> Values(size_t n) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(static_cast<float>(i));
  return v;
}

// Writes truncated copies of `b` and copies with single bytes changed.
void Variants(const fs::path& dir, const std::string& stem, const Bytes& b) {
  for (size_t cut : {size_t{0}, size_t{4}, size_t{9}, b.size() / 3, b.size() / 2, b.size() - 1}) {
    Write(dir / (stem + "_cut" + std::to_string(cut)), Bytes(b.begin(), b.begin() + cut));
  }
  for (size_t at : {size_t{5}, size_t{8}, size_t{16}, size_t{24}, b.size() / 4, b.size() / 3}) {
    Bytes c = b;
    c[at] ^= 0xff;
    Write(dir / (stem + "_flip" + std::to_string(at)), c);
  }
}

void MakeGguf(const fs::path& dir) {
  const fs::path tmp = dir / "tmp.gguf";
  {
    GgufWriter w(tmp.string());  // metadata only
    w.SetString("general.architecture", "llama");
    w.SetU8("a.u8", 1);
    w.SetI8("a.i8", -1);
    w.SetU16("a.u16", 2);
    w.SetI16("a.i16", -2);
    w.SetI32("a.i32", -3);
    w.SetU64("a.u64", 4);
    w.SetI64("a.i64", -4);
    w.SetF32("a.f32", 0.5f);
    w.SetF64("a.f64", 0.25);
    w.SetBool("a.bool", true);
    std::vector<std::string> strs = {"<s>", "\xc4\xa0the", ""};
    w.SetStringArray("a.strs", strs);
    std::vector<int32_t> ints = {1, 2, 3};
    w.SetI32Array("a.ints", ints);
    std::vector<float> floats = {0.5f, 1.5f};
    w.SetF32Array("a.floats", floats);
    Check(w.Finish());
  }
  Write(dir / "metadata_only.gguf", Read(tmp));
  {
    GgufWriter w(tmp.string());
    w.SetString("general.architecture", "llama");
    w.SetU32("llama.embedding_length", 32);
    std::vector<std::string> tokens = {"a", "b", "c", "d"};
    w.SetStringArray("tokenizer.ggml.tokens", tokens);
    Check(w.AddTensor("f32", DType::kF32, {2, 3}));
    Check(w.AddTensor("f16", DType::kF16, {5}));
    Check(w.AddTensor("bf16", DType::kBF16, {2, 2, 2}));
    Check(w.AddTensor("q8", DType::kQ8_0, {2, 32}));
    Check(w.Begin());
    for (auto [name, dtype, n] : {std::tuple{"f32", DType::kF32, 6}, std::tuple{"f16", DType::kF16, 5},
                                  std::tuple{"bf16", DType::kBF16, 8}, std::tuple{"q8", DType::kQ8_0, 64}}) {
      auto bytes = EncodeFromF32(dtype, Values(n));
      Check(bytes.status());
      Check(w.WriteTensor(name, *bytes));
    }
    Check(w.Finish());
  }
  Bytes tensors = Read(tmp);
  Write(dir / "tensors.gguf", tensors);
  Variants(dir, "tensors.gguf", tensors);
  Bytes v2 = tensors;
  v2[4] = 2;  // version 2 reads the same way
  Write(dir / "tensors_v2.gguf", v2);
  fs::remove(tmp);
}

void MakeSafetensors(const fs::path& dir) {
  const fs::path tmp = dir / "tmp.safetensors";
  std::vector<uint8_t> f32 = *EncodeFromF32(DType::kF32, Values(6));
  std::vector<uint8_t> bf16 = *EncodeFromF32(DType::kBF16, Values(4));
  std::vector<uint8_t> f16 = *EncodeFromF32(DType::kF16, Values(1));
  std::vector<uint8_t> i64(16, 1);
  std::vector<SafetensorsTensorData> t = {
      {{"model.embed_tokens.weight", DType::kF32, {2, 3}}, f32},
      {{"model.norm.weight", DType::kBF16, {4}}, bf16},
      {{"scalar", DType::kF16, {}}, f16},
      {{"empty", DType::kF32, {0, 3}}, {}},
      {{"ids", DType::kI64, {2}}, i64},
  };
  Check(WriteSafetensors(tmp.string(), t, {{"format", "pt"}}));
  Bytes valid = Read(tmp);
  Write(dir / "valid.safetensors", valid);
  Variants(dir, "valid.safetensors", valid);
  auto raw = [](const std::string& header, size_t data) {
    Bytes b(8);
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(header.size() >> (8 * i));
    b.insert(b.end(), header.begin(), header.end());
    b.resize(b.size() + data, 0x3f);
    return b;
  };
  Write(dir / "empty_header.safetensors", raw("{}", 0));
  Write(dir / "overlap.safetensors",
        raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12));
  Write(dir / "outside.safetensors",
        raw(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", 16));
  Write(dir / "mismatch.safetensors",
        raw(R"({"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}})", 16));
  Write(dir / "nested.safetensors", raw(std::string(200, '[') + std::string(200, ']'), 0));
  fs::remove(tmp);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  fs::path root(argv[1]);
  fs::create_directories(root / "gguf");
  fs::create_directories(root / "safetensors");
  MakeGguf(root / "gguf");
  MakeSafetensors(root / "safetensors");
  return 0;
}
