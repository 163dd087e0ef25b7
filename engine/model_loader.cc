// Model::Load for GGUF files, Hugging Face directories and llama2.c checkpoints.
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/progress.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/formats/gguf.h"
#include "engine/formats/llama2c.h"
#include "engine/formats/safetensors.h"
#include "engine/model.h"
#include "nlohmann/json.hpp"

namespace ferry {

namespace fs = std::filesystem;

// A tensor found in a model file, before it is checked and bound.
struct FoundTensor {
  std::string file;
  std::string name;
  DType dtype;
  std::vector<uint64_t> shape;  // row-major, outermost first
  const uint8_t* data;
  uint64_t num_bytes;
};

class ModelBuilder {
 public:
  explicit ModelBuilder(Model& model) : m_(model) {}

  absl::Status LoadGguf(const std::string& path, const LoadOptions& options);
  absl::Status LoadHf(const std::string& dir, const LoadOptions& options);
  absl::Status LoadLlama2c(const std::string& path, const LoadOptions& options);

 private:
  using Lookup = std::function<absl::StatusOr<FoundTensor>(const std::string&)>;

  absl::Status BindAll(const Lookup& lookup, const std::function<std::string(int, const char*)>& name,
                       const std::string& embed, const std::string& final_norm,
                       const std::string& output, const LoadOptions& options);
  absl::StatusOr<cpu::WeightMatrix> Matrix(const Lookup& lookup, const std::string& name,
                                           int64_t rows, int64_t cols);
  absl::StatusOr<const float*> Vector(const Lookup& lookup, const std::string& name, int64_t n);
  void PlaceWeights(const LoadOptions& options);
  bool CopyIntoMemory(ProgressBar& bar, bool integer_kernels);
  void Prefault(ProgressBar& bar);
  void FinishTokenizerIds();

  Model& m_;
  std::vector<std::pair<const uint8_t*, uint64_t>> regions_;
};

namespace {

absl::Status ShapeError(const FoundTensor& t, const std::vector<uint64_t>& want) {
  return absl::InvalidArgumentError(absl::StrCat(
      t.file, ": tensor '", t.name, "' has shape [", absl::StrJoin(t.shape, ", "),
      "], expected [", absl::StrJoin(want, ", "), "]"));
}

}  // namespace

absl::StatusOr<cpu::WeightMatrix> ModelBuilder::Matrix(const Lookup& lookup, const std::string& name,
                                                       int64_t rows, int64_t cols) {
  FERRY_ASSIGN_OR_RETURN(FoundTensor t, lookup(name));
  std::vector<uint64_t> want = {static_cast<uint64_t>(rows), static_cast<uint64_t>(cols)};
  if (t.shape != want) return ShapeError(t, want);
  if (!IsWeightDType(t.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat(t.file, ": tensor '", name, "' has dtype ", Sv(DTypeName(t.dtype)),
                     " (weights must be f32, f16, bf16, q8_0, q4_0, q5_0, q4_k, q5_k or q6_k)"));
  }
  regions_.emplace_back(t.data, t.num_bytes);
  m_.weight_bytes_ += t.num_bytes;
  return cpu::WeightMatrix{t.dtype, rows, cols, t.data};
}

absl::StatusOr<const float*> ModelBuilder::Vector(const Lookup& lookup, const std::string& name,
                                                  int64_t n) {
  FERRY_ASSIGN_OR_RETURN(FoundTensor t, lookup(name));
  std::vector<uint64_t> want = {static_cast<uint64_t>(n)};
  if (t.shape != want) return ShapeError(t, want);
  m_.weight_bytes_ += t.num_bytes;
  // Norms and biases are tiny: always hold them as aligned f32 copies.
  std::vector<float>& out = m_.owned_f32_.emplace_back(n);
  switch (t.dtype) {
    case DType::kF32:
      std::memcpy(out.data(), t.data, n * sizeof(float));
      break;
    case DType::kF16:
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, t.data + 2 * i, 2);
        out[i] = t.dtype == DType::kF16 ? Fp16ToFloat(h) : Bf16ToFloat(h);
      }
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor '", name, "' has dtype ",
                                                     Sv(DTypeName(t.dtype)),
                                                     " (norms and biases must be f32, f16 or bf16)"));
  }
  return out.data();
}

