// Ferry's logits against an independent NumPy forward
// (tests/reference/llama_ref.py) on models written by `ferry make-model`.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "common/thread_pool.h"
#include "engine/cpu/kernels.h"
#include "engine/llama_forward.h"
#include "engine/model.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/process_util.h"

namespace ferry::testing {
namespace {

namespace fs = std::filesystem;

constexpr char kPython[] = "/usr/bin/python3";

bool HaveNumpy() {
  return RunCommand(std::string(kPython) + " -c 'import numpy' 2>/dev/null").exit_code == 0;
}

std::string TempModelDir(const std::string& name) {
  return std::string(::testing::TempDir()) + "/ferry-ref-" + std::to_string(::getpid()) + "-" + name;
}

// Runs the whole sequence as one prefill and returns [n, vocab] logits.
std::vector<float> FerryLogits(const Model& model, const std::vector<int32_t>& ids, int threads,
                               int block_size = 16) {
  ThreadPool pool(threads);
  LlamaForward forward(model, pool);
  const int n = static_cast<int>(ids.size());
  const int blocks = (n + block_size - 1) / block_size;
  auto kv = KvCache::Create(forward.KvShape(block_size, blocks + 3));
  EXPECT_TRUE(kv.ok());
  // Use blocks out of order to exercise the block table.
  std::vector<int32_t> table;
  for (int i = 0; i < blocks; ++i) table.push_back(blocks + 2 - i);
  std::vector<int32_t> positions(n), rows(n);
  for (int i = 0; i < n; ++i) positions[i] = rows[i] = i;
  int32_t qs[2] = {0, n};
  int32_t lens[1] = {n};
  int32_t indptr[2] = {0, blocks};
  ForwardBatch batch{ids, positions, qs, lens, indptr, table, rows};
  std::vector<float> logits(size_t(n) * model.config().vocab_size);
  absl::Status s = forward.Forward(batch, **kv, logits.data());
  EXPECT_TRUE(s.ok()) << s;
  return logits;
}

// The same ids fed one token at a time (decode path), last logits of each step.
std::vector<float> FerryLogitsIncremental(const Model& model, const std::vector<int32_t>& ids) {
  ThreadPool pool(2);
  LlamaForward forward(model, pool);
  const int n = static_cast<int>(ids.size());
  const int bs = 4;
  const int blocks = (n + bs - 1) / bs;
  auto kv = KvCache::Create(forward.KvShape(bs, blocks));
  std::vector<int32_t> table(blocks);
  for (int i = 0; i < blocks; ++i) table[i] = i;
  const int vocab = model.config().vocab_size;
  std::vector<float> logits(size_t(n) * vocab);
  for (int i = 0; i < n; ++i) {
    int32_t tok[1] = {ids[i]}, pos[1] = {i}, qs[2] = {0, 1}, lens[1] = {i + 1},
            indptr[2] = {0, (i + bs) / bs}, row[1] = {0};
    ForwardBatch b{tok, pos, qs, lens, indptr, table, row};
    EXPECT_TRUE(forward.Forward(b, **kv, logits.data() + size_t(i) * vocab).ok());
  }
  return logits;
}

std::vector<float> ReferenceLogits(const std::string& dir, const std::vector<int32_t>& ids) {
  std::string out = dir + "/ref_logits.bin";
  std::string cmd = std::string(kPython) + " " + FERRY_SOURCE_DIR + "/tests/reference/llama_ref.py --model " +
                    dir + " --ids " + absl::StrJoin(ids, ",") + " --out " + out;
  CommandResult r = RunCommand(cmd, true);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  std::ifstream in(out, std::ios::binary);
  std::vector<float> v;
  float f;
  while (in.read(reinterpret_cast<char*>(&f), sizeof f)) v.push_back(f);
  return v;
}

double RelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double max_err = 0, max_abs = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    max_err = std::max(max_err, std::abs(double(got[i]) - want[i]));
    max_abs = std::max(max_abs, std::abs(double(want[i])));
  }
  return max_abs == 0 ? max_err : max_err / max_abs;
}

void MakeModel(const std::string& dir, const std::string& extra,
               const std::string& preset = "tiny") {
  CommandResult r = RunCommand(
      FerryBinary() + " make-model --out " + dir + " --preset " + preset + " --seed 3 " + extra,
      true);
  ASSERT_EQ(r.exit_code, 0) << r.out;
}

