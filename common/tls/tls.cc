#include "common/tls/tls.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace modelplane::tls {
namespace {

// OpenSSL's error queue as one line (and emptied).
std::string TakeErrors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

// Empties the thread's error queue before an SSL call, so that
// SSL_get_error after it sees only that call's errors, and only when it
// holds one (nearly never). OpenSSL 3's ERR_clear_error walks all sixteen
// slots and frees two strings in each (null nearly always; about 2,000
// instructions a call under jemalloc's free), and the read and the write
// of every request would pay it (nginx clears before every call).
void ClearStaleErrors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// ALPN, in the server's order of preference: h2, then http/1.1.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void*) {
  static const unsigned char kOurs[] = "\x02h2\x08http/1.1";
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, kOurs, sizeof(kOurs) - 1, in,
                            inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // None in common: go on without ALPN.
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

std::string Describe(X509* cert) {
  if (cert == nullptr) return "";
  char subject[256] = "";
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof(subject));
  std::string serial;
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), nullptr)) {
    if (char* hex = BN_bn2hex(bn)) {
      serial = hex;
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  return absl::StrCat(subject, " serial ", serial);
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ServerTlsContext>> ServerTlsContext::Load(
    const std::string& cert_file, const std::string& key_file) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot make a TLS context: ", TakeErrors()));
  }
  std::shared_ptr<ServerTlsContext> out(new ServerTlsContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_COMPRESSION);
  // An idle keep-alive connection holds no TLS buffers.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_alpn_select_cb(ctx, SelectAlpn, nullptr);
  // A key with a passphrase fails to load instead of OpenSSL asking for it
  // on the terminal (from the signal thread, at a SIGHUP).
  SSL_CTX_set_default_passwd_cb(
      ctx, [](char*, int, int, void*) -> int { return 0; });
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot use the certificate ", cert_file, ": ", TakeErrors()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) !=
      1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot use the key ", key_file, ": ", TakeErrors()));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the key ", key_file, " does not match the certificate ",
                     cert_file, ": ", TakeErrors()));
  }
  out->description_ = Describe(SSL_CTX_get0_certificate(ctx));
  return std::shared_ptr<const ServerTlsContext>(std::move(out));
}

ServerTlsContext::~ServerTlsContext() { SSL_CTX_free(ctx_); }

absl::StatusOr<std::shared_ptr<const ClientTlsContext>> ClientTlsContext::Make(
    const std::string& ca_pem, bool insecure) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot make a TLS context: ", TakeErrors()));
  }
  std::shared_ptr<const ClientTlsContext> out(
      new ClientTlsContext(ctx, !insecure));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  static const unsigned char kAlpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof(kAlpn) - 1);
  if (insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    return out;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (ca_pem.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      return absl::InternalError(absl::StrCat(
          "cannot load the system's CA certificates: ", TakeErrors()));
    }
    return out;
  }
  BIO* bio = BIO_new_mem_buf(ca_pem.data(), static_cast<int>(ca_pem.size()));
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  int added = 0;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    if (X509_STORE_add_cert(store, cert) == 1) ++added;
    X509_free(cert);
  }
  BIO_free(bio);
  ERR_clear_error();  // The read that found no more certificates.
  if (added == 0) {
    return absl::InvalidArgumentError("no PEM certificate in the CA file");
  }
  return out;
}

ClientTlsContext::~ClientTlsContext() { SSL_CTX_free(ctx_); }

absl::StatusOr<const ClientTlsContexts::Entry*> ClientTlsContexts::Get(
    const std::string* ca_pem, bool insecure) {
  static const std::string kSystemRoots;
  const std::string& pem = ca_pem != nullptr ? *ca_pem : kSystemRoots;
  if (insecure && insecure_ != nullptr) return insecure_.get();
  if (!insecure) {
    auto it = by_ca_.find(pem);
    if (it != by_ca_.end()) return &it->second;
  }
  absl::StatusOr<std::shared_ptr<const ClientTlsContext>> made =
      ClientTlsContext::Make(pem, insecure);
  if (!made.ok()) return made.status();
  if (insecure) {
    insecure_ = std::make_unique<Entry>(Entry{*std::move(made), "insecure"});
    return insecure_.get();
  }
  std::string key = pem.empty()
                        ? "system"
                        : absl::StrCat("ca", std::hash<std::string>()(pem));
  return &by_ca_.emplace(pem, Entry{*std::move(made), std::move(key)})
              .first->second;
}

