// Child processes for the programs and tests that run `ferry` roles as
// separate processes on loopback: a process that dies with its parent, and
// free ports for flags that take no 0.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace ferry {

// A child process running `args` (args[0] is the program's path) with this
// process's environment plus `env` (NAME -> value, later entries win). Killed (SIGKILL) and reaped when destroyed;
// it also dies when its parent dies (PR_SET_PDEATHSIG), so an interrupted
// benchmark or a crashed test leaves nothing behind.
class ChildProcess {
 public:
  explicit ChildProcess(std::vector<std::string> args, const std::map<std::string, std::string>& env = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Sends `sig` and reaps the process (no-op once it is gone).
  void Kill(int sig);
  // Sends `sig` without waiting (SIGSTOP, SIGCONT).
  void Signal(int sig);
  // False once it has exited (reaped here) or could not be started.
  bool Running();
  // The exit code (128 + signal for a signal) once it exits within
  // `timeout`; -1 if it is still running.
  int WaitExit(absl::Duration timeout);
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago (0 if none was found).
int FreeLoopbackPort();

}  // namespace ferry
