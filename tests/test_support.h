// Helpers shared by tests: where shared material lives, skipping without it.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "gtest/gtest.h"

namespace ferry::testing {

// The shared folder: $FERRY_SHARED_DIR when set (a copy elsewhere), else the
// ../shared beside the checkout.
inline std::string SharedPath(const std::string& rel) {
  const char* env = std::getenv("FERRY_SHARED_DIR");
  return std::string(env != nullptr && *env != '\0' ? env : FERRY_SHARED_DIR) + "/" + rel;
}

// A path under the test temp dir that no other test process uses: ctest runs
// each test as its own process, many at once, so a fixed name is written by
// one while another reads it.
inline std::string UniqueTempPath(const std::string& name) {
  return ::testing::TempDir() + "/ferry_" + std::to_string(::getpid()) + "_" + name;
}

}  // namespace ferry::testing

// Skips the test (with a message) when a file from ../shared is missing, as in
// a user's clone without the shared folder.
#define FERRY_REQUIRE_SHARED(path_var, rel)                                           \
  std::string path_var = ::ferry::testing::SharedPath(rel);                         \
  if (!std::filesystem::exists(path_var)) {                                          \
    GTEST_SKIP() << "shared test file " << path_var << " is absent; skipping";       \
  }
