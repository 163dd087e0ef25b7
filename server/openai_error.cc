#include "server/openai_error.h"

#include <string>

#include "absl/strings/numbers.h"
#include "common/strings.h"
#include "nlohmann/json.hpp"

namespace ferry {
namespace {

constexpr char kParamUrl[] = "ferry/param";
constexpr char kCodeUrl[] = "ferry/code";
constexpr char kHttpStatusUrl[] = "ferry/http_status";
constexpr char kRetryAfterUrl[] = "ferry/retry_after";

absl::Status WithPayload(absl::Status status, const char* url, std::string_view value) {
  if (!status.ok()) status.SetPayload(url, absl::Cord(Sv(value)));
  return status;
}

std::optional<std::string> Payload(const absl::Status& status, const char* url) {
  auto p = status.GetPayload(url);
  if (!p) return std::nullopt;
  return std::string(*p);
}

const char* ErrorType(int http_status) {
  switch (http_status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable_error";
    case 504: return "timeout_error";
    default: return http_status >= 500 ? "server_error" : "invalid_request_error";
  }
}

}  // namespace

absl::Status InvalidParamError(std::string_view param, std::string_view message) {
  return WithParam(absl::InvalidArgumentError(Sv(message)), param);
}

absl::Status WithParam(absl::Status status, std::string_view param) {
  return WithPayload(std::move(status), kParamUrl, param);
}

absl::Status WithErrorCode(absl::Status status, std::string_view code) {
  return WithPayload(std::move(status), kCodeUrl, code);
}

absl::Status WithHttpStatus(absl::Status status, int http_status) {
  return WithPayload(std::move(status), kHttpStatusUrl, std::to_string(http_status));
}

absl::Status WithRetryAfter(absl::Status status, int seconds) {
  return WithPayload(std::move(status), kRetryAfterUrl, std::to_string(seconds));
}

int HttpStatusFor(const absl::Status& status) {
  if (auto explicit_status = Payload(status, kHttpStatusUrl)) {
    int v = 0;
    if (absl::SimpleAtoi(*explicit_status, &v) && v >= 400 && v < 600) return v;
  }
  switch (status.code()) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists: return 409;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

std::string ErrorBody(const absl::Status& status) {
  int http = HttpStatusFor(status);
  nlohmann::ordered_json error;
  std::string message(status.message());
  if (message.empty()) message = absl::StatusCodeToString(status.code());
  error["message"] = message;
  error["type"] = ErrorType(http);
  auto param = Payload(status, kParamUrl);
  error["param"] = param ? nlohmann::ordered_json(*param) : nlohmann::ordered_json(nullptr);
  auto code = Payload(status, kCodeUrl);
  error["code"] = code ? nlohmann::ordered_json(*code) : nlohmann::ordered_json(nullptr);
  nlohmann::ordered_json body;
  body["error"] = std::move(error);
  return body.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

HttpResponse ErrorResponse(const absl::Status& status) {
  HttpResponse r;
  r.status = HttpStatusFor(status);
  r.body = ErrorBody(status);
  if (auto retry = Payload(status, kRetryAfterUrl)) r.headers.emplace_back("Retry-After", *retry);
  if (r.status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

}  // namespace ferry
