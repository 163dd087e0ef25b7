// A loaded Llama-family model: configuration, weights (views into the mapped
// files, or converted copies), tokenizer and chat template.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cpu/kernels.h"
#include "engine/model_config.h"
#include "engine/tokenizer/tokenizer.h"

namespace ferry {

struct LayerWeights {
  const float* attn_norm = nullptr;
  cpu::WeightMatrix wq, wk, wv, wo;
  const float* bq = nullptr;  // Qwen2 biases, else null
  const float* bk = nullptr;
  const float* bv = nullptr;
  const float* ffn_norm = nullptr;
  cpu::WeightMatrix w_gate, w_up, w_down;
};

struct ModelWeights {
  cpu::WeightMatrix embedding;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  const float* final_norm = nullptr;
  cpu::WeightMatrix output;  // [vocab, hidden]; the embedding when tied
};

struct LoadOptions {
  // Show a progress bar on a terminal.
  bool progress = true;
  // Decode from the file's mapping instead of a copy in anonymous memory:
  // no second copy of the weights in RAM (several processes on one host
  // share the page cache; weights that go to a GPU are read once), but a
  // CPU decode step on mapped file pages was measured 3x slower.
  bool map_weights = false;
  // Pack Q8_0, Q4_0, Q5_0 and k-quant layer matrices for the integer kernels where this CPU
  // has them (cpu::Rows16Fast): activations then go in as int8 blocks, as in
  // llama.cpp. False keeps fp32 activations (and the file's row layout).
  bool integer_kernels = true;
};

class Model {
 public:
  // Loads a GGUF file, a Hugging Face directory or a llama2.c checkpoint (with
  // its tokenizer next to it). Errors name the file and,
  // where one is at fault, the tensor: NotFound (missing file or tensor),
  // InvalidArgument (shape, dtype or metadata that does not fit), DataLoss
  // (truncated file), Unimplemented (architecture or tensor type).
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& path,
                                                     const LoadOptions& options = {});
  ~Model();

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // A stable name for the model: the file or directory name.
  const std::string& id() const { return id_; }
  const std::string& path() const { return path_; }
  // Ids that end generation: the config's and the tokenizer's.
  const std::vector<int32_t>& eos_ids() const { return eos_ids_; }
  // Bytes of weights as stored (what a decode step streams from memory).
  uint64_t weight_bytes() const { return weight_bytes_; }

 private:
  friend class ModelBuilder;
  Model() = default;

  std::string path_;
  std::string id_;
  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<int32_t> eos_ids_;
  uint64_t weight_bytes_ = 0;
  // Keeps mapped files alive and holds converted copies (f32 norms/biases).
  std::vector<std::shared_ptr<void>> keep_alive_;
  std::vector<std::vector<float>> owned_f32_;
};

}  // namespace ferry
