// TLS for modelplane's own sockets, with OpenSSL: a server's certificate
// and settings (ServerTlsContext), and one connection's TLS engine over
// memory buffers (TlsEngine), which the libuv stream (common/uv/
// tcp_stream.h) feeds with the socket's bytes and drains into it, so that
// the event loop, not OpenSSL, owns the socket.
//
//   absl::StatusOr<std::shared_ptr<const ServerTlsContext>> ctx =
//       ServerTlsContext::Load("cert.pem", "key.pem");
//   TlsEngine tls((*ctx)->get());
//   tls.Feed(bytes_from_socket);
//   if (tls.Handshake() == TlsEngine::kDone) ... tls.Read(...) ...
//   tls.Encrypt(plain, &to_socket); tls.TakeOutput(&to_socket);
//
// Contexts are immutable once loaded and may be shared by every thread; an
// engine belongs to one thread.
#ifndef MODELPLANE_COMMON_TLS_TLS_H_
#define MODELPLANE_COMMON_TLS_TLS_H_

#include <openssl/ssl.h>

#include <cstddef>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modelplane::tls {

// A TLS server's certificate chain and key, TLS 1.2 and 1.3 only, ALPN
// "h2" preferred to "http/1.1" (no ALPN, or neither offered: the handshake
// goes on without one, and the bytes tell the protocol).
class ServerTlsContext {
 public:
  // Reads a PEM certificate chain (the server's first) and its PEM key.
  // InvalidArgument naming the file and OpenSSL's reason.
  static absl::StatusOr<std::shared_ptr<const ServerTlsContext>> Load(
      const std::string& cert_file, const std::string& key_file);
  ~ServerTlsContext();
  ServerTlsContext(const ServerTlsContext&) = delete;
  ServerTlsContext& operator=(const ServerTlsContext&) = delete;

  SSL_CTX* get() const { return ctx_; }
  // The certificate's subject and serial, for the log.
  const std::string& description() const { return description_; }

 private:
  explicit ServerTlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
  std::string description_;
};

// A TLS client's settings, for https:// upstreams: TLS 1.2 and 1.3, ALPN
// "http/1.1", the server's certificate verified against the system's roots
// (Debian's ca-certificates) or, with `ca_pem`, against those certificates
// only; `insecure` verifies nothing (the caller logs that it does).
class ClientTlsContext {
 public:
  static absl::StatusOr<std::shared_ptr<const ClientTlsContext>> Make(
      const std::string& ca_pem, bool insecure);
  ~ClientTlsContext();
  ClientTlsContext(const ClientTlsContext&) = delete;
  ClientTlsContext& operator=(const ClientTlsContext&) = delete;

  SSL_CTX* get() const { return ctx_; }
  bool verifies() const { return verifies_; }

 private:
  ClientTlsContext(SSL_CTX* ctx, bool verifies)
      : ctx_(ctx), verifies_(verifies) {}
  SSL_CTX* ctx_;
  bool verifies_;
};

// Client contexts by way of trusting (a CA's PEM, the system's roots, or
// nothing), each made once and kept: the upstream pool's and the health
// prober's. One thread.
class ClientTlsContexts {
 public:
  struct Entry {
    std::shared_ptr<const ClientTlsContext> context;
    // Names the way of trusting, short: connections trusted differently
    // are not pooled together.
    std::string key;
  };
  // `ca_pem` null or empty: the system's roots; `insecure`: nothing checked.
  // The error is ClientTlsContext::Make's.
  absl::StatusOr<const Entry*> Get(const std::string* ca_pem, bool insecure);

 private:
  std::unique_ptr<Entry> insecure_;
  std::map<std::string, Entry> by_ca_;  // "" for the system's roots.
};

// One TLS connection over memory buffers, server or client side. OpenSSL
// reads and writes them through a BIO of the engine's own (as nghttpx
// does): what is fed is kept in one string and read from it; what OpenSSL
// writes goes straight onto the caller's string during Encrypt (else into
// one held for TakeOutput). Memory BIOs would cost a copy each way and
// their BUF_MEM bookkeeping on every call.
class TlsEngine {
 public:
  // The server side. Takes a reference on `ctx` (OpenSSL's count): the
  // context may be replaced meanwhile, this connection keeps its own.
  explicit TlsEngine(SSL_CTX* ctx);
  // The client side, to `host` (a name: sent as SNI and checked against
  // the certificate; an IP address: checked against its IP entries).
  TlsEngine(SSL_CTX* ctx, const std::string& host);
  bool client() const { return client_; }
  ~TlsEngine();
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  // Bytes from the peer, for the handshake or for Read.
  void Feed(absl::string_view cipher);

  enum HandshakeResult { kDone, kMore, kFailed };
  // Advances the handshake with what was fed (its answer: TakeOutput).
  HandshakeResult Handshake();
  bool handshake_done() const { return done_; }
  // The protocol ALPN chose ("" for none), once the handshake is done.
  std::string alpn() const;
  // "TLSv1.3", once the handshake is done.
  const char* version() const;

  // Plaintext into `buf`: its length (> 0), or kNone (nothing more until
  // more is fed), kClosed (the peer's close_notify) or kError.
  static constexpr long kNone = 0;
  static constexpr long kClosed = -1;
  static constexpr long kError = -2;
  long Read(char* buf, size_t size);
  // Whether plaintext or unread bytes wait in the engine (Read would give
  // something without more being fed).
  bool HasBuffered() const;

  // Appends to `cipher` what the engine held (TakeOutput), then `plain`
  // encrypted. False on an error: `cipher` may then hold the held bytes
  // and an alert.
  bool Encrypt(absl::string_view plain, std::string* cipher);
  // What the engine has to send (handshake messages, tickets, alerts),
  // appended to `cipher`.
  void TakeOutput(std::string* cipher);
  // A close_notify alert, for TakeOutput.
  void Shutdown();

  // OpenSSL's reason for the last failure ("" if none).
  const std::string& error() const { return error_; }

 private:
  void NoteError(int ret);
  // The engines' BIO and its methods (the engine is its data).
  static const BIO_METHOD* BioMethod();
  static int BioWrite(BIO* bio, const char* data, size_t n, size_t* written);
  static int BioRead(BIO* bio, char* data, size_t n, size_t* read);
  static long BioCtrl(BIO* bio, int cmd, long num, void* ptr);
  // An idle connection keeps no buffer over this.
  static constexpr size_t kKeptBytes = 16 << 10;

  SSL* ssl_;
  std::string in_;  // Fed, not yet read by OpenSSL: from in_read_.
  size_t in_read_ = 0;
  std::string held_;   // Written by OpenSSL, for TakeOutput.
  std::string* sink_;  // Where OpenSSL writes: held_, or Encrypt's.
  bool done_ = false;
  bool client_ = false;
  std::string error_;
};

}  // namespace modelplane::tls

#endif  // MODELPLANE_COMMON_TLS_TLS_H_
