#include "engine/model_config.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/formats/gguf.h"
#include "nlohmann/json.hpp"

namespace ferry {
namespace {

using json = nlohmann::json;

absl::Status Invalid(const std::string& source, std::string_view msg) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", Sv(msg)));
}

absl::StatusOr<int> RequiredInt(const json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return Invalid(source, absl::StrCat("missing '", key, "'"));
  if (!it->is_number_integer()) return Invalid(source, absl::StrCat("'", key, "' must be an integer"));
  int64_t v = it->get<int64_t>();
  if (v <= 0 || v > (int64_t{1} << 30)) return Invalid(source, absl::StrCat("'", key, "' is out of range"));
  return static_cast<int>(v);
}

absl::StatusOr<int> OptionalInt(const json& j, const char* key, int def, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  return RequiredInt(j, key, source);
}

absl::StatusOr<float> OptionalFloat(const json& j, const char* key, float def, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_number()) return Invalid(source, absl::StrCat("'", key, "' must be a number"));
  return it->get<float>();
}

absl::StatusOr<bool> OptionalBool(const json& j, const char* key, bool def, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean()) return Invalid(source, absl::StrCat("'", key, "' must be true or false"));
  return it->get<bool>();
}

// eos_token_id may be an integer or a list of integers.
absl::StatusOr<std::vector<int>> TokenIdList(const json& j, const char* key, const std::string& source) {
  std::vector<int> out;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return out;
  if (it->is_number_integer()) {
    out.push_back(it->get<int>());
  } else if (it->is_array()) {
    for (const auto& e : *it) {
      if (!e.is_number_integer()) return Invalid(source, absl::StrCat("'", key, "' must hold integers"));
      out.push_back(e.get<int>());
    }
  } else {
    return Invalid(source, absl::StrCat("'", key, "' must be an integer or a list of integers"));
  }
  return out;
}

absl::StatusOr<RopeScaling> ParseRopeScaling(const json& j, const std::string& source) {
  RopeScaling s;
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return s;
  if (!it->is_object()) return Invalid(source, "'rope_scaling' must be an object");
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    auto t = it->find(key);
    if (t != it->end() && t->is_string()) {
      type = t->get<std::string>();
      break;
    }
  }
  if (type == "default" || type.empty()) return s;
  FERRY_ASSIGN_OR_RETURN(s.factor, OptionalFloat(*it, "factor", 1.0f, source));
  if (!(s.factor > 0)) return Invalid(source, "'rope_scaling.factor' must be positive");
  if (type == "linear") {
    s.type = RopeScaling::Type::kLinear;
  } else if (type == "llama3") {
    s.type = RopeScaling::Type::kLlama3;
    FERRY_ASSIGN_OR_RETURN(s.low_freq_factor, OptionalFloat(*it, "low_freq_factor", 1.0f, source));
    FERRY_ASSIGN_OR_RETURN(s.high_freq_factor, OptionalFloat(*it, "high_freq_factor", 4.0f, source));
    FERRY_ASSIGN_OR_RETURN(s.original_max_position_embeddings,
                           OptionalInt(*it, "original_max_position_embeddings", 8192, source));
    if (!(s.high_freq_factor > s.low_freq_factor)) {
      return Invalid(source, "'rope_scaling.high_freq_factor' must exceed low_freq_factor");
    }
  } else {
    return absl::UnimplementedError(
        absl::StrCat(source, ": rope_scaling type '", type, "' is not supported (linear, llama3)"));
  }
  return s;
}

}  // namespace

absl::Status ModelConfig::Validate(const std::string& source) const {
  if (vocab_size <= 0 || hidden_size <= 0 || num_layers <= 0 || num_heads <= 0 ||
      num_kv_heads <= 0 || head_dim <= 0 || intermediate_size <= 0) {
    return Invalid(source, "model dimensions must be positive");
  }
  if (num_heads % num_kv_heads != 0) {
    return Invalid(source, absl::StrCat("num_attention_heads (", num_heads,
                                        ") is not a multiple of num_key_value_heads (",
                                        num_kv_heads, ")"));
  }
  if (head_dim % 2 != 0 || rope_dim % 2 != 0 || rope_dim > head_dim || rope_dim <= 0) {
    return Invalid(source, "head_dim and the RoPE dimension must be even, RoPE within the head");
  }
  if (!(rms_norm_eps > 0) || !(rope_theta > 0)) {
    return Invalid(source, "rms_norm_eps and rope_theta must be positive");
  }
  return absl::OkStatus();
}

