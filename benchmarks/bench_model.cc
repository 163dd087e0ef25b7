#include "benchmarks/bench_model.h"

#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace ferry::bench {

std::shared_ptr<const Model> LoadModelOrReport(const std::string& path, bool map_weights,
                                               bool integer_kernels) {
  auto loaded = Model::Load(
      path, LoadOptions{
                .progress = false, .map_weights = map_weights, .integer_kernels = integer_kernels});
  if (!loaded.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(loaded.status().message()).c_str());
    return nullptr;
  }
  return std::shared_ptr<const Model>(std::move(*loaded));
}

std::optional<std::vector<int>> ParseLengthsOrReport(const std::string& list, int min_length) {
  std::vector<int> lengths;
  for (absl::string_view part : absl::StrSplit(list, ',')) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < min_length) {
      std::fprintf(stderr, "error: bad --lengths '%s' (each a number of tokens, at least %d)\n", list.c_str(),
                   min_length);
      return std::nullopt;
    }
    lengths.push_back(v);
  }
  return lengths;
}

}  // namespace ferry::bench
