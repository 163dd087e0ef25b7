// Processes for the deploy tests: children that die with the test
// (PR_SET_PDEATHSIG), with extra environment, that can be signalled and
// waited for; ports; a JSON POST.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/child_process.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/integration/cluster/child_process.h"

namespace ferry::testing {

using ChildProcess = ::ferry::ChildProcess;

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
