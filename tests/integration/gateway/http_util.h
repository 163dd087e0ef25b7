// HTTP helpers for gateway tests, on cpp-httplib's client.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "httplib.h"
#include "nlohmann/json.hpp"

namespace ferry::testing {

struct HttpResult {
  int status = -1;  // -1: no response
  std::string body;
  httplib::Headers headers;
};

inline HttpResult HttpCall(int port, const std::string& method, const std::string& path,
                           const std::string& body = "", const httplib::Headers& headers = {}) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_tcp_nodelay(true);
  cli.set_read_timeout(120, 0);
  httplib::Request req;
  req.method = method;
  req.path = path;
  req.headers = headers;
  if (!body.empty() || method == "POST") {
    req.body = body;
    req.set_header("Content-Type", "application/json");
  }
  auto res = cli.send(req);
  HttpResult r;
  if (!res) return r;
  r.status = res->status;
  r.body = res->body;
  r.headers = res->headers;
  return r;
}

inline HttpResult PostJson(int port, const std::string& path, const nlohmann::json& body,
                           const httplib::Headers& headers = {}) {
  return HttpCall(port, "POST", path, body.dump(), headers);
}

struct StreamResult {
  int status = -1;
  std::vector<std::string> events;  // the data: payloads, "[DONE]" included
  std::string raw;
};

// POSTs and reads a server-sent event stream. `on_event(payload, index)`
// returning false closes the connection there (a client going away).
inline StreamResult PostStream(int port, const std::string& path, const nlohmann::json& body,
                               const std::function<bool(const std::string&, size_t)>& on_event = nullptr,
                               const httplib::Headers& headers = {}) {
  httplib::Client cli("127.0.0.1", port);
  cli.set_tcp_nodelay(true);
  cli.set_read_timeout(300, 0);
  StreamResult out;
  std::string buffer;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.headers = headers;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.response_handler = [&](const httplib::Response& r) {
    out.status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    out.raw.append(data, len);
    buffer.append(data, len);
    size_t end;
    while ((end = buffer.find("\n\n")) != std::string::npos) {
      std::string block = buffer.substr(0, end);
      buffer.erase(0, end + 2);
      if (block.rfind("data: ", 0) != 0) continue;
      out.events.push_back(block.substr(6));
      if (on_event && !on_event(out.events.back(), out.events.size() - 1)) return false;
    }
    return true;
  };
  auto res = cli.send(req);
  if (res && out.status < 0) out.status = res->status;
  return out;
}

}  // namespace ferry::testing
