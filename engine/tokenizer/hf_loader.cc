// Tokenizer::FromHuggingFace: reads tokenizer.json (model BPE with either a
// ByteLevel pre-tokenizer or a SentencePiece-style normalizer) and
// tokenizer_config.json. nlohmann::json is used without exceptions, and every
// field is type-checked, so bad input gives InvalidArgument naming the file
// and field.
#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "engine/tokenizer/bpe_tokenizer.h"
#include "engine/tokenizer/merge_ranks.h"
#include "engine/tokenizer/pre_tokenizer.h"
#include "engine/tokenizer/sentencepiece_model.h"
#include "engine/tokenizer/spm_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocab_tokenizer.h"
#include "nlohmann/json.hpp"

namespace ferry {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

absl::StatusOr<Json> ParseJsonFile(const std::string& path) {
  FERRY_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  Json json = Json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  }
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the top level is not an object"));
  }
  return json;
}

// Typed access to one file's fields; errors name the file and field.
class JsonFields {
 public:
  explicit JsonFields(std::string file) : file_(std::move(file)) {}

  absl::Status Error(std::string_view field, std::string_view problem) const {
    return absl::InvalidArgumentError(
        absl::StrCat(file_, ": field '", Sv(field), "' ", Sv(problem)));
  }
  // The member `key` of `obj` (nullptr when absent or null).
  const Json* Find(const Json& obj, std::string_view key) const {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  absl::StatusOr<const Json*> Object(const Json& obj, std::string_view key,
                                     std::string_view field) const {
    const Json* v = Find(obj, key);
    if (v && !v->is_object()) return Error(field, "must be an object");
    return v;
  }
  absl::StatusOr<const Json*> Array(const Json& obj, std::string_view key,
                                    std::string_view field) const {
    const Json* v = Find(obj, key);
    if (v && !v->is_array()) return Error(field, "must be an array");
    return v;
  }
  absl::StatusOr<std::optional<std::string>> String(const Json& obj, std::string_view key,
                                                    std::string_view field) const {
    const Json* v = Find(obj, key);
    if (!v) return std::optional<std::string>();
    if (!v->is_string()) return Error(field, "must be a string");
    return std::optional<std::string>(v->get<std::string>());
  }
  absl::StatusOr<std::optional<bool>> Bool(const Json& obj, std::string_view key,
                                           std::string_view field) const {
    const Json* v = Find(obj, key);
    if (!v) return std::optional<bool>();
    if (!v->is_boolean()) return Error(field, "must be a boolean");
    return std::optional<bool>(v->get<bool>());
  }
  // Ids are dense in practice; `limit` (the number of entries that can have
  // an id) keeps a corrupt file from making us allocate a huge vocabulary.
  absl::StatusOr<int32_t> TokenId(const Json& v, std::string_view field, size_t limit) const {
    if (!v.is_number_integer()) return Error(field, "must be an integer");
    const int64_t id = v.get<int64_t>();
    if (id < 0 || static_cast<uint64_t>(id) >= limit) {
      return Error(field, absl::StrCat("is out of range (", id, ")"));
    }
    return static_cast<int32_t>(id);
  }

 private:
  std::string file_;
};

// What tokenizer.json says beyond the vocabulary.
struct HfModel {
  VocabSpec spec;
  bool byte_level = false;
  ByteLevelBpeOptions byte_level_options;
  bool add_space_prefix = false;
  std::optional<int32_t> post_processor_bos;
  size_t max_num_tokens = 0;  // vocab entries + added tokens
  // Merge strings, which spec.merges points into.
  std::vector<std::string> merge_storage;
};

absl::Status ReadVocab(const JsonFields& f, const Json& model, HfModel* out) {
  FERRY_ASSIGN_OR_RETURN(const Json* vocab, f.Object(model, "vocab", "model.vocab"));
  if (!vocab) return f.Error("model.vocab", "is missing");
  auto& tokens = out->spec.tokens;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    FERRY_ASSIGN_OR_RETURN(int32_t id, f.TokenId(it.value(), absl::StrCat("model.vocab.", it.key()),
                                                 out->max_num_tokens));
    if (static_cast<size_t>(id) >= tokens.size()) tokens.resize(id + 1);
    tokens[id] = it.key();
  }
  return absl::OkStatus();
}

