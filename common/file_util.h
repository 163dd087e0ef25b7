// Small whole-file reads (configs, tokenizer files, templates, PEM files).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace ferry {

// The bytes of the file at `path`. NotFound ("PATH: cannot open") when it
// cannot be opened, DataLoss when reading fails part way.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace ferry
