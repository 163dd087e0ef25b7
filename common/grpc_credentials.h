// gRPC transport credentials for the links between gateway, scheduler and
// workers: plaintext, or mutual TLS with a shared CA. Every role builds its
// server and channel credentials here from the same three files, so a
// cluster is either all mTLS or all plaintext.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace ferry {

// PEM files. All empty: plaintext. All set: mutual TLS, where the server asks
// for and verifies a client certificate signed by `ca_file`, and a channel
// presents `cert_file` and checks the server (certificate and host name)
// against `ca_file`. The files are read again every `reload_interval`: a
// rotated certificate, key or CA (replace the files atomically, as a
// Kubernetes secret volume does) is used for new connections from then on,
// without a restart.
struct GrpcTlsFiles {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  absl::Duration reload_interval = absl::Seconds(60);

  bool enabled() const { return !ca_file.empty() || !cert_file.empty() || !key_file.empty(); }
};

// InvalidArgument when only some of the files are given or the interval is
// under a second; NotFound when one cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const GrpcTlsFiles& files);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const GrpcTlsFiles& files);

// `credentials`, or plaintext credentials when null (options structs hold a
// null pointer by default: in-process clusters and tests stay plaintext).
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsOrInsecure(
    const std::shared_ptr<grpc::ChannelCredentials>& credentials);

}  // namespace ferry