const std::vector<int32_t> kIds = {1, 17, 300, 45, 2, 99, 250, 7, 8, 9, 10, 11, 400, 13, 14, 15, 16, 18, 19, 20, 21};

class ReferenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveNumpy()) GTEST_SKIP() << "python3-numpy is not installed at /usr/bin/python3";
  }
};

TEST_F(ReferenceTest, TinyLlamaF32MatchesNumpy) {
  std::string dir = TempModelDir("llama");
  MakeModel(dir, "--format hf --dtype f32");
  auto model = Model::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  std::vector<float> want = ReferenceLogits(dir, kIds);
  for (int threads : {1, 2}) {
    EXPECT_LE(RelativeError(FerryLogits(**model, kIds, threads), want), 1e-4) << threads << " threads";
  }
  EXPECT_LE(RelativeError(FerryLogitsIncremental(**model, kIds), want), 1e-4);
  fs::remove_all(dir);
}

TEST_F(ReferenceTest, Qwen2BiasGqaMatchesNumpy) {
  std::string dir = TempModelDir("qwen2");
  MakeModel(dir, "--format hf --dtype f32 --qwen2-bias");
  auto model = Model::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_TRUE(model.value()->config().attention_bias);
  EXPECT_LT(model.value()->config().num_kv_heads, model.value()->config().num_heads);
  EXPECT_LE(RelativeError(FerryLogits(**model, kIds, 2), ReferenceLogits(dir, kIds)), 1e-4);
  fs::remove_all(dir);
}

