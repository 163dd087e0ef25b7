// Model loading for the benchmark programs: quiet (no progress bar) and with
// the error printed, so each program only decides its exit code.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/model.h"

namespace ferry::bench {

// The model at `path` (GGUF file or Hugging Face directory), or null after
// printing "error: ..." to stderr. `map_weights`: see LoadOptions.
std::shared_ptr<const Model> LoadModelOrReport(const std::string& path, bool map_weights = false,
                                               bool integer_kernels = true);

// A `--lengths` list ("256,1024,..."), each at least `min_length`; nullopt
// after printing "error: ..." to stderr.
std::optional<std::vector<int>> ParseLengthsOrReport(const std::string& list, int min_length);

}  // namespace ferry::bench
