// The mutual-TLS flags every gRPC role takes (worker, scheduler, gateway,
// drain): --mtls-ca, --mtls-cert, --mtls-key. All three or none; the same
// CA signs every peer's certificate (deploy/tls/make-certs.sh).
// --mtls-reload-interval: how often the files are read again (rotation).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/grpc_credentials.h"
#include "tools/flags.h"

namespace ferry {

struct MtlsFlags {
  GrpcTlsFiles files;
  std::string reload_interval = "60s";

  void Register(FlagParser& flags);
  // `files` with the parsed reload interval; InvalidArgument for a bad one.
  absl::StatusOr<GrpcTlsFiles> Files() const;
  // Plaintext credentials when no flag is set. InvalidArgument when only
  // some are; NotFound for an unreadable file.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials() const;
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials() const;
};

}  // namespace ferry
