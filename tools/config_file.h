// The `--config FILE` of every ferry role: a flat map from flag names to
// values, written as JSON or as a small, strict subset of YAML.
//
// JSON: one object whose values are strings, numbers, booleans or arrays of
// those (an array becomes its items joined with commas, as the comma-separated
// flags take them).
//
// YAML subset (what a Kubernetes ConfigMap or a hand-written file needs, and
// nothing that could be read two ways):
//   # comment
//   ---                      optional document start (and `...` end)
//   key: value               plain scalar, up to a ` #` comment
//   key: "a \"quoted\" one"  double-quoted (\\ \" \n \t \r escapes)
//   key: 'single ''quoted'''
//   key: [a, "b", c]         flow list of scalars
//   key:                     block list of scalars
//     - a
//     - b
// Keys are flag names (`max-num-seqs`; `max_num_seqs` is the same key).
// Nested mappings, anchors, aliases, tags, block scalars (| >), multiple
// documents and duplicate keys are errors that name the line.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace ferry {

struct ConfigEntry {
  std::string key;    // as written, with '_' turned into '-'
  std::string value;  // lists joined with ','
  int line = 0;       // 1-based line of the key (JSON: 0)
};

// Largest config file accepted.
inline constexpr size_t kMaxConfigBytes = 1 << 20;

// Parses `text` (JSON when its first non-blank character is '{', else the
// YAML subset). InvalidArgument naming the line and key for anything else;
// entries come back in file order.
absl::StatusOr<std::vector<ConfigEntry>> ParseConfig(std::string_view text);

// Reads and parses `path`. NotFound when it cannot be read; InvalidArgument
// (prefixed with the path) when it does not parse or exceeds kMaxConfigBytes.
absl::StatusOr<std::vector<ConfigEntry>> LoadConfigFile(const std::string& path);

// "max-num-seqs" -> "FERRY_MAX_NUM_SEQS": the environment variable that
// overrides a flag.
std::string EnvVarForFlag(std::string_view flag_name);

}  // namespace ferry