absl::Status ModelBuilder::BindAll(const Lookup& lookup,
                                   const std::function<std::string(int, const char*)>& name,
                                   const std::string& embed, const std::string& final_norm,
                                   const std::string& output, const LoadOptions& options) {
  const ModelConfig& c = m_.config_;
  ModelWeights& w = m_.weights_;
  const int64_t h = c.hidden_size;
  FERRY_ASSIGN_OR_RETURN(w.embedding, Matrix(lookup, embed, c.vocab_size, h));
  w.layers.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l) {
    LayerWeights& L = w.layers[l];
    FERRY_ASSIGN_OR_RETURN(L.attn_norm, Vector(lookup, name(l, "attn_norm"), h));
    FERRY_ASSIGN_OR_RETURN(L.wq, Matrix(lookup, name(l, "wq"), c.q_dim(), h));
    FERRY_ASSIGN_OR_RETURN(L.wk, Matrix(lookup, name(l, "wk"), c.kv_dim(), h));
    FERRY_ASSIGN_OR_RETURN(L.wv, Matrix(lookup, name(l, "wv"), c.kv_dim(), h));
    FERRY_ASSIGN_OR_RETURN(L.wo, Matrix(lookup, name(l, "wo"), h, c.q_dim()));
    if (c.attention_bias) {
      FERRY_ASSIGN_OR_RETURN(L.bq, Vector(lookup, name(l, "bq"), c.q_dim()));
      FERRY_ASSIGN_OR_RETURN(L.bk, Vector(lookup, name(l, "bk"), c.kv_dim()));
      FERRY_ASSIGN_OR_RETURN(L.bv, Vector(lookup, name(l, "bv"), c.kv_dim()));
    }
    FERRY_ASSIGN_OR_RETURN(L.ffn_norm, Vector(lookup, name(l, "ffn_norm"), h));
    FERRY_ASSIGN_OR_RETURN(L.w_gate, Matrix(lookup, name(l, "w_gate"), c.intermediate_size, h));
    FERRY_ASSIGN_OR_RETURN(L.w_up, Matrix(lookup, name(l, "w_up"), c.intermediate_size, h));
    FERRY_ASSIGN_OR_RETURN(L.w_down, Matrix(lookup, name(l, "w_down"), h, c.intermediate_size));
  }
  FERRY_ASSIGN_OR_RETURN(w.final_norm, Vector(lookup, final_norm, h));
  if (c.tie_word_embeddings) {
    w.output = w.embedding;
  } else {
    FERRY_ASSIGN_OR_RETURN(w.output, Matrix(lookup, output, c.vocab_size, h));
  }
  PlaceWeights(options);
  return absl::OkStatus();
}

namespace {

// Anonymous memory that holds a model's matrices: one mapping, asked for
// huge pages, read-only once filled.
class WeightArena {
 public:
  // Null when the memory cannot be had.
  static std::shared_ptr<WeightArena> Map(uint64_t bytes) {
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    ::madvise(p, bytes, MADV_HUGEPAGE);  // best effort: fewer TLB misses on the stream
    return std::shared_ptr<WeightArena>(new WeightArena(static_cast<uint8_t*>(p), bytes));
  }
  ~WeightArena() { ::munmap(data_, size_); }
  WeightArena(const WeightArena&) = delete;
  WeightArena& operator=(const WeightArena&) = delete;

  uint8_t* data() { return data_; }
  void Seal() { ::mprotect(data_, size_, PROT_READ); }

 private:
  WeightArena(uint8_t* data, uint64_t size) : data_(data), size_(size) {}
  uint8_t* data_;
  uint64_t size_;
};

}  // namespace

// Puts the matrices where decode streams them from: copied into anonymous
// memory (the default), or left in the file's mapping with every page read
// once, so that the first request does not pay for disk reads. Either way
// with a progress bar over the bytes.
void ModelBuilder::PlaceWeights(const LoadOptions& options) {
  uint64_t total = 0;
  for (auto& r : regions_) total += r.second;
  ProgressBar bar("loading " + m_.id_, static_cast<int64_t>(total),
                  options.progress && ProgressBar::StderrIsTerminal());
  if (!options.map_weights) {
    if (CopyIntoMemory(bar, options.integer_kernels)) return;
    Logger("engine")->warn("model {}: no anonymous memory for {:.1f} MB of weights; decoding from the file's mapping",
                           m_.id_, total / 1e6);
  }
  Prefault(bar);
}

