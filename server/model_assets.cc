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

ModelAssets::ModelAssets(std::string id, std::unique_ptr<Tokenizer> tokenizer, int context_length,
                         std::unique_ptr<ChatTemplate> chat_template)
    : id_(std::move(id)),
      tokenizer_(std::move(tokenizer)),
      context_length_(context_length),
      chat_template_(std::move(chat_template)) {}

ModelAssets::~ModelAssets() = default;

absl::StatusOr<std::unique_ptr<ModelAssets>> ModelAssets::Load(const std::string& path,
                                                               const std::string& chat_template_path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  std::unique_ptr<GgufFile> gguf;
  std::unique_ptr<Tokenizer> tokenizer;
  int context_length = 0;
  std::string template_source;
  std::string template_origin = path;
  if (fs::is_directory(path, ec)) {
    fs::path root(path);
    FERRY_ASSIGN_OR_RETURN(context_length, HfContextLength((root / "config.json").string()));
    FERRY_ASSIGN_OR_RETURN(tokenizer, Tokenizer::FromHfDirectory(path));
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
