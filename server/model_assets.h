// What the gateway needs of a model without its weights: the tokenizer, the
// chat template and the context length, read from a GGUF file's metadata or
// a Hugging Face directory (config.json, tokenizer.json,
// tokenizer_config.json, chat_template.jinja).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/chat_template/chat_template.h"
#include "engine/tokenizer/tokenizer.h"

namespace ferry {

class GgufFile;

// Sampling defaults a Hugging Face model ships in generation_config.json,
// for requests that leave them out (as vLLM's --generation-config auto).
struct SamplingDefaults {
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int64_t> top_k;
  std::optional<double> min_p;
  std::optional<double> repetition_penalty;
  std::optional<int64_t> max_tokens;  // max_new_tokens

  bool empty() const {
    return !temperature && !top_p && !top_k && !min_p && !repetition_penalty && !max_tokens;
  }
  // "temperature=0.6 top_p=0.95" for logs.
  std::string Describe() const;
};

// The defaults in a generation_config.json; InvalidArgument naming the file
// and field for a value of the wrong type or out of range.
absl::StatusOr<SamplingDefaults> ReadSamplingDefaults(const std::string& generation_config_path);

class ModelAssets {
 public:
  // `chat_template_path`, when not empty, replaces the model's own template.
  // NotFound for a missing file; InvalidArgument for malformed metadata or a
  // template that does not parse (naming the file).
  static absl::StatusOr<std::unique_ptr<ModelAssets>> Load(
      const std::string& path, const std::string& chat_template_path = "");
  // From parts (tests, or a process that has them loaded already).
  ModelAssets(std::string id, std::unique_ptr<Tokenizer> tokenizer, int context_length,
              std::unique_ptr<ChatTemplate> chat_template);
  ~ModelAssets();

  const std::string& id() const { return id_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // Null when the model has no chat template.
  const ChatTemplate* chat_template() const { return chat_template_.get(); }
  int context_length() const { return context_length_; }
  // From generation_config.json (Hugging Face directories); empty otherwise.
  const SamplingDefaults& sampling_defaults() const { return sampling_defaults_; }
  void set_sampling_defaults(SamplingDefaults d) { sampling_defaults_ = std::move(d); }
  // The text of BOS / EOS for templates (empty when the vocabulary has none).
  std::string bos_text() const;
  std::string eos_text() const;

 private:
  std::string id_;
  std::unique_ptr<GgufFile> gguf_;  // kept for the tokenizer's lifetime
  std::unique_ptr<Tokenizer> tokenizer_;
  int context_length_ = 0;
  std::unique_ptr<ChatTemplate> chat_template_;
  SamplingDefaults sampling_defaults_;
};

}  // namespace ferry
