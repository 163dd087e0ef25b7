// Child processes for the cluster's process-level tests: a `ferry` role that
// dies with the test, port files, free ports.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/child_process.h"
#include "gtest/gtest.h"

namespace ferry::testing {

// A child process that dies with the test (PR_SET_PDEATHSIG), so a crashed
// or killed test leaves no scheduler or worker behind.
using Process = ::ferry::ChildProcess;

inline std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/ferry_cluster_", ::getpid(), "_", name);
}

// The port a process wrote to `file`, or 0 at the timeout.
inline int WaitForPort(const std::string& file, absl::Duration timeout = absl::Seconds(60)) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    std::ifstream in(file);
    int port = 0;
    if (in >> port && port > 0) return port;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return 0;
}

// A port that was free a moment ago (for flags that take no 0).
inline int FreePort() { return ::ferry::FreeLoopbackPort(); }

}  // namespace ferry::testing
