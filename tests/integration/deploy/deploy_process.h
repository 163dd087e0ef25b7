// Processes for the deploy tests: children that die with the test
// (PR_SET_PDEATHSIG), with extra environment, that can be signalled and
// waited for; ports; a JSON POST.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster/child_process.h"

extern char** environ;

namespace ferry::testing {

class ChildProcess {
 public:
  ChildProcess(std::vector<std::string> args, const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> env_strings;
    for (char** e = environ; *e != nullptr; ++e) env_strings.emplace_back(*e);
    for (const auto& [k, v] : env) env_strings.push_back(k + "=" + v);
    std::vector<char*> argv, envp;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
  }
  ~ChildProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  void Signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      pid_ = -1;
      return false;
    }
    return true;
  }
  // The exit code once it exits within `timeout`; -1 if it is still running.
  int WaitExit(absl::Duration timeout) {
    const absl::Time end = absl::Now() + timeout;
    while (Running() && absl::Now() < end) absl::SleepFor(absl::Milliseconds(20));
    return Running() ? -1 : exit_code_;
  }

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct HttpResult {
  int status = 0;  // 0: no response
  nlohmann::json body;
  std::string error;
};

inline HttpResult PostJson(int port, const std::string& path, const nlohmann::json& body, int timeout_s = 60) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  client.set_read_timeout(timeout_s);
  HttpResult r;
  auto res = client.Post(path.c_str(), body.dump(), "application/json");
  if (!res) {
    r.error = httplib::to_string(res.error());
    return r;
  }
  r.status = res->status;
  r.body = nlohmann::json::parse(res->body, nullptr, false);
  if (r.status != 200) r.error = res->body;
  return r;
}

inline int GetStatus(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1);
  client.set_read_timeout(5);
  auto res = client.Get(path.c_str());
  return res ? res->status : 0;
}

inline std::string DeployConfig(const std::string& role) {
  return std::string(FERRY_SOURCE_DIR) + "/deploy/k8s/base/common/config/" + role + ".yaml";
}

}  // namespace ferry::testing