std::vector<float> ModelConfig::RopeInverseFrequencies() const {
  int pairs = rope_dim / 2;
  std::vector<float> inv(pairs);
  for (int i = 0; i < pairs; ++i) {
    double freq = std::pow(static_cast<double>(rope_theta), -2.0 * i / rope_dim);
    switch (rope_scaling.type) {
      case RopeScaling::Type::kNone:
        break;
      case RopeScaling::Type::kLinear:
        freq /= rope_scaling.factor;
        break;
      case RopeScaling::Type::kLlama3: {
        double old_len = rope_scaling.original_max_position_embeddings;
        double low_wavelen = old_len / rope_scaling.low_freq_factor;
        double high_wavelen = old_len / rope_scaling.high_freq_factor;
        double wavelen = 2.0 * M_PI / freq;
        if (wavelen < high_wavelen) {
          // High frequencies are kept.
        } else if (wavelen > low_wavelen) {
          freq /= rope_scaling.factor;
        } else {
          double smooth = (old_len / wavelen - rope_scaling.low_freq_factor) /
                          (rope_scaling.high_freq_factor - rope_scaling.low_freq_factor);
          freq = (1.0 - smooth) * freq / rope_scaling.factor + smooth * freq;
        }
        break;
      }
    }
    if (i < static_cast<int>(rope_freq_factors.size()) && rope_freq_factors[i] > 0) {
      freq /= rope_freq_factors[i];
    }
    inv[i] = static_cast<float>(freq);
  }
  return inv;
}

absl::StatusOr<ModelConfig> ModelConfigFromHf(const json& j, const std::string& source) {
  if (!j.is_object()) return Invalid(source, "config must be a JSON object");
  ModelConfig c;
  std::string arch;
  if (auto it = j.find("architectures"); it != j.end() && it->is_array() && !it->empty() &&
                                         (*it)[0].is_string()) {
    arch = (*it)[0].get<std::string>();
  }
  if (arch == "LlamaForCausalLM") {
    c.architecture = "llama";
  } else if (arch == "MistralForCausalLM") {
    c.architecture = "mistral";
  } else if (arch == "Qwen2ForCausalLM") {
    c.architecture = "qwen2";
    c.attention_bias = true;
  } else {
    return absl::UnimplementedError(absl::StrCat(
        source, ": architecture '", arch.empty() ? "(none)" : arch,
        "' is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)"));
  }
  FERRY_ASSIGN_OR_RETURN(c.vocab_size, RequiredInt(j, "vocab_size", source));
  FERRY_ASSIGN_OR_RETURN(c.hidden_size, RequiredInt(j, "hidden_size", source));
  FERRY_ASSIGN_OR_RETURN(c.num_layers, RequiredInt(j, "num_hidden_layers", source));
  FERRY_ASSIGN_OR_RETURN(c.num_heads, RequiredInt(j, "num_attention_heads", source));
  FERRY_ASSIGN_OR_RETURN(c.num_kv_heads, OptionalInt(j, "num_key_value_heads", c.num_heads, source));
  FERRY_ASSIGN_OR_RETURN(c.intermediate_size, RequiredInt(j, "intermediate_size", source));
  if (c.hidden_size % c.num_heads != 0 && !j.contains("head_dim")) {
    return Invalid(source, "hidden_size is not a multiple of num_attention_heads and no head_dim");
  }
  FERRY_ASSIGN_OR_RETURN(c.head_dim, OptionalInt(j, "head_dim", c.hidden_size / c.num_heads, source));
  FERRY_ASSIGN_OR_RETURN(c.max_position_embeddings,
                         OptionalInt(j, "max_position_embeddings", 2048, source));
  FERRY_ASSIGN_OR_RETURN(c.rms_norm_eps, OptionalFloat(j, "rms_norm_eps", 1e-6f, source));
  FERRY_ASSIGN_OR_RETURN(c.rope_theta, OptionalFloat(j, "rope_theta", 10000.0f, source));
  FERRY_ASSIGN_OR_RETURN(c.tie_word_embeddings, OptionalBool(j, "tie_word_embeddings", false, source));
  FERRY_ASSIGN_OR_RETURN(c.attention_bias, OptionalBool(j, "attention_bias", c.attention_bias, source));
  FERRY_ASSIGN_OR_RETURN(c.rope_scaling, ParseRopeScaling(j, source));
  FERRY_ASSIGN_OR_RETURN(c.eos_token_ids, TokenIdList(j, "eos_token_id", source));
  if (auto it = j.find("bos_token_id"); it != j.end() && it->is_number_integer()) {
    c.bos_token_id = it->get<int>();
  }
  c.rope_dim = c.head_dim;
  c.rope_style = RopeStyle::kHalfSplit;
  FERRY_RETURN_IF_ERROR(c.Validate(source));
  return c;
}

