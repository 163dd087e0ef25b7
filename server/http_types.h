// Plain HTTP request and response values, so the gateway's handlers know
// nothing of the HTTP library (which lives only in http_server.cc).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // decoded, without the query
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string remote_address;

  // The first header named `name` (case-insensitive), or empty.
  std::string Header(std::string_view name) const;
};

// Where a streamed response body goes. Write returns false once the client
// is gone; the producer should then stop.
class ChunkWriter {
 public:
  virtual ~ChunkWriter() = default;
  virtual bool Write(std::string_view data) = 0;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  // When set, the body is produced by this call (chunked transfer), on the
  // HTTP thread, after the status and headers went out.
  std::function<void(ChunkWriter&)> stream;
};

}  // namespace ferry
