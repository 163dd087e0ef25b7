// Hyper-parameters of a Llama-family decoder (Llama 2/3, Mistral, Qwen2),
// read from GGUF metadata or a Hugging Face config.json.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace ferry {

class GgufFile;

// How RoPE pairs the dimensions of a head: GGUF "llama" weights are permuted
// for adjacent pairs (2i, 2i+1); Hugging Face and GGUF "qwen2" use the
// half-split pairs (i, i + d/2) ("rotate_half", NEOX style).
enum class RopeStyle { kInterleaved, kHalfSplit };

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // "llama", "mistral", "qwen2"
  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;
  int max_position_embeddings = 2048;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  int rope_dim = 0;  // dimensions of a head that RoPE rotates (= head_dim)
  RopeStyle rope_style = RopeStyle::kHalfSplit;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v biases (Qwen2)
  // GGUF llama3 models carry per-pair frequency divisors (rope_freqs.weight).
  std::vector<float> rope_freq_factors;
  std::vector<int> eos_token_ids;  // from generation_config.json / config.json
  int bos_token_id = -1;

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }

  // Checks the numbers are positive and consistent (heads divide, GQA groups
  // whole). InvalidArgument naming `source` and the field otherwise.
  absl::Status Validate(const std::string& source) const;

  // Per-pair inverse frequencies for RoPE with the scaling applied
  // (rope_dim / 2 values).
  std::vector<float> RopeInverseFrequencies() const;
};

// From a parsed config.json (LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM). Unimplemented for other architectures; InvalidArgument
// naming the key for a missing or mistyped field.
absl::StatusOr<ModelConfig> ModelConfigFromHf(const nlohmann::json& config,
                                              const std::string& source);

// From GGUF metadata ({arch}.embedding_length, ...).
absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& gguf);

}  // namespace ferry
