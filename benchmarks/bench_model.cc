#include "benchmarks/bench_model.h"

#include <cstdio>

namespace ferry::bench {

std::shared_ptr<const Model> LoadModelOrReport(const std::string& path) {
  auto loaded = Model::Load(path, LoadOptions{.progress = false});
  if (!loaded.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(loaded.status().message()).c_str());
    return nullptr;
  }
  return std::shared_ptr<const Model>(std::move(*loaded));
}

}  // namespace ferry::bench
