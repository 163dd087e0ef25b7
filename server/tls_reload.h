// HTTPS identity for the HTTP servers (the gateway, and the metrics port of
// the cluster roles): a certificate chain and key, and for mutual TLS a
// client CA, read from PEM files and read again when they change, so a
// rotated certificate (cert-manager, a renewed Kubernetes secret) is served
// from the next handshake on without a restart. The files are checked at a
// handshake at most once per reload interval (by modification time, size
// and inode, so a secret volume's symlink swap counts); a set that does not
// load (a half-written file, a key that does not match) is logged and the
// last good one stays in use.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace ferry {

struct TlsFiles {
  std::string cert_file;       // PEM chain, leaf first
  std::string key_file;        // PEM private key of the leaf
  std::string client_ca_file;  // PEM CA a client must present a certificate of; empty: none asked
  absl::Duration reload_interval = absl::Seconds(60);
};

class ReloadingTlsIdentity {
 public:
  // Reads the files: InvalidArgument naming them when they do not load (not
  // PEM, a key that does not match the certificate, an unreadable CA).
  static absl::StatusOr<std::shared_ptr<ReloadingTlsIdentity>> Load(const TlsFiles& files);
  ~ReloadingTlsIdentity();
  ReloadingTlsIdentity(const ReloadingTlsIdentity&) = delete;
  ReloadingTlsIdentity& operator=(const ReloadingTlsIdentity&) = delete;

  // Sets `ctx` up to serve this identity (TLS 1.2 or later, the certificate
  // picked per handshake; with a client CA, a verified client certificate
  // required). `this` must outlive every connection of `ctx`.
  bool SetUp(SSL_CTX& ctx);

  // Times the files were loaded again after a change (for tests and logs).
  int reloads() const;

 private:
  explicit ReloadingTlsIdentity(const TlsFiles& files);
  static int CertCallback(SSL* ssl, void* arg);
  int Install(SSL* ssl);

  struct State;
  std::unique_ptr<State> state_;
};

// An httplib HTTPS server with the identity of `files` (ReloadingTlsIdentity
// below), which is stored in `identity` and must outlive the server. Load's
// InvalidArgument when the files do not load; Internal when the TLS context
// cannot be set up.
absl::StatusOr<std::unique_ptr<httplib::Server>> MakeReloadingHttpsServer(
    const TlsFiles& files, std::shared_ptr<ReloadingTlsIdentity>* identity);

}  // namespace ferry