// Decode streams every matrix once per step. Measured on the 1.1B medium
// preset (F16, one thread): 11.6 tok/s from anonymous memory against 3.7
// from the file's page-cache mapping (BENCHMARKS.md).
bool ModelBuilder::CopyIntoMemory(ProgressBar& bar, bool integer_kernels) {
  constexpr uint64_t kAlign = 64;
  std::map<const uint8_t*, uint64_t> offsets;  // a tensor bound twice is copied once
  uint64_t size = 0;
  for (const auto& [data, bytes] : regions_) {
    if (!offsets.emplace(data, size).second) continue;
    size += (bytes + kAlign - 1) / kAlign * kAlign;
  }
  if (size == 0) return true;
  std::shared_ptr<WeightArena> arena = WeightArena::Map(size);
  if (arena == nullptr) return false;
  constexpr uint64_t kStep = uint64_t{16} << 20;
  uint64_t done = 0;
  for (const auto& [data, bytes] : regions_) {
    uint8_t* dst = arena->data() + offsets.at(data);
    for (uint64_t off = 0; off < bytes; off += kStep) {
      const uint64_t n = std::min(kStep, bytes - off);
      std::memcpy(dst + off, data + off, n);
      done += n;
      bar.Update(static_cast<int64_t>(done));
    }
  }
  auto move = [&](cpu::WeightMatrix& w) {
    auto it = offsets.find(static_cast<const uint8_t*>(w.data));
    if (it != offsets.end()) w.data = arena->data() + it->second;
  };
  ModelWeights& w = m_.weights_;
  move(w.embedding);
  move(w.output);
  for (LayerWeights& L : w.layers) {
    for (cpu::WeightMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) move(*m);
  }
  // Q8_0, Q4_0, Q5_0 and k-quant matrices go into the layouts of the integer kernels where
  // this CPU has them (BENCHMARKS.md); the embedding keeps its rows for
  // lookups, and so does an output matrix tied to it.
  if (integer_kernels && cpu::Rows16Fast()) {
    std::set<const void*> packed;
    auto pack = [&](cpu::WeightMatrix& m) {
      const uint8_t* d = static_cast<const uint8_t*>(m.data);
      const bool in_arena = d >= arena->data() && d < arena->data() + size;
      const cpu::WeightLayout layout = cpu::Rows16LayoutOf(m);
      if (layout == cpu::WeightLayout::kRows) return;
      if (!in_arena || m.data == w.embedding.data) return;
      if (packed.insert(m.data).second)
        cpu::PackRows16(layout, const_cast<void*>(m.data), m.rows, m.cols);
      m.layout = layout;
    };
    pack(w.output);
    for (LayerWeights& L : w.layers) {
      for (cpu::WeightMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
        pack(*m);
    }
  }
  arena->Seal();
  m_.keep_alive_.push_back(std::move(arena));
  bar.Finish();
  return true;
}

void ModelBuilder::Prefault(ProgressBar& bar) {
  uint64_t done = 0;
  volatile uint8_t sink = 0;
  for (auto& [data, size] : regions_) {
    for (uint64_t off = 0; off < size; off += 4096) {
      sink = sink + data[off];
      if ((off & ((1u << 24) - 1)) == 0) bar.Update(static_cast<int64_t>(done + off));
    }
    done += size;
  }
  bar.Finish();
}

void ModelBuilder::FinishTokenizerIds() {
  std::vector<int32_t> ids;
  for (int id : m_.config_.eos_token_ids) ids.push_back(id);
  for (int32_t id : m_.tokenizer_->eos_ids()) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  ids.erase(std::remove_if(ids.begin(), ids.end(),
                           [&](int32_t id) { return id < 0 || id >= m_.config_.vocab_size; }),
            ids.end());
  m_.eos_ids_ = std::move(ids);
}

absl::Status ModelBuilder::LoadGguf(const std::string& path, const LoadOptions& options) {
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf_owned, GgufFile::Open(path));
  std::shared_ptr<GgufFile> gguf(std::move(gguf_owned));
  m_.keep_alive_.push_back(gguf);
  FERRY_ASSIGN_OR_RETURN(m_.config_, ModelConfigFromGguf(*gguf));
  if (const GgufTensorInfo* emb = gguf->FindTensor("token_embd.weight"); emb && emb->ne.size() == 2) {
    m_.config_.vocab_size = static_cast<int>(emb->ne[1]);
  }
  if (const GgufTensorInfo* f = gguf->FindTensor("rope_freqs.weight")) {
    if (f->dtype != DType::kF32 || f->NumElements() != static_cast<uint64_t>(m_.config_.rope_dim / 2)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor 'rope_freqs.weight' must be f32 of rope_dim/2 values"));
    }
    m_.config_.rope_freq_factors.resize(f->NumElements());
    std::memcpy(m_.config_.rope_freq_factors.data(), f->data, f->num_bytes);
  }
  FERRY_ASSIGN_OR_RETURN(m_.tokenizer_, Tokenizer::FromGguf(*gguf));
  if (m_.tokenizer_->vocab_size() > m_.config_.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the tokenizer has ",
                                                   m_.tokenizer_->vocab_size(),
                                                   " tokens but the model only ", m_.config_.vocab_size));
  }
  Lookup lookup = [&](const std::string& name) -> absl::StatusOr<FoundTensor> {
    const GgufTensorInfo* t = gguf->FindTensor(name);
    if (t == nullptr) {
      return absl::NotFoundError(absl::StrCat(path, ": tensor '", name, "' is missing"));
    }
    return FoundTensor{path, name, t->dtype, t->Shape(), t->data, t->num_bytes};
  };
  auto layer_name = [](int l, const char* part) {
    static const std::map<std::string, std::string> kNames = {
        {"attn_norm", "attn_norm.weight"}, {"wq", "attn_q.weight"},   {"wk", "attn_k.weight"},
        {"wv", "attn_v.weight"},           {"wo", "attn_output.weight"}, {"bq", "attn_q.bias"},
        {"bk", "attn_k.bias"},             {"bv", "attn_v.bias"},     {"ffn_norm", "ffn_norm.weight"},
        {"w_gate", "ffn_gate.weight"},     {"w_up", "ffn_up.weight"}, {"w_down", "ffn_down.weight"}};
    return absl::StrCat("blk.", l, ".", kNames.at(part));
  };
  FERRY_RETURN_IF_ERROR(BindAll(lookup, layer_name, "token_embd.weight", "output_norm.weight",
                                "output.weight", options));
  FinishTokenizerIds();
  return absl::OkStatus();
}

