// The one mapping between absl::Status and grpc::Status (their codes share
// numbering). Lives in its own library so that common/ needs no gRPC.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace ferry {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace ferry
