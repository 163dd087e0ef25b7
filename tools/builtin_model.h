// The model Ferry serves when no --model is given: the tiny preset of
// make-model, generated once into the cache directory.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace ferry {

// $FERRY_CACHE_DIR, else $XDG_CACHE_HOME/ferry, else ~/.cache/ferry.
std::string CacheDir();

// Returns the built-in model's directory, generating it on first use.
absl::StatusOr<std::string> EnsureBuiltinModel();

}  // namespace ferry