namespace {

absl::StatusOr<nlohmann::json> ReadJsonFile(const fs::path& path) {
  FERRY_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path.string()));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path.string(), ": malformed JSON"));
  }
  return j;
}

}  // namespace

absl::Status ModelBuilder::LoadHf(const std::string& dir, const LoadOptions& options) {
  fs::path root(dir);
  FERRY_ASSIGN_OR_RETURN(nlohmann::json config_json, ReadJsonFile(root / "config.json"));
  FERRY_ASSIGN_OR_RETURN(m_.config_, ModelConfigFromHf(config_json, (root / "config.json").string()));
  if (fs::exists(root / "generation_config.json")) {
    FERRY_ASSIGN_OR_RETURN(nlohmann::json gen, ReadJsonFile(root / "generation_config.json"));
    if (auto it = gen.find("eos_token_id"); it != gen.end()) {
      if (it->is_number_integer()) {
        m_.config_.eos_token_ids.push_back(it->get<int>());
      } else if (it->is_array()) {
        for (const auto& e : *it) {
          if (e.is_number_integer()) m_.config_.eos_token_ids.push_back(e.get<int>());
        }
      }
    }
  }
  FERRY_ASSIGN_OR_RETURN(m_.tokenizer_, Tokenizer::FromHfDirectory(dir));
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsModel> st_owned, SafetensorsModel::Open(dir));
  std::shared_ptr<SafetensorsModel> st(std::move(st_owned));
  m_.keep_alive_.push_back(st);
  if (!m_.config_.tie_word_embeddings && st->Find("lm_head.weight") == nullptr) {
    // Some checkpoints tie without saying so.
    m_.config_.tie_word_embeddings = true;
  }
  Lookup lookup = [&](const std::string& name) -> absl::StatusOr<FoundTensor> {
    const SafetensorsTensor* t = st->Find(name);
    if (t == nullptr) {
      return absl::NotFoundError(absl::StrCat(dir, ": tensor '", name, "' is missing"));
    }
    std::string file = dir;
    for (const auto& shard : st->files()) {
      if (shard->Find(name) == t) file = shard->name();
    }
    return FoundTensor{file, name, t->dtype, t->shape, t->data, t->num_bytes};
  };
  auto layer_name = [](int l, const char* part) {
    static const std::map<std::string, std::string> kNames = {
        {"attn_norm", "input_layernorm.weight"},
        {"wq", "self_attn.q_proj.weight"},
        {"wk", "self_attn.k_proj.weight"},
        {"wv", "self_attn.v_proj.weight"},
        {"wo", "self_attn.o_proj.weight"},
        {"bq", "self_attn.q_proj.bias"},
        {"bk", "self_attn.k_proj.bias"},
        {"bv", "self_attn.v_proj.bias"},
        {"ffn_norm", "post_attention_layernorm.weight"},
        {"w_gate", "mlp.gate_proj.weight"},
        {"w_up", "mlp.up_proj.weight"},
        {"w_down", "mlp.down_proj.weight"}};
    return absl::StrCat("model.layers.", l, ".", kNames.at(part));
  };
  FERRY_RETURN_IF_ERROR(BindAll(lookup, layer_name, "model.embed_tokens.weight", "model.norm.weight",
                                "lm_head.weight", options));
  FinishTokenizerIds();
  return absl::OkStatus();
}

