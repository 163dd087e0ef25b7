// `ferry make-model`: writes a Llama-architecture model with deterministic
// random weights and a working byte-level BPE tokenizer, as a Hugging Face
// directory (config.json, model.safetensors, tokenizer.json, ...) or as one
// GGUF file. The same seed gives bit-identical weights in every format.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ferry {

struct MakeModelOptions {
  std::string out_dir;          // created if absent; existing files are replaced
  std::string preset = "tiny";  // tiny | mini | small | medium
  std::string format = "hf";    // hf (safetensors directory) | gguf (DIR/model.gguf)
  std::string dtype = "f32";    // f32 | f16 | bf16; gguf also q8_0, q4_0, q5_0, q4_k, q5_k, q6_k
  uint64_t seed = 0;
  bool qwen2_bias = false;      // Qwen2ForCausalLM with q/k/v biases
  bool tie_embeddings = false;  // no separate output matrix
  bool show_progress = true;    // the bar draws only when stderr is a terminal
};

// Writes the model. InvalidArgument for an unknown preset, format or dtype
// (or a block-quantized dtype with hf); Internal/PermissionDenied (naming the
// path) on I/O errors.
absl::Status MakeModel(const MakeModelOptions& options);

// `ferry make-model --out DIR --preset tiny|mini|small|medium [--format hf|gguf]
// [--dtype f32|f16|bf16|q8_0|q4_0|q5_0|q4_k|q5_k|q6_k] [--seed N] [--qwen2-bias]
// [--tie-embeddings]`.
// argv[0] is "make-model". Returns the exit code (2 for bad flags).
int RunMakeModel(int argc, char** argv);

struct ModelPreset {
  std::string name;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;
  int vocab_size = 0;
  int max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;
};

// InvalidArgument naming the known presets when `name` is not one.
absl::StatusOr<ModelPreset> FindModelPreset(std::string_view name);

// A byte-level BPE vocabulary: ids 0-255 are the bytes (GPT-2 byte-to-
// character mapping), then the learned merges' tokens, then the special
// tokens <|begin_of_text|>, <|end_of_text|>, <|im_start|>, <|im_end|>, then
// <|reserved_N|> fillers up to the requested size.
struct ByteLevelBpeVocab {
  std::vector<std::string> tokens;  // id -> token text (UTF-8)
  std::vector<std::string> merges;  // "left right", highest priority first
  std::vector<bool> special;        // id -> is a special (control) token
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t im_start_id = -1;
  int32_t im_end_id = -1;
};

// Learns merges over the built-in English corpus until the vocabulary holds
// `vocab_size` tokens (deterministic; vocab_size must be at least 260).
ByteLevelBpeVocab TrainByteLevelBpe(int vocab_size);

// The GPT-2 byte-to-character mapping (printable bytes map to themselves,
// the others to U+0100 and up), as UTF-8.
std::string ByteLevelChar(uint8_t byte);

// Splits ASCII text the way the GPT-2 pre-tokenizer regex does.
std::vector<std::string> PreTokenizeAscii(std::string_view text);

// The GPT-2 pre-tokenizer regex written into tokenizer.json.
inline constexpr std::string_view kGpt2PreTokenizerRegex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

}  // namespace ferry
