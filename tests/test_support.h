// Helpers shared by tests: where shared material lives, skipping without it.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace ferry::testing {

// The shared folder: $FERRY_SHARED_DIR when set (a copy elsewhere), else the
// ../shared beside the checkout.
inline std::string SharedPath(const std::string& rel) {
  const char* env = std::getenv("FERRY_SHARED_DIR");
  return std::string(env != nullptr && *env != '\0' ? env : FERRY_SHARED_DIR) + "/" + rel;
}

}  // namespace ferry::testing

// Skips the test (with a message) when a file from ../shared is missing, as in
// a user's clone without the shared folder.
#define FERRY_REQUIRE_SHARED(path_var, rel)                                           \
  std::string path_var = ::ferry::testing::SharedPath(rel);                         \
  if (!std::filesystem::exists(path_var)) {                                          \
    GTEST_SKIP() << "shared test file " << path_var << " is absent; skipping";       \
  }