// llama2.c's model.py is Meta's Llama: RoPE on adjacent pairs (as GGUF
// "llama" stores Q and K), norm epsilon 1e-5, theta 10000, BOS 1, EOS 2.
absl::Status ModelBuilder::LoadLlama2c(const std::string& path, const LoadOptions& options) {
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<Llama2cCheckpoint> owned, Llama2cCheckpoint::Open(path));
  std::shared_ptr<Llama2cCheckpoint> checkpoint(std::move(owned));
  m_.keep_alive_.push_back(checkpoint);
  const Llama2cConfig& l2 = checkpoint->config();
  ModelConfig& c = m_.config_;
  c.architecture = "llama";
  c.vocab_size = l2.vocab_size;
  c.hidden_size = l2.dim;
  c.num_layers = l2.num_layers;
  c.num_heads = l2.num_heads;
  c.num_kv_heads = l2.num_kv_heads;
  c.head_dim = l2.head_dim();
  c.intermediate_size = l2.hidden_dim;
  c.max_position_embeddings = l2.seq_len;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.rope_dim = c.head_dim;
  c.rope_style = RopeStyle::kInterleaved;
  c.tie_word_embeddings = l2.shared_classifier;
  c.bos_token_id = 1;
  FERRY_RETURN_IF_ERROR(c.Validate(path));
  FERRY_ASSIGN_OR_RETURN(m_.tokenizer_, Tokenizer::ForLlama2cCheckpoint(path, l2.vocab_size));
  Lookup lookup = [&](const std::string& name) -> absl::StatusOr<FoundTensor> {
    const Llama2cTensor* t = checkpoint->Find(name);
    if (t == nullptr)
      return absl::NotFoundError(absl::StrCat(path, ": tensor '", name, "' is missing"));
    return FoundTensor{path, name, DType::kF32, t->shape, t->data, t->num_bytes};
  };
  auto layer_name = [](int l, const char* part) {
    static const std::map<std::string, std::string> kNames = {
        {"attn_norm", "attention_norm.weight"}, {"wq", "attention.wq.weight"},
        {"wk", "attention.wk.weight"},          {"wv", "attention.wv.weight"},
        {"wo", "attention.wo.weight"},          {"ffn_norm", "ffn_norm.weight"},
        {"w_gate", "feed_forward.w1.weight"},   {"w_up", "feed_forward.w3.weight"},
        {"w_down", "feed_forward.w2.weight"}};
    return absl::StrCat("layers.", l, ".", kNames.at(part));
  };
  FERRY_RETURN_IF_ERROR(BindAll(lookup, layer_name, "tok_embeddings.weight", "norm.weight",
                                "output.weight", options));
  FinishTokenizerIds();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& path,
                                                   const LoadOptions& options) {
  std::unique_ptr<Model> model(new Model());
  std::error_code ec;
  fs::path p(path);
  if (!fs::exists(p, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  model->path_ = path;
  model->id_ = p.filename().string();
  if (model->id_.empty()) model->id_ = p.parent_path().filename().string();
  ModelBuilder builder(*model);
  if (fs::is_directory(p, ec)) {
    FERRY_RETURN_IF_ERROR(builder.LoadHf(path, options));
  } else if (Llama2cCheckpoint::SniffFile(path)) {
    FERRY_RETURN_IF_ERROR(builder.LoadLlama2c(path, options));
  } else {
    FERRY_RETURN_IF_ERROR(builder.LoadGguf(path, options));
  }
  Logger("engine")->info("loaded model {} ({}, {} layers, hidden {}, {} heads / {} kv heads, vocab {}, {:.1f} MB of weights)",
                         model->id_, model->config_.architecture, model->config_.num_layers,
                         model->config_.hidden_size, model->config_.num_heads,
                         model->config_.num_kv_heads, model->config_.vocab_size,
                         model->weight_bytes_ / 1e6);
  return model;
}

Model::~Model() = default;

}  // namespace ferry