absl::Status ReadMerges(const JsonFields& f, const Json& model, HfModel* out) {
  FERRY_ASSIGN_OR_RETURN(const Json* merges, f.Array(model, "merges", "model.merges"));
  if (!merges) return absl::OkStatus();
  // Two passes: store the strings, then point views at them.
  std::vector<size_t> split_at;
  for (size_t i = 0; i < merges->size(); ++i) {
    const Json& m = (*merges)[i];
    const std::string field = absl::StrCat("model.merges[", i, "]");
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      auto parts = SplitMerge(s);
      if (!parts) return f.Error(field, "is not 'left right'");
      out->merge_storage.push_back(s);
      split_at.push_back(parts->first.size());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      const std::string& left = m[0].get_ref<const std::string&>();
      out->merge_storage.push_back(left + m[1].get<std::string>());
      split_at.push_back(left.size());
    } else {
      return f.Error(field, "must be a string or a pair of strings");
    }
  }
  for (size_t i = 0; i < out->merge_storage.size(); ++i) {
    std::string_view s = out->merge_storage[i];
    const bool spaced = (*merges)[i].is_string();
    out->spec.merges.emplace_back(s.substr(0, split_at[i]),
                                  s.substr(split_at[i] + (spaced ? 1 : 0)));
  }
  return absl::OkStatus();
}

absl::Status ReadAddedTokens(const JsonFields& f, const Json& root, HfModel* out) {
  FERRY_ASSIGN_OR_RETURN(const Json* added, f.Array(root, "added_tokens", "added_tokens"));
  if (!added) return absl::OkStatus();
  auto& spec = out->spec;
  for (size_t i = 0; i < added->size(); ++i) {
    const Json& t = (*added)[i];
    const std::string field = absl::StrCat("added_tokens[", i, "]");
    if (!t.is_object()) return f.Error(field, "must be an object");
    const Json* id_json = f.Find(t, "id");
    if (!id_json) return f.Error(field + ".id", "is missing");
    FERRY_ASSIGN_OR_RETURN(int32_t id, f.TokenId(*id_json, field + ".id", out->max_num_tokens));
    FERRY_ASSIGN_OR_RETURN(std::optional<std::string> content,
                           f.String(t, "content", field + ".content"));
    if (!content || content->empty()) return f.Error(field + ".content", "is missing or empty");
    FERRY_ASSIGN_OR_RETURN(std::optional<bool> special, f.Bool(t, "special", field + ".special"));
    if (static_cast<size_t>(id) >= spec.tokens.size()) {
      spec.tokens.resize(id + 1);
      spec.types.resize(id + 1, TokenType::kUnused);
    }
    spec.tokens[id] = *content;
    spec.types[id] = special.value_or(false) ? TokenType::kControl : TokenType::kUserDefined;
  }
  return absl::OkStatus();
}

