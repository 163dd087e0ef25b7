// Runs a command line for integration tests and captures what it printed.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace ferry::testing {

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout (stderr too when merged)
};

// Runs `command` through /bin/sh. With `merge_stderr` stderr is captured
// with stdout; otherwise it passes through to the test log.
inline CommandResult RunCommand(const std::string& command, bool merge_stderr = false) {
  CommandResult r;
  std::string full = command + (merge_stderr ? " 2>&1" : "");
  FILE* p = ::popen(full.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

inline std::string FerryBinary() { return std::string(FERRY_BINARY_DIR) + "/bin/ferry"; }

}  // namespace ferry::testing