TEST_F(ReferenceTest, TiedEmbeddingsAndHalfPrecisionMatchNumpy) {
  for (const char* dtype : {"f16", "bf16"}) {
    std::string dir = TempModelDir(std::string("tied-") + dtype);
    MakeModel(dir, std::string("--format hf --tie-embeddings --dtype ") + dtype);
    auto model = Model::Load(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_TRUE(model.value()->config().tie_word_embeddings);
    EXPECT_LE(RelativeError(FerryLogits(**model, kIds, 2), ReferenceLogits(dir, kIds)), 1e-4) << dtype;
    fs::remove_all(dir);
  }
}

// RoPE scaling (llama3 and linear) as config.json declares it, against the
// reference's own implementation of the Hugging Face formulas.
TEST_F(ReferenceTest, RopeScalingMatchesNumpy) {
  for (const char* scaling :
       {R"({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64})",
        R"({"type": "linear", "factor": 2.0})"}) {
    std::string dir = TempModelDir("rope");
    MakeModel(dir, "--format hf --dtype f32");
    std::ifstream in(dir + "/config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    in.close();
    config["rope_scaling"] = nlohmann::json::parse(scaling);
    config["rope_theta"] = 500000.0;
    std::ofstream(dir + "/config.json") << config.dump(2);
    auto model = Model::Load(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_NE(model.value()->config().rope_scaling.type, RopeScaling::Type::kNone);
    EXPECT_LE(RelativeError(FerryLogits(**model, kIds, 2), ReferenceLogits(dir, kIds)), 1e-4) << scaling;
    fs::remove_all(dir);
  }
}

// The GGUF writer permutes Q/K rows for interleaved RoPE: the same seed must
// give the same logits from both formats.
TEST_F(ReferenceTest, GgufAndHfOfTheSameSeedAgree) {
  std::string hf = TempModelDir("hf"), gguf = TempModelDir("gguf");
  MakeModel(hf, "--format hf --dtype f32");
  MakeModel(gguf, "--format gguf --dtype f32");
  // --out names a directory that holds one .gguf file.
  std::string gguf_file = gguf;
  if (fs::is_directory(gguf)) {
    for (const auto& e : fs::directory_iterator(gguf)) {
      if (e.path().extension() == ".gguf") gguf_file = e.path().string();
    }
  }
  auto a = Model::Load(hf);
  auto b = Model::Load(gguf_file);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_LE(RelativeError(FerryLogits(**b, kIds, 2), FerryLogits(**a, kIds, 2)), 1e-4);
  // And the tokenizers agree.
  std::string text = "The quick brown fox jumps over the lazy dog, 12345 times!";
  EXPECT_EQ(a.value()->tokenizer().Encode(text, true, true), b.value()->tokenizer().Encode(text, true, true));
  fs::remove_all(hf);
  fs::remove_all(gguf);
}

// The mapping that holds `p`, as /proc/self/maps shows it: permissions and
// the file (empty for anonymous memory).
struct MappingOf {
  std::string perms;
  std::string file;
  bool found = false;
};
MappingOf FindMapping(const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream in(line);
    std::string range, perms, offset, dev, inode, file;
    in >> range >> perms >> offset >> dev >> inode;
    std::getline(in >> std::ws, file);
    const size_t dash = range.find('-');
    const uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
    const uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
    if (addr >= lo && addr < hi) return {perms, file, true};
  }
  return {};
}

uint64_t MatrixBytes(const cpu::WeightMatrix& m) {
  return DTypeBytes(m.dtype, static_cast<uint64_t>(m.rows) * m.cols).value_or(0);
}

std::vector<const cpu::WeightMatrix*> Matrices(const Model& m) {
  std::vector<const cpu::WeightMatrix*> out = {&m.weights().embedding, &m.weights().output};
  for (const LayerWeights& L : m.weights().layers) {
    for (const cpu::WeightMatrix* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) out.push_back(w);
  }
  return out;
}

// By default the matrices are copied out of the file into read-only
// anonymous memory (a CPU decode step streams them faster from there);
// LoadOptions::map_weights leaves them in the file's mapping. Same bytes,
// same logits, a tied output still shares the embedding.
TEST(ModelLoadTest, WeightsCopiedIntoMemoryOrLeftMappedGiveTheSameLogits) {
  for (const std::string& format :
       {std::string("--format gguf --dtype q8_0"), std::string("--format gguf --dtype q4_k"),
        std::string("--format hf --dtype f16 --tie-embeddings")}) {
    SCOPED_TRACE(format);
    const std::string dir = TempModelDir("placement");
    MakeModel(dir, format, absl::StrContains(format, "q4_k") ? "mini" : "tiny");
    std::string path = dir;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() == ".gguf") path = e.path().string();
    }
    auto copied = Model::Load(path, LoadOptions{.progress = false});
    auto mapped = Model::Load(path, LoadOptions{.progress = false, .map_weights = true});
    ASSERT_TRUE(copied.ok()) << copied.status();
    ASSERT_TRUE(mapped.ok()) << mapped.status();
    const std::vector<const cpu::WeightMatrix*> a = Matrices(**copied), b = Matrices(**mapped);
    ASSERT_EQ(a.size(), b.size());
    // Where this CPU has the integer Q8_0 kernels, the copied Q8_0 layer
    // matrices are in their layout: the mapped bytes, packed.
    bool any_packed = false;
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(MatrixBytes(*a[i]), MatrixBytes(*b[i]));
      EXPECT_EQ(b[i]->layout, cpu::WeightLayout::kRows);
      std::vector<uint8_t> want(static_cast<const uint8_t*>(b[i]->data),
                                static_cast<const uint8_t*>(b[i]->data) + MatrixBytes(*b[i]));
      if (a[i]->layout != cpu::WeightLayout::kRows) {
        any_packed = true;
        EXPECT_TRUE(cpu::Rows16Fast());
        EXPECT_NE(a[i]->data, (*copied)->weights().embedding.data);
        cpu::PackRows16(a[i]->layout, want.data(), b[i]->rows, b[i]->cols);
      }
      EXPECT_EQ(std::memcmp(a[i]->data, want.data(), want.size()), 0) << "matrix " << i;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(a[i]->data) % 64, 0u) << "matrix " << i;
      const MappingOf in_memory = FindMapping(a[i]->data);
      ASSERT_TRUE(in_memory.found);
      EXPECT_EQ(in_memory.file, "") << "matrix " << i << " is still in a file's mapping";
      EXPECT_EQ(in_memory.perms.substr(0, 3), "r--") << "matrix " << i;
      const MappingOf in_file = FindMapping(b[i]->data);
      ASSERT_TRUE(in_file.found);
      EXPECT_TRUE(fs::equivalent(fs::path(in_file.file).parent_path(), dir)) << in_file.file;
    }
    const bool tied = absl::StrContains(format, "tie");
    EXPECT_EQ((*copied)->weights().output.data == (*copied)->weights().embedding.data, tied);
    EXPECT_EQ((*copied)->weight_bytes(), (*mapped)->weight_bytes());
    EXPECT_EQ(any_packed, cpu::Rows16Fast() && !absl::StrContains(format, "f16"));
    EXPECT_EQ((*copied)->weights().embedding.layout, cpu::WeightLayout::kRows);
    if (any_packed) {
      // int8 activations against fp32 ones: within quantization error.
      EXPECT_LE(RelativeError(FerryLogits(**copied, kIds, 2), FerryLogits(**mapped, kIds, 2)),
                0.05);
      // integer_kernels = false keeps the rows and fp32 activations.
      auto plain = Model::Load(path, LoadOptions{.progress = false, .integer_kernels = false});
      ASSERT_TRUE(plain.ok()) << plain.status();
      for (const cpu::WeightMatrix* m : Matrices(**plain)) {
        EXPECT_EQ(m->layout, cpu::WeightLayout::kRows);
      }
      EXPECT_EQ(FerryLogits(**plain, kIds, 2), FerryLogits(**mapped, kIds, 2));
    } else {
      EXPECT_EQ(FerryLogits(**copied, kIds, 2), FerryLogits(**mapped, kIds, 2));
    }
    fs::remove_all(dir);
  }
}

