// Errors inside the gateway are absl::Status values; this is the one place
// that turns them into HTTP statuses and OpenAI error bodies:
//   {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// A status may carry the offending parameter, an error code string, an
// explicit HTTP status (413, 405) and a Retry-After hint as payloads.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "server/http_types.h"

namespace ferry {

// InvalidArgument naming the request field at fault.
absl::Status InvalidParamError(std::string_view param, std::string_view message);

absl::Status WithParam(absl::Status status, std::string_view param);
absl::Status WithErrorCode(absl::Status status, std::string_view code);
absl::Status WithHttpStatus(absl::Status status, int http_status);
absl::Status WithRetryAfter(absl::Status status, int seconds);

// The HTTP status for `status`: its explicit one, else by code
// (InvalidArgument/OutOfRange/FailedPrecondition 400, Unauthenticated 401,
// PermissionDenied 403, NotFound 404, ResourceExhausted 429, Unavailable 503,
// DeadlineExceeded 504, Unimplemented 501, others 500).
int HttpStatusFor(const absl::Status& status);

// The OpenAI error body for `status`: {"error": {...}} as compact JSON.
std::string ErrorBody(const absl::Status& status);

// A complete JSON error response for a non-OK `status`.
HttpResponse ErrorResponse(const absl::Status& status);

}  // namespace ferry
