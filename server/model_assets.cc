#include "server/model_assets.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/formats/gguf.h"
#include "engine/formats/llama2c.h"
#include "nlohmann/json.hpp"

namespace ferry {
namespace {

namespace fs = std::filesystem;

absl::StatusOr<int> HfContextLength(const std::string& config_path) {
  FERRY_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
  nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
  }
  auto it = config.find("max_position_embeddings");
  if (it == config.end()) return 2048;  // what Hugging Face assumes for Llama
  if (!it->is_number_integer() || it->get<int64_t>() <= 0 || it->get<int64_t>() > (1 << 30)) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": max_position_embeddings must be a positive integer"));
  }
  return static_cast<int>(it->get<int64_t>());
}

absl::StatusOr<std::unique_ptr<ChatTemplate>> ParseTemplate(const std::string& source,
                                                            const std::string& origin) {
  if (source.empty()) return nullptr;
  auto parsed = ChatTemplate::Parse(source);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": chat template does not parse: ", parsed.status().message()));
  }
  return std::move(*parsed);
}

std::string ModelId(const std::string& path) {
  fs::path p(path);
  std::string id = p.filename().string();
  if (id.empty()) id = p.parent_path().filename().string();
  return id;
}

}  // namespace

std::string SamplingDefaults::Describe() const {
  std::string out;
  auto add = [&out](const char* name, const auto& v) {
    if (v) absl::StrAppend(&out, out.empty() ? "" : " ", name, "=", *v);
  };
  add("temperature", temperature);
  add("top_p", top_p);
  add("top_k", top_k);
  add("min_p", min_p);
  add("repetition_penalty", repetition_penalty);
  add("max_tokens", max_tokens);
  return out;
}

absl::StatusOr<SamplingDefaults> ReadSamplingDefaults(const std::string& path) {
  FERRY_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  SamplingDefaults d;
  auto number = [&](const char* key, double lo, double hi, bool lo_open,
                    std::optional<double>* out) -> absl::Status {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_number())
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, " must be a number"));
    const double v = it->get<double>();
    if (v < lo || v > hi || (lo_open && v == lo)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", key, " is out of range: ", v));
    }
    *out = v;
    return absl::OkStatus();
  };
  auto integer = [&](const char* key, int64_t lo, std::optional<int64_t>* out) -> absl::Status {
    auto it = config.find(key);
    if (it == config.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_number_integer() || it->get<int64_t>() < lo) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", key, " must be an integer >= ", lo));
    }
    *out = it->get<int64_t>();
    return absl::OkStatus();
  };
  FERRY_RETURN_IF_ERROR(number("temperature", 0, 100, false, &d.temperature));
  FERRY_RETURN_IF_ERROR(number("top_p", 0, 1, true, &d.top_p));
  FERRY_RETURN_IF_ERROR(integer("top_k", 0, &d.top_k));
  FERRY_RETURN_IF_ERROR(number("min_p", 0, 1, false, &d.min_p));
  FERRY_RETURN_IF_ERROR(number("repetition_penalty", 0, 100, true, &d.repetition_penalty));
  FERRY_RETURN_IF_ERROR(integer("max_new_tokens", 1, &d.max_tokens));
  return d;
}

ModelAssets::ModelAssets(std::string id, std::unique_ptr<Tokenizer> tokenizer, int context_length,
                         std::unique_ptr<ChatTemplate> chat_template)
    : id_(std::move(id)),
      tokenizer_(std::move(tokenizer)),
      context_length_(context_length),
      chat_template_(std::move(chat_template)) {}

ModelAssets::~ModelAssets() = default;

absl::StatusOr<std::unique_ptr<ModelAssets>> ModelAssets::Load(
    const std::string& path, const std::string& chat_template_path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  std::unique_ptr<GgufFile> gguf;
  std::unique_ptr<Tokenizer> tokenizer;
  int context_length = 0;
  SamplingDefaults defaults;
  std::string template_source;
  std::string template_origin = path;
  if (fs::is_directory(path, ec)) {
    fs::path root(path);
    FERRY_ASSIGN_OR_RETURN(context_length, HfContextLength((root / "config.json").string()));
    FERRY_ASSIGN_OR_RETURN(tokenizer, Tokenizer::FromHfDirectory(path));
    if (fs::exists(root / "generation_config.json", ec)) {
      FERRY_ASSIGN_OR_RETURN(defaults,
                             ReadSamplingDefaults((root / "generation_config.json").string()));
    }
    template_source = tokenizer->chat_template();
    if (template_source.empty() && fs::exists(root / "chat_template.jinja", ec)) {
      template_origin = (root / "chat_template.jinja").string();
      FERRY_ASSIGN_OR_RETURN(template_source, ReadFileToString(template_origin));
    }
  } else if (Llama2cCheckpoint::SniffFile(path)) {
    // Mapped, not read: the gateway needs the header alone.
    FERRY_ASSIGN_OR_RETURN(std::unique_ptr<Llama2cCheckpoint> checkpoint,
                           Llama2cCheckpoint::Open(path));
    const Llama2cConfig& config = checkpoint->config();
    context_length = config.seq_len;
    FERRY_ASSIGN_OR_RETURN(tokenizer, Tokenizer::ForLlama2cCheckpoint(path, config.vocab_size));
  } else {
    FERRY_ASSIGN_OR_RETURN(gguf, GgufFile::Open(path));
    FERRY_ASSIGN_OR_RETURN(std::string_view arch, gguf->GetString("general.architecture"));
    auto ctx = gguf->GetInt(absl::StrCat(Sv(arch), ".context_length"));
    if (ctx.ok() && *ctx > 0 && *ctx <= (1 << 30)) {
      context_length = static_cast<int>(*ctx);
    } else if (ctx.ok() || !absl::IsNotFound(ctx.status())) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad ", Sv(arch), ".context_length"));
    } else {
      context_length = 2048;
    }
    FERRY_ASSIGN_OR_RETURN(tokenizer, Tokenizer::FromGguf(*gguf));
    template_source = tokenizer->chat_template();
  }
  if (!chat_template_path.empty()) {
    template_origin = chat_template_path;
    FERRY_ASSIGN_OR_RETURN(template_source, ReadFileToString(chat_template_path));
  }
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<ChatTemplate> chat_template,
                         ParseTemplate(template_source, template_origin));
  auto assets = std::make_unique<ModelAssets>(ModelId(path), std::move(tokenizer), context_length,
                                              std::move(chat_template));
  assets->gguf_ = std::move(gguf);
  assets->sampling_defaults_ = std::move(defaults);
  return assets;
}

std::string ModelAssets::bos_text() const {
  auto id = tokenizer_->bos_id();
  return id ? std::string(tokenizer_->TokenText(*id)) : std::string();
}

std::string ModelAssets::eos_text() const {
  auto id = tokenizer_->eos_id();
  return id ? std::string(tokenizer_->TokenText(*id)) : std::string();
}

}  // namespace ferry