// Block-quantized files of one model (the mini preset, whose widths all
// split into 256-value blocks) follow its F32 file within their quantization
// error, and each one's decode path (GEMV kernels on the packed blocks) gives
// its prefill path's logits (GEMM on blocks widened to fp32).
TEST(QuantizedModelTest, BlockQuantizedFilesFollowTheF32Model) {
  struct Variant {
    const char* dtype;
    DType matrices;
    DType output;
    double max_error;
  };
  const Variant variants[] = {
      {"f32", DType::kF32, DType::kF32, 0.0},     {"q8_0", DType::kQ8_0, DType::kQ8_0, 0.05},
      {"q6_k", DType::kQ6_K, DType::kQ6_K, 0.12}, {"q5_k", DType::kQ5_K, DType::kQ6_K, 0.2},
      {"q5_0", DType::kQ5_0, DType::kQ5_0, 0.2},  {"q4_k", DType::kQ4_K, DType::kQ6_K, 0.35},
      {"q4_0", DType::kQ4_0, DType::kQ4_0, 0.5}};
  std::vector<float> want;
  std::map<std::string, double> error;
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.dtype);
    const std::string dir = TempModelDir(std::string("bq-") + v.dtype);
    MakeModel(dir, std::string("--format gguf --dtype ") + v.dtype, "mini");
    auto model = Model::Load(dir + "/model.gguf", LoadOptions{.progress = false});
    ASSERT_TRUE(model.ok()) << model.status();
    const ModelWeights& w = (*model)->weights();
    EXPECT_EQ(w.layers[0].wq.dtype, v.matrices);
    EXPECT_EQ(w.layers[1].w_down.dtype, v.matrices);
    EXPECT_EQ(w.output.dtype, v.output);
    // Every quantized layer matrix takes the integer kernels where the CPU has them.
    const bool integer = cpu::Rows16Fast() && v.matrices != DType::kF32;
    EXPECT_EQ(w.layers[0].wq.layout != cpu::WeightLayout::kRows, integer);
    EXPECT_EQ(w.layers[1].w_down.layout != cpu::WeightLayout::kRows, integer);
    const std::vector<float> prefill = FerryLogits(**model, kIds, 2);
    const std::vector<float> decode = FerryLogitsIncremental(**model, kIds);
    EXPECT_LE(RelativeError(decode, prefill), 1e-4);
    if (want.empty()) {
      want = prefill;
    } else {
      const double e = RelativeError(prefill, want);
      error[v.dtype] = e;
      EXPECT_LE(e, v.max_error);
      EXPECT_GT(e, 0.0) << "quantized logits identical to f32: nothing was quantized";
    }
    fs::remove_all(dir);
  }
  // Fewer bits, larger error.
  EXPECT_LT(error["q8_0"], error["q6_k"]);
  EXPECT_LT(error["q6_k"], error["q5_k"]);
  EXPECT_LT(error["q5_k"], error["q4_k"]);
  EXPECT_LT(error["q5_0"], error["q4_0"]);
  for (const auto& [dtype, e] : error)
    std::printf("%s: relative logit error %.4f\n", dtype.c_str(), e);
}

}  // namespace
}  // namespace ferry::testing
