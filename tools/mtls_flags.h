// The mutual-TLS flags every gRPC role takes (worker, scheduler, gateway,
// drain): --mtls-ca, --mtls-cert, --mtls-key. All three or none; the same
// CA signs every peer's certificate (deploy/tls/make-certs.sh).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/grpc_credentials.h"
#include "tools/flags.h"

namespace ferry {

struct MtlsFlags {
  GrpcTlsFiles files;

  void Register(FlagParser& flags);
  // Plaintext credentials when no flag is set. InvalidArgument when only
  // some are; NotFound for an unreadable file.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials() const;
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials() const;
};

}  // namespace ferry