absl::StatusOr<ModelConfig> ModelConfigFromGguf(const GgufFile& gguf) {
  const std::string& source = gguf.name();
  FERRY_ASSIGN_OR_RETURN(std::string_view arch, gguf.GetString("general.architecture"));
  ModelConfig c;
  if (arch == "llama") {
    c.architecture = "llama";
    c.rope_style = RopeStyle::kInterleaved;
  } else if (arch == "qwen2") {
    c.architecture = "qwen2";
    c.rope_style = RopeStyle::kHalfSplit;
    c.attention_bias = true;
  } else {
    return absl::UnimplementedError(absl::StrCat(
        source, ": architecture '", Sv(arch), "' is not supported (llama, qwen2)"));
  }
  std::string p(arch);
  auto get_int = [&](const std::string& key) -> absl::StatusOr<int> {
    FERRY_ASSIGN_OR_RETURN(int64_t v, gguf.GetInt(key));
    if (v <= 0 || v > (int64_t{1} << 30)) return Invalid(source, absl::StrCat("'", key, "' is out of range"));
    return static_cast<int>(v);
  };
  FERRY_ASSIGN_OR_RETURN(c.hidden_size, get_int(p + ".embedding_length"));
  FERRY_ASSIGN_OR_RETURN(c.num_layers, get_int(p + ".block_count"));
  FERRY_ASSIGN_OR_RETURN(c.intermediate_size, get_int(p + ".feed_forward_length"));
  FERRY_ASSIGN_OR_RETURN(c.num_heads, get_int(p + ".attention.head_count"));
  c.num_kv_heads = c.num_heads;
  if (gguf.Find(p + ".attention.head_count_kv")) {
    FERRY_ASSIGN_OR_RETURN(c.num_kv_heads, get_int(p + ".attention.head_count_kv"));
  }
  if (gguf.Find(p + ".context_length")) {
    FERRY_ASSIGN_OR_RETURN(c.max_position_embeddings, get_int(p + ".context_length"));
  }
  c.head_dim = c.hidden_size / c.num_heads;
  if (gguf.Find(p + ".attention.key_length")) {
    FERRY_ASSIGN_OR_RETURN(c.head_dim, get_int(p + ".attention.key_length"));
  }
  c.rope_dim = c.head_dim;
  if (gguf.Find(p + ".rope.dimension_count")) {
    FERRY_ASSIGN_OR_RETURN(c.rope_dim, get_int(p + ".rope.dimension_count"));
  }
  if (gguf.Find(p + ".attention.layer_norm_rms_epsilon")) {
    FERRY_ASSIGN_OR_RETURN(double eps, gguf.GetFloat(p + ".attention.layer_norm_rms_epsilon"));
    c.rms_norm_eps = static_cast<float>(eps);
  }
  if (gguf.Find(p + ".rope.freq_base")) {
    FERRY_ASSIGN_OR_RETURN(double base, gguf.GetFloat(p + ".rope.freq_base"));
    c.rope_theta = static_cast<float>(base);
  }
  if (auto type = gguf.GetString(p + ".rope.scaling.type"); type.ok()) {
    if (*type == "linear") {
      c.rope_scaling.type = RopeScaling::Type::kLinear;
      FERRY_ASSIGN_OR_RETURN(double f, gguf.GetFloat(p + ".rope.scaling.factor"));
      c.rope_scaling.factor = static_cast<float>(f);
      if (!(c.rope_scaling.factor > 0)) return Invalid(source, "rope scaling factor must be positive");
    } else if (*type != "none") {
      return absl::UnimplementedError(
          absl::StrCat(source, ": rope scaling type '", Sv(*type), "' is not supported"));
    }
  }
  // The vocabulary size comes from the embedding (set by the loader) or tokens.
  if (gguf.Find(p + ".vocab_size")) {
    FERRY_ASSIGN_OR_RETURN(c.vocab_size, get_int(p + ".vocab_size"));
  } else if (auto tokens = gguf.Find("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int>(tokens->count);
  } else if (auto* emb = gguf.FindTensor("token_embd.weight"); emb && emb->ne.size() == 2) {
    c.vocab_size = static_cast<int>(emb->ne[1]);
  }
  if (auto bos = gguf.GetInt("tokenizer.ggml.bos_token_id"); bos.ok()) c.bos_token_id = static_cast<int>(*bos);
  if (auto eos = gguf.GetInt("tokenizer.ggml.eos_token_id"); eos.ok()) c.eos_token_ids.push_back(static_cast<int>(*eos));
  c.tie_word_embeddings = gguf.FindTensor("output.weight") == nullptr;
  FERRY_RETURN_IF_ERROR(c.Validate(source));
  return c;
}

}  // namespace ferry
