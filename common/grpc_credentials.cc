#include "common/grpc_credentials.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace ferry {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the TLS ", what, " file ", path));
  std::ostringstream out;
  out << in.rdbuf();
  if (out.str().find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("the TLS ", what, " file ", path, " is not PEM"));
  }
  return out.str();
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

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const GrpcTlsFiles& files) {
  if (!files.enabled()) return grpc::InsecureServerCredentials();
  auto pems = ReadAll(files);
  if (!pems.ok()) return pems.status();
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = pems->ca;
  options.pem_key_cert_pairs.push_back({pems->key, pems->cert});
  return grpc::SslServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const GrpcTlsFiles& files) {
  if (!files.enabled()) return grpc::InsecureChannelCredentials();
  auto pems = ReadAll(files);
  if (!pems.ok()) return pems.status();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = pems->ca;
  options.pem_private_key = pems->key;
  options.pem_cert_chain = pems->cert;
  return grpc::SslCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentialsOrInsecure(
    const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  return credentials != nullptr ? credentials : grpc::InsecureChannelCredentials();
}

}  // namespace ferry
