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
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MtlsFlags::ServerCredentials() const {
  return MakeServerCredentials(files);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MtlsFlags::ChannelCredentials() const {
  return MakeChannelCredentials(files);
}

}  // namespace ferry