// ByteLevel, or Sequence[..., Split(regex), ..., ByteLevel].
absl::Status ReadPreTokenizer(const JsonFields& f, const Json& root, HfModel* out) {
  FERRY_ASSIGN_OR_RETURN(const Json* pre, f.Object(root, "pre_tokenizer", "pre_tokenizer"));
  if (!pre) return absl::OkStatus();
  std::vector<std::pair<const Json*, std::string>> steps;
  FERRY_ASSIGN_OR_RETURN(std::optional<std::string> type,
                         f.String(*pre, "type", "pre_tokenizer.type"));
  if (type == "Sequence") {
    FERRY_ASSIGN_OR_RETURN(const Json* list,
                           f.Array(*pre, "pretokenizers", "pre_tokenizer.pretokenizers"));
    if (!list) return f.Error("pre_tokenizer.pretokenizers", "is missing");
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string field = absl::StrCat("pre_tokenizer.pretokenizers[", i, "]");
      if (!(*list)[i].is_object()) return f.Error(field, "must be an object");
      steps.emplace_back(&(*list)[i], field);
    }
  } else {
    steps.emplace_back(pre, "pre_tokenizer");
  }
  std::optional<PreTokenizerKind> split_kind;
  bool byte_level_regex = false;
  for (const auto& [step, field] : steps) {
    FERRY_ASSIGN_OR_RETURN(std::optional<std::string> step_type,
                           f.String(*step, "type", field + ".type"));
    if (step_type == "ByteLevel") {
      out->byte_level = true;
      FERRY_ASSIGN_OR_RETURN(std::optional<bool> prefix,
                             f.Bool(*step, "add_prefix_space", field + ".add_prefix_space"));
      FERRY_ASSIGN_OR_RETURN(std::optional<bool> use_regex,
                             f.Bool(*step, "use_regex", field + ".use_regex"));
      out->byte_level_options.add_prefix_space = prefix.value_or(false);
      byte_level_regex = use_regex.value_or(true);
    } else if (step_type == "Split") {
      FERRY_ASSIGN_OR_RETURN(const Json* pattern, f.Object(*step, "pattern", field + ".pattern"));
      std::optional<std::string> regex;
      if (pattern) {
        FERRY_ASSIGN_OR_RETURN(regex, f.String(*pattern, "Regex", field + ".pattern.Regex"));
      }
      if (!regex) {
        return absl::UnimplementedError(absl::StrCat(field, ": only Regex splits are supported"));
      }
      split_kind = PreTokenizerFromRegex(*regex);
      if (!split_kind) {
        return absl::UnimplementedError(
            absl::StrCat("unsupported pre-tokenizer split pattern '", *regex, "' in ", field));
      }
    } else if (step_type == "Metaspace") {
      FERRY_ASSIGN_OR_RETURN(std::optional<std::string> scheme,
                             f.String(*step, "prepend_scheme", field + ".prepend_scheme"));
      FERRY_ASSIGN_OR_RETURN(std::optional<bool> prefix,
                             f.Bool(*step, "add_prefix_space", field + ".add_prefix_space"));
      out->add_space_prefix = scheme ? *scheme != "never" : prefix.value_or(true);
    } else {
      return absl::UnimplementedError(
          absl::StrCat("unsupported pre-tokenizer '", step_type.value_or(""), "' in ", field));
    }
  }
  if (out->byte_level) {
    if (split_kind) {
      out->byte_level_options.pre_tokenizer = *split_kind;
    } else if (byte_level_regex) {
      out->byte_level_options.pre_tokenizer = PreTokenizerKind::kGpt2;
    } else {
      return absl::UnimplementedError("ByteLevel pre-tokenizer without a split pattern");
    }
  }
  return absl::OkStatus();
}

// Llama-2 style: Sequence[Prepend("▁"), Replace(" ", "▁")].
absl::Status ReadNormalizer(const JsonFields& f, const Json& root, HfModel* out,
                            bool* spaces_to_mark) {
  FERRY_ASSIGN_OR_RETURN(const Json* norm, f.Object(root, "normalizer", "normalizer"));
  if (!norm) return absl::OkStatus();
  std::vector<const Json*> steps;
  FERRY_ASSIGN_OR_RETURN(std::optional<std::string> type,
                         f.String(*norm, "type", "normalizer.type"));
  if (type == "Sequence") {
    FERRY_ASSIGN_OR_RETURN(const Json* list,
                           f.Array(*norm, "normalizers", "normalizer.normalizers"));
    if (list) {
      for (const Json& step : *list) {
        if (!step.is_object()) return f.Error("normalizer.normalizers", "must hold objects");
        steps.push_back(&step);
      }
    }
  } else {
    steps.push_back(norm);
  }
  for (const Json* step : steps) {
    FERRY_ASSIGN_OR_RETURN(std::optional<std::string> t,
                           f.String(*step, "type", "normalizer.type"));
    if (t == "Prepend") {
      FERRY_ASSIGN_OR_RETURN(std::optional<std::string> s,
                             f.String(*step, "prepend", "normalizer.prepend"));
      if (s == kSpaceMark) out->add_space_prefix = true;
    } else if (t == "Replace") {
      FERRY_ASSIGN_OR_RETURN(const Json* pattern, f.Object(*step, "pattern", "normalizer.pattern"));
      FERRY_ASSIGN_OR_RETURN(std::optional<std::string> content,
                             f.String(*step, "content", "normalizer.content"));
      std::optional<std::string> from;
      if (pattern) {
        FERRY_ASSIGN_OR_RETURN(from, f.String(*pattern, "String", "normalizer.pattern.String"));
      }
      if (from == " " && content == kSpaceMark) *spaces_to_mark = true;
    } else if (t != "NFC" && t != "NFKC") {
      return absl::UnimplementedError(
          absl::StrCat("unsupported normalizer '", t.value_or(""), "'"));
    }
  }
  return absl::OkStatus();
}

