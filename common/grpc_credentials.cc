#include "common/grpc_credentials.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"

namespace ferry {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  auto text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("cannot read the TLS ", what, " file ",
                                                           path, ": ", text.status().message()));
  }
  if (text->find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("the TLS ", what, " file ", path, " is not PEM"));
  }
  return text;
}

struct Pems {
  std::string ca;
  std::string cert;
  std::string key;
};

absl::StatusOr<Pems> ReadAll(const GrpcTlsFiles& f) {
  if (f.ca_file.empty() || f.cert_file.empty() || f.key_file.empty()) {
    return absl::InvalidArgumentError(
        "mutual TLS needs all of --mtls-ca, --mtls-cert and --mtls-key (or none of them)");
  }
  if (f.reload_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError("the mutual-TLS reload interval must be at least 1s");
  }
  Pems p;
  auto ca = ReadPem(f.ca_file, "CA");
  if (!ca.ok()) return ca.status();
  auto cert = ReadPem(f.cert_file, "certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadPem(f.key_file, "key");
  if (!key.ok()) return key.status();
  p.ca = std::move(*ca);
  p.cert = std::move(*cert);
  p.key = std::move(*key);
  return p;
}

// gRPC's file watcher: it reads the three files now and again every
// interval, keeping the last good set when a read fails.
std::shared_ptr<grpc::experimental::CertificateProviderInterface> Watcher(const GrpcTlsFiles& f) {
  return std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      f.key_file, f.cert_file, f.ca_file, static_cast<unsigned>(absl::ToInt64Seconds(f.reload_interval)));
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const GrpcTlsFiles& files) {
  if (!files.enabled()) return grpc::InsecureServerCredentials();
  // Read once here so that a bad file is an error at start, not a refused
  // handshake later.
  auto pems = ReadAll(files);
  if (!pems.ok()) return pems.status();
  grpc::experimental::TlsServerCredentialsOptions options(Watcher(files));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const GrpcTlsFiles& files) {
  if (!files.enabled()) return grpc::InsecureChannelCredentials();
  auto pems = ReadAll(files);
  if (!pems.ok()) return pems.status();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(Watcher(files));
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_verify_server_certs(true);
  options.set_certificate_verifier(std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsOrInsecure(
    const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  return credentials != nullptr ? credentials : grpc::InsecureChannelCredentials();
}

}  // namespace ferry
