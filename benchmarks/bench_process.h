// Child processes for the benchmarks that run `ferry scheduler` and
// `ferry worker` as separate programs on loopback: a process that dies with
// the benchmark, the port it bound, free ports for flags that take no 0.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace ferry::bench {

// A child process running `args` (args[0] is the program's path). Killed
// (SIGKILL) and reaped when destroyed; it also dies when the benchmark dies
// (PR_SET_PDEATHSIG), so an interrupted run leaves nothing behind.
class ChildProcess {
 public:
  explicit ChildProcess(std::vector<std::string> args);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // False once it has exited (or could not be started).
  bool Running();

 private:
  pid_t pid_ = -1;
};

// The port a process wrote to `file` (its --port-file), or 0 after `timeout`
// or when `process` exits first.
int WaitForPortFile(const std::string& file, ChildProcess& process, absl::Duration timeout);

// A TCP port on 127.0.0.1 that was free a moment ago (0 if none was found).
int FreeLoopbackPort();

// The `ferry` program next to this benchmark's own executable (build/bin).
std::string FerryBesideSelf();

// A new empty directory under $TMPDIR (or /tmp); removed by the caller.
std::string MakeTempDir(const std::string& prefix);

}  // namespace ferry::bench
