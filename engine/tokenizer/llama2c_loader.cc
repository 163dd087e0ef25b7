// Tokenizer::FromLlama2c and ForLlama2cCheckpoint: the vocabularies that
// come with llama2.c checkpoints.
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/mapped_file.h"
#include "common/status_macros.h"
#include "engine/tokenizer/sentencepiece_model.h"
#include "engine/tokenizer/spm_tokenizer.h"
#include "engine/tokenizer/tokenizer.h"

namespace ferry {

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromLlama2c(const std::string& path,
                                                                  int vocab_size) {
  FERRY_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  const std::string_view bytes(reinterpret_cast<const char*>(file->data()), file->size());
  FERRY_ASSIGN_OR_RETURN(VocabSpec spec, ParseLlama2cVocab(bytes, vocab_size, path));
  FERRY_RETURN_IF_ERROR(ValidateVocabSpec(spec, path));
  // run.c encodes with a dummy-prefix space, as SentencePiece does.
  return std::make_unique<SpmTokenizer>(std::move(spec), /*add_space_prefix=*/true);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::ForLlama2cCheckpoint(
    const std::string& checkpoint_path, int vocab_size) {
  const std::filesystem::path dir = std::filesystem::path(checkpoint_path).parent_path();
  const std::vector<std::string> names = {"tokenizer.model",
                                          absl::StrCat("tok", vocab_size, ".model"),
                                          "tokenizer.bin", absl::StrCat("tok", vocab_size, ".bin")};
  for (const std::string& name : names) {
    const std::string path = (dir / name).string();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) continue;
    std::unique_ptr<Tokenizer> tokenizer;
    if (name.ends_with(".model")) {
      FERRY_ASSIGN_OR_RETURN(tokenizer, FromSentencePiece(path, ""));
    } else {
      FERRY_ASSIGN_OR_RETURN(tokenizer, FromLlama2c(path, vocab_size));
    }
    if (tokenizer->vocab_size() > vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": the tokenizer has ", tokenizer->vocab_size(), " tokens, more than the ",
          vocab_size, " of the checkpoint ", checkpoint_path));
    }
    return tokenizer;
  }
  return absl::NotFoundError(absl::StrCat(
      checkpoint_path, ": no tokenizer next to this llama2.c checkpoint (looked for ",
      absl::StrJoin(names, ", "), " in ", dir.empty() ? std::string(".") : dir.string(), ")"));
}

}  // namespace ferry