// TemplateProcessing whose single-sequence template starts with a special
// token: that token is the BOS the model expects.
absl::Status ReadPostProcessor(const JsonFields& f, const Json& root, HfModel* out) {
  FERRY_ASSIGN_OR_RETURN(const Json* post, f.Object(root, "post_processor", "post_processor"));
  if (!post) return absl::OkStatus();
  std::vector<const Json*> steps = {post};
  if (auto it = post->find("processors"); it != post->end() && it->is_array()) {
    steps.clear();
    for (const Json& p : *it) {
      if (p.is_object()) steps.push_back(&p);
    }
  }
  for (const Json* step : steps) {
    auto single = step->find("single");
    if (single == step->end() || !single->is_array() || single->empty()) continue;
    const Json& first = (*single)[0];
    if (!first.is_object() || !first.contains("SpecialToken")) continue;
    const Json& token = first["SpecialToken"];
    if (!token.is_object() || !token.contains("id") || !token["id"].is_string()) continue;
    auto id =
        std::find(out->spec.tokens.begin(), out->spec.tokens.end(), token["id"].get<std::string>());
    if (id != out->spec.tokens.end()) {
      out->post_processor_bos = static_cast<int32_t>(id - out->spec.tokens.begin());
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<HfModel> ReadTokenizerJson(const std::string& path) {
  FERRY_ASSIGN_OR_RETURN(Json root, ParseJsonFile(path));
  const JsonFields f(path);
  FERRY_ASSIGN_OR_RETURN(const Json* model, f.Object(root, "model", "model"));
  if (!model) return f.Error("model", "is missing");
  FERRY_ASSIGN_OR_RETURN(std::optional<std::string> type, f.String(*model, "type", "model.type"));
  if (type && *type != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat(path, ": model.type '", *type, "' is not supported (only BPE)"));
  }
  HfModel out;
  {
    const auto vocab = model->find("vocab");
    const auto added = root.find("added_tokens");
    out.max_num_tokens =
        (vocab != model->end() ? vocab->size() : 0) + (added != root.end() ? added->size() : 0);
  }
  FERRY_RETURN_IF_ERROR(ReadVocab(f, *model, &out));
  out.spec.types.assign(out.spec.tokens.size(), TokenType::kNormal);
  for (size_t i = 0; i < out.spec.tokens.size(); ++i) {
    if (out.spec.tokens[i].empty()) out.spec.types[i] = TokenType::kUnused;  // id gap
  }
  FERRY_RETURN_IF_ERROR(ReadMerges(f, *model, &out));
  FERRY_RETURN_IF_ERROR(ReadAddedTokens(f, root, &out));
  FERRY_ASSIGN_OR_RETURN(std::optional<bool> byte_fallback,
                         f.Bool(*model, "byte_fallback", "model.byte_fallback"));
  FERRY_ASSIGN_OR_RETURN(std::optional<bool> ignore_merges,
                         f.Bool(*model, "ignore_merges", "model.ignore_merges"));
  FERRY_ASSIGN_OR_RETURN(std::optional<std::string> unk,
                         f.String(*model, "unk_token", "model.unk_token"));
  FERRY_RETURN_IF_ERROR(ReadPreTokenizer(f, root, &out));
  bool spaces_to_mark = false;
  FERRY_RETURN_IF_ERROR(ReadNormalizer(f, root, &out, &spaces_to_mark));
  FERRY_RETURN_IF_ERROR(ReadPostProcessor(f, root, &out));
  out.byte_level_options.ignore_merges = ignore_merges.value_or(false);

  if (!out.byte_level && !spaces_to_mark && !out.add_space_prefix) {
    return absl::UnimplementedError(absl::StrCat(
        path, ": neither a ByteLevel pre-tokenizer nor a SentencePiece-style normalizer"));
  }
  auto& spec = out.spec;
  if (byte_fallback.value_or(false)) {
    for (size_t i = 0; i < spec.tokens.size(); ++i) {
      const std::string& t = spec.tokens[i];
      if (spec.types[i] == TokenType::kNormal && t.size() == 6 && t.starts_with("<0x") &&
          t.ends_with(">")) {
        spec.types[i] = TokenType::kByte;
      }
    }
  }
  if (unk) {
    auto it = std::find(spec.tokens.begin(), spec.tokens.end(), *unk);
    if (it != spec.tokens.end()) {
      spec.unk_id = static_cast<int32_t>(it - spec.tokens.begin());
      if (spec.types[*spec.unk_id] != TokenType::kUserDefined) {
        spec.types[*spec.unk_id] = TokenType::kUnknown;
      }
    }
  }
  return out;
}

// bos_token / eos_token: a string, or an AddedToken object {"content": ...}.
absl::StatusOr<std::optional<std::string>> TokenContent(const JsonFields& f, const Json& config,
                                                        std::string_view key) {
  const Json* v = f.Find(config, key);
  if (!v) return std::optional<std::string>();
  if (v->is_string()) return std::optional<std::string>(v->get<std::string>());
  if (v->is_object()) return f.String(*v, "content", absl::StrCat(Sv(key), ".content"));
  return f.Error(key, "must be a string or an object with 'content'");
}

absl::StatusOr<std::string> ChatTemplate(const JsonFields& f, const Json& config) {
  const Json* v = f.Find(config, "chat_template");
  if (!v) return std::string();
  if (v->is_string()) return v->get<std::string>();
  if (!v->is_array()) return f.Error("chat_template", "must be a string or a list of templates");
  std::string first;
  for (size_t i = 0; i < v->size(); ++i) {
    const Json& entry = (*v)[i];
    const std::string field = absl::StrCat("chat_template[", i, "]");
    if (!entry.is_object()) return f.Error(field, "must be an object");
    FERRY_ASSIGN_OR_RETURN(std::optional<std::string> name,
                           f.String(entry, "name", field + ".name"));
    FERRY_ASSIGN_OR_RETURN(std::optional<std::string> text,
                           f.String(entry, "template", field + ".template"));
    if (!text) return f.Error(field + ".template", "is missing");
    if (name == "default") return *text;
    if (i == 0) first = *text;
  }
  return first;  // no "default": the first one
}

absl::Status ApplyConfig(const std::string& path, HfModel* model) {
  FERRY_ASSIGN_OR_RETURN(Json config, ParseJsonFile(path));
  const JsonFields f(path);
  VocabSpec& spec = model->spec;
  const auto find_token = [&](const std::optional<std::string>& text,
                              std::string_view key) -> std::optional<int32_t> {
    if (!text) return std::nullopt;
    auto it = std::find(spec.tokens.begin(), spec.tokens.end(), *text);
    if (it == spec.tokens.end()) {
      Logger("tokenizer")->warn("{}: {} '{}' is not in the vocabulary; ignored", path, key, *text);
      return std::nullopt;
    }
    return static_cast<int32_t>(it - spec.tokens.begin());
  };
  FERRY_ASSIGN_OR_RETURN(std::optional<std::string> bos, TokenContent(f, config, "bos_token"));
  FERRY_ASSIGN_OR_RETURN(std::optional<std::string> eos, TokenContent(f, config, "eos_token"));
  if (auto id = find_token(bos, "bos_token")) spec.bos_id = id;
  if (auto id = find_token(eos, "eos_token")) spec.eos_id = id;
  FERRY_ASSIGN_OR_RETURN(std::optional<bool> add_bos,
                         f.Bool(config, "add_bos_token", "add_bos_token"));
  FERRY_ASSIGN_OR_RETURN(std::optional<bool> add_eos,
                         f.Bool(config, "add_eos_token", "add_eos_token"));
  if (add_bos) spec.add_bos = *add_bos;
  if (add_eos) spec.add_eos = *add_eos;
  FERRY_ASSIGN_OR_RETURN(spec.chat_template, ChatTemplate(f, config));
  if (spec.chat_template.empty()) {
    // Newer checkpoints ship the template as its own file.
    const auto jinja = std::filesystem::path(path).parent_path() / "chat_template.jinja";
    std::error_code ec;
    if (std::filesystem::exists(jinja, ec)) {
      FERRY_ASSIGN_OR_RETURN(spec.chat_template, ReadFileToString(jinja.string()));
    }
  }
  return absl::OkStatus();
}

// Applies the defaults and tokenizer_config.json (when its path is not
// empty) to a vocabulary read from `source`, and builds the tokenizer.
absl::StatusOr<std::unique_ptr<Tokenizer>> Finish(HfModel model, const std::string& source,
                                                  const std::string& tokenizer_config_path) {
  VocabSpec& spec = model.spec;
  // Defaults before the config: the post-processor's BOS, SentencePiece's <s> </s>.
  if (model.post_processor_bos) {
    spec.bos_id = model.post_processor_bos;
    spec.add_bos = true;
  }
  if (!model.byte_level) {
    const auto find = [&](std::string_view text) -> std::optional<int32_t> {
      auto it = std::find(spec.tokens.begin(), spec.tokens.end(), text);
      if (it == spec.tokens.end()) return std::nullopt;
      return static_cast<int32_t>(it - spec.tokens.begin());
    };
    if (!spec.bos_id) spec.bos_id = find("<s>");
    if (!spec.eos_id) spec.eos_id = find("</s>");
    if (!model.post_processor_bos) spec.add_bos = spec.bos_id.has_value();
  }
  if (!tokenizer_config_path.empty()) {
    FERRY_RETURN_IF_ERROR(ApplyConfig(tokenizer_config_path, &model));
  }
  FERRY_RETURN_IF_ERROR(ValidateVocabSpec(spec, source));
  if (model.byte_level) {
    return std::make_unique<ByteLevelBpeTokenizer>(std::move(spec), model.byte_level_options);
  }
  return std::make_unique<SpmTokenizer>(std::move(spec), model.add_space_prefix);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Build(const std::string& tokenizer_json_path,
                                                 const std::string& tokenizer_config_path) {
  FERRY_ASSIGN_OR_RETURN(HfModel model, ReadTokenizerJson(tokenizer_json_path));
  return Finish(std::move(model), tokenizer_json_path, tokenizer_config_path);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> BuildSentencePiece(
    const std::string& model_path, const std::string& tokenizer_config_path) {
  FERRY_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(model_path));
  FERRY_ASSIGN_OR_RETURN(SentencePieceModel sp, ParseSentencePieceModel(bytes, model_path));
  HfModel model;
  model.spec = std::move(sp.spec);
  model.add_space_prefix = sp.add_dummy_prefix;
  model.post_processor_bos = model.spec.bos_id;  // SentencePiece's own BOS, as its encoder adds
  return Finish(std::move(model), model_path, tokenizer_config_path);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromHuggingFace(
    const std::string& tokenizer_json_path, const std::string& tokenizer_config_path) {
  // Every access above is checked; this only guards against a library
  // exception (e.g. allocation) escaping to the caller.
  try {
    return Build(tokenizer_json_path, tokenizer_config_path);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokenizer_json_path, ": cannot load tokenizer: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromSentencePiece(
    const std::string& model_path, const std::string& tokenizer_config_path) {
  try {
    return BuildSentencePiece(model_path, tokenizer_config_path);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_path, ": cannot load tokenizer: ", e.what()));
  }
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromHfDirectory(const std::string& dir) {
  const std::filesystem::path root(dir);
  std::error_code ec;
  std::string config = (root / "tokenizer_config.json").string();
  if (!std::filesystem::exists(config, ec)) config.clear();
  const std::string json = (root / "tokenizer.json").string();
  if (std::filesystem::exists(json, ec)) return FromHuggingFace(json, config);
  const std::string sentencepiece = (root / "tokenizer.model").string();
  if (std::filesystem::exists(sentencepiece, ec)) return FromSentencePiece(sentencepiece, config);
  return absl::NotFoundError(
      absl::StrCat(dir, ": no tokenizer (neither tokenizer.json nor tokenizer.model)"));
}

}  // namespace ferry
