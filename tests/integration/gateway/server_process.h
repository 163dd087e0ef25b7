// Starts a `ferry` server role (serve, gateway, worker) as a child process
// on a free loopback port for a test, and stops it. The child dies with the
// test process (PR_SET_PDEATHSIG), so nothing outlives a crashed test.
#pragma once

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/process_util.h"

namespace ferry::testing {

class ServerProcess {
 public:
  // Runs `ferry <args...> --port-file F` (the role's flags must bind port
  // 0) with extra environment entries, and waits up to `timeout` for the
  // port. port() is 0 when it did not come up.
  ServerProcess(std::vector<std::string> args, std::vector<std::pair<std::string, std::string>> env = {},
                std::chrono::seconds timeout = std::chrono::seconds(60)) {
    static int counter = 0;
    std::string base = std::string(::testing::TempDir()) + "/ferry-server-" + std::to_string(::getpid()) + "-" +
                       std::to_string(counter++);
    port_file_ = base + ".port";
    log_file_ = base + ".log";
    std::filesystem::remove(port_file_);
    args.push_back("--port-file");
    args.push_back(port_file_);
    std::string binary = FerryBinary();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
      FILE* log = std::fopen(log_file_.c_str(), "w");
      if (log != nullptr) {
        ::dup2(fileno(log), 1);
        ::dup2(fileno(log), 2);
      }
      std::vector<char*> argv;
      argv.push_back(binary.data());
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(binary.c_str(), argv.data());
      std::_Exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(port_file_);
      int port = 0;
      if (in >> port && port > 0) {
        port_ = port;
        break;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  ~ServerProcess() { Stop(SIGKILL, std::chrono::seconds(10)); }

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const {
    std::ifstream in(log_file_);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  // Sends `sig` (none when 0) and waits up to `timeout` for the exit;
  // returns the exit code (128 + signal when killed; -1 if it had to be
  // killed at the end).
  int Stop(int sig = SIGTERM, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    if (pid_ <= 0) return exit_code_;
    if (sig != 0) ::kill(pid_, sig);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_code_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    exit_code_ = -1;
    return exit_code_;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  int exit_code_ = -1;
  std::string port_file_;
  std::string log_file_;
};

}  // namespace ferry::testing
