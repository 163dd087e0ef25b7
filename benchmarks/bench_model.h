// Model loading for the benchmark programs: quiet (no progress bar) and with
// the error printed, so each program only decides its exit code.
#pragma once

#include <memory>
#include <string>

#include "engine/model.h"

namespace ferry::bench {

// The model at `path` (GGUF file or Hugging Face directory), or null after
// printing "error: ..." to stderr.
std::shared_ptr<const Model> LoadModelOrReport(const std::string& path);

}  // namespace ferry::bench
