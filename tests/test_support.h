// Helpers shared by tests: where shared material lives, skipping without it.
#pragma once

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace ferry::testing {

inline std::string SharedPath(const std::string& rel) {
  return std::string(FERRY_SHARED_DIR) + "/" + rel;
}

}  // namespace ferry::testing

// Skips the test (with a message) when a file from ../shared is missing, as in
// a user's clone without the shared folder.
#define FERRY_REQUIRE_SHARED(path_var, rel)                                           \
  std::string path_var = ::ferry::testing::SharedPath(rel);                         \
  if (!std::filesystem::exists(path_var)) {                                          \
    GTEST_SKIP() << "shared test file " << path_var << " is absent; skipping";       \
  }
