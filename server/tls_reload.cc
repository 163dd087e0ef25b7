#include "server/tls_reload.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <array>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "httplib.h"

namespace ferry {
namespace {

// What tells a file changed: a rewrite, a rename over it, a symlink swap.
struct Stamp {
  bool ok = false;
  int64_t mtime_ns = 0;
  int64_t size = 0;
  uint64_t inode = 0;
  bool operator==(const Stamp&) const = default;
};

Stamp StampOf(const std::string& path) {
  Stamp s;
  if (path.empty()) return s;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return s;
  s.ok = true;
  s.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec;
  s.size = st.st_size;
  s.inode = st.st_ino;
  return s;
}

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no detail";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// One loaded set of files; owns its OpenSSL objects.
struct Identity {
  X509* cert = nullptr;
  STACK_OF(X509)* chain = nullptr;  // the certificates after the leaf
  EVP_PKEY* key = nullptr;
  X509_STORE* client_ca = nullptr;

  Identity() = default;
  Identity(const Identity&) = delete;
  Identity& operator=(const Identity&) = delete;
  ~Identity() {
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    X509_STORE_free(client_ca);
  }
};

absl::StatusOr<std::unique_ptr<Identity>> Read(const TlsFiles& f) {
  auto id = std::make_unique<Identity>();
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", OpenSslError()));
  };
  BIO* in = BIO_new_file(f.cert_file.c_str(), "r");
  if (in == nullptr) return bad(absl::StrCat("cannot read the TLS certificate ", f.cert_file));
  id->cert = PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
  if (id->cert != nullptr) {
    id->chain = sk_X509_new_null();
    while (X509* extra = PEM_read_bio_X509(in, nullptr, nullptr, nullptr)) sk_X509_push(id->chain, extra);
    ERR_clear_error();  // the end of the file reads as an error
  }
  BIO_free(in);
  if (id->cert == nullptr) return bad(absl::StrCat("the TLS certificate ", f.cert_file, " is not PEM"));
  in = BIO_new_file(f.key_file.c_str(), "r");
  if (in == nullptr) return bad(absl::StrCat("cannot read the TLS key ", f.key_file));
  id->key = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  if (id->key == nullptr) return bad(absl::StrCat("the TLS key ", f.key_file, " is not a PEM private key"));
  if (X509_check_private_key(id->cert, id->key) != 1) {
    return bad(absl::StrCat("the TLS key ", f.key_file, " does not match the certificate ", f.cert_file));
  }
  if (!f.client_ca_file.empty()) {
    id->client_ca = X509_STORE_new();
    if (X509_STORE_load_file(id->client_ca, f.client_ca_file.c_str()) != 1) {
      return bad(absl::StrCat("cannot load the TLS client CA ", f.client_ca_file));
    }
  }
  return id;
}

}  // namespace

struct ReloadingTlsIdentity::State {
  TlsFiles files;
  mutable absl::Mutex mu;
  std::unique_ptr<Identity> current ABSL_GUARDED_BY(mu);
  std::array<Stamp, 3> stamps ABSL_GUARDED_BY(mu);
  absl::Time next_check ABSL_GUARDED_BY(mu) = absl::InfinitePast();
  int reloads ABSL_GUARDED_BY(mu) = 0;

  std::array<Stamp, 3> Stamps() const {
    return {StampOf(files.cert_file), StampOf(files.key_file), StampOf(files.client_ca_file)};
  }

  // At most once per interval: loads the files again if one changed.
  void MaybeReload() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const absl::Time now = absl::Now();
    if (now < next_check) return;
    next_check = now + files.reload_interval;
    const std::array<Stamp, 3> seen = Stamps();
    if (seen == stamps) return;
    absl::StatusOr<std::unique_ptr<Identity>> fresh = Read(files);
    if (!fresh.ok()) {
      // Perhaps caught mid-write: the old set stays, and the next check tries again.
      Logger("http")->warn("TLS files changed but do not load; still serving the previous certificate: {}",
                           std::string(fresh.status().message()));
      return;
    }
    current = std::move(*fresh);
    stamps = seen;
    ++reloads;
    Logger("http")->info("TLS certificate {} loaded again", files.cert_file);
  }
};

ReloadingTlsIdentity::ReloadingTlsIdentity(const TlsFiles& files) : state_(std::make_unique<State>()) {
  state_->files = files;
}

ReloadingTlsIdentity::~ReloadingTlsIdentity() = default;

absl::StatusOr<std::shared_ptr<ReloadingTlsIdentity>> ReloadingTlsIdentity::Load(const TlsFiles& files) {
  if (files.reload_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the TLS reload interval must not be negative");
  }
  std::shared_ptr<ReloadingTlsIdentity> out(new ReloadingTlsIdentity(files));
  State& s = *out->state_;
  absl::MutexLock lock(&s.mu);
  s.stamps = s.Stamps();
  absl::StatusOr<std::unique_ptr<Identity>> first = Read(files);
  if (!first.ok()) return first.status();
  s.current = std::move(*first);
  s.next_check = absl::Now() + files.reload_interval;
  return out;
}

bool ReloadingTlsIdentity::SetUp(SSL_CTX& ctx) {
  SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION);
  if (SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION) != 1) return false;
  SSL_CTX_set_cert_cb(&ctx, &ReloadingTlsIdentity::CertCallback, this);
  if (!state_->files.client_ca_file.empty()) {
    SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  return true;
}

int ReloadingTlsIdentity::reloads() const {
  absl::MutexLock lock(&state_->mu);
  return state_->reloads;
}

int ReloadingTlsIdentity::CertCallback(SSL* ssl, void* arg) {
  return static_cast<ReloadingTlsIdentity*>(arg)->Install(ssl);
}

int ReloadingTlsIdentity::Install(SSL* ssl) {
  absl::MutexLock lock(&state_->mu);
  state_->MaybeReload();
  const Identity& id = *state_->current;
  // SSL_use_* and SSL_set1_* take their own references: a later reload may
  // free `id` while this connection still uses them.
  if (SSL_use_certificate(ssl, id.cert) != 1 || SSL_use_PrivateKey(ssl, id.key) != 1 ||
      SSL_set1_chain(ssl, id.chain) != 1) {
    return 0;
  }
  if (id.client_ca != nullptr && SSL_set1_verify_cert_store(ssl, id.client_ca) != 1) return 0;
  return 1;
}

absl::StatusOr<std::unique_ptr<httplib::Server>> MakeReloadingHttpsServer(
    const TlsFiles& files, std::shared_ptr<ReloadingTlsIdentity>* identity) {
  absl::StatusOr<std::shared_ptr<ReloadingTlsIdentity>> loaded = ReloadingTlsIdentity::Load(files);
  if (!loaded.ok()) return loaded.status();
  *identity = std::move(*loaded);
  ReloadingTlsIdentity* id = identity->get();
  auto server = std::make_unique<httplib::SSLServer>([id](SSL_CTX& ctx) { return id->SetUp(ctx); });
  if (!server->is_valid()) return absl::InternalError("cannot set up the TLS context");
  return std::unique_ptr<httplib::Server>(std::move(server));
}

}  // namespace ferry
