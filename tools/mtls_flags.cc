#include "tools/mtls_flags.h"

namespace ferry {

void MtlsFlags::Register(FlagParser& flags) {
  flags.AddString(
      "mtls-ca", &files.ca_file,
      "PEM CA that signs every cluster peer's certificate: turns on mutual TLS for gRPC "
      "(with --mtls-cert and --mtls-key)");
  flags.AddString("mtls-cert", &files.cert_file,
                  "PEM certificate this process presents to its gRPC peers");
  flags.AddString("mtls-key", &files.key_file, "PEM private key of --mtls-cert");
  flags.AddString("mtls-reload-interval", &reload_interval,
                  "how often the three mutual-TLS files are read again: rotated certificates are used for new "
                  "connections without a restart (at least 1s)");
}

absl::StatusOr<GrpcTlsFiles> MtlsFlags::Files() const {
  absl::Duration d;
  if (!absl::ParseDuration(reload_interval, &d) || d < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--mtls-reload-interval must be a duration of at least 1s, got '" +
                                      reload_interval + "'");
  }
  GrpcTlsFiles out = files;
  out.reload_interval = d;
  return out;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MtlsFlags::ServerCredentials() const {
  absl::StatusOr<GrpcTlsFiles> f = Files();
  if (!f.ok()) return f.status();
  return MakeServerCredentials(*f);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MtlsFlags::ChannelCredentials() const {
  absl::StatusOr<GrpcTlsFiles> f = Files();
  if (!f.ok()) return f.status();
  return MakeChannelCredentials(*f);
}

}  // namespace ferry