const BIO_METHOD* TlsEngine::BioMethod() {
  // Made once and kept for the process's life.
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                 "modelplane tls engine");
    BIO_meth_set_write_ex(m, &BioWrite);
    BIO_meth_set_read_ex(m, &BioRead);
    BIO_meth_set_ctrl(m, &BioCtrl);
    BIO_meth_set_create(m, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

int TlsEngine::BioWrite(BIO* bio, const char* data, size_t n, size_t* written) {
  auto* self = static_cast<TlsEngine*>(BIO_get_data(bio));
  self->sink_->append(data, n);
  *written = n;
  return 1;
}

int TlsEngine::BioRead(BIO* bio, char* data, size_t n, size_t* read) {
  auto* self = static_cast<TlsEngine*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  size_t left = self->in_.size() - self->in_read_;
  if (left == 0) {
    BIO_set_retry_read(bio);  // More may be fed: "retry", not the end.
    *read = 0;
    return 0;
  }
  size_t k = std::min(n, left);
  memcpy(data, self->in_.data() + self->in_read_, k);
  self->in_read_ += k;
  if (self->in_read_ == self->in_.size()) {
    self->in_read_ = 0;
    if (self->in_.capacity() > kKeptBytes) {
      std::string().swap(self->in_);
    } else {
      self->in_.clear();
    }
  }
  *read = k;
  return 1;
}

long TlsEngine::BioCtrl(BIO*, int cmd, long, void*) {
  // Writes are never held back: a flush has nothing to do. Nothing else
  // (kTLS, datagrams, pushing filters) applies to this BIO.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

TlsEngine::TlsEngine(SSL_CTX* ctx) : ssl_(SSL_new(ctx)), sink_(&held_) {
  BIO* bio = BIO_new(BioMethod());
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // One reference for both: ssl_ owns it.
  SSL_set_accept_state(ssl_);
}

TlsEngine::TlsEngine(SSL_CTX* ctx, const std::string& host) : TlsEngine(ctx) {
  client_ = true;
  SSL_set_connect_state(ssl_);
  unsigned char ip[16];
  bool literal = inet_pton(AF_INET, host.c_str(), ip) == 1 ||
                 inet_pton(AF_INET6, host.c_str(), ip) == 1;
  if (literal) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_, host.c_str());
    SSL_set1_host(ssl_, host.c_str());
  }
}

TlsEngine::~TlsEngine() { SSL_free(ssl_); }

void TlsEngine::Feed(absl::string_view cipher) {
  in_.append(cipher.data(), cipher.size());
}

void TlsEngine::NoteError(int ret) {
  int e = SSL_get_error(ssl_, ret);
  std::string queue = TakeErrors();
  error_ = queue.empty() ? absl::StrCat("TLS error ", e) : queue;
  long verify = client_ ? SSL_get_verify_result(ssl_) : X509_V_OK;
  if (verify != X509_V_OK) {
    // Why the server's certificate was refused, in words.
    error_ =
        absl::StrCat(X509_verify_cert_error_string(verify), " (", error_, ")");
  }
}

TlsEngine::HandshakeResult TlsEngine::Handshake() {
  if (done_) return kDone;
  ClearStaleErrors();
  int ret = SSL_do_handshake(ssl_);
  if (ret == 1) {
    done_ = true;
    return kDone;
  }
  int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return kMore;
  NoteError(ret);
  return kFailed;
}

std::string TlsEngine::alpn() const {
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl_, &p, &n);
  return std::string(reinterpret_cast<const char*>(p), n);
}

const char* TlsEngine::version() const { return SSL_get_version(ssl_); }

long TlsEngine::Read(char* buf, size_t size) {
  ClearStaleErrors();
  int ret = SSL_read(ssl_, buf, static_cast<int>(size));
  if (ret > 0) return ret;
  int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return kNone;
  if (e == SSL_ERROR_ZERO_RETURN) return kClosed;
  NoteError(ret);
  return kError;
}

bool TlsEngine::HasBuffered() const {
  return SSL_pending(ssl_) > 0 || in_.size() > in_read_;
}

bool TlsEngine::Encrypt(absl::string_view plain, std::string* cipher) {
  TakeOutput(cipher);  // What OpenSSL wrote before, first.
  sink_ = cipher;      // The records go straight onto it.
  while (!plain.empty()) {
    ClearStaleErrors();
    // The BIO takes everything: SSL_write writes all or fails.
    int ret = SSL_write(ssl_, plain.data(), static_cast<int>(plain.size()));
    if (ret <= 0) {
      sink_ = &held_;
      NoteError(ret);
      return false;
    }
    plain.remove_prefix(static_cast<size_t>(ret));
  }
  sink_ = &held_;
  return true;
}

void TlsEngine::TakeOutput(std::string* cipher) {
  if (held_.empty()) return;
  if (cipher->empty() && cipher->capacity() < held_.size()) {
    cipher->swap(held_);
  } else {
    cipher->append(held_);
  }
  if (held_.capacity() > kKeptBytes) {
    std::string().swap(held_);
  } else {
    held_.clear();
  }
}

void TlsEngine::Shutdown() {
  if (!done_) return;
  ClearStaleErrors();
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

}  // namespace modelplane::tls
