// TlsEngine alone: a client engine and a server engine joined in memory,
// the bytes between them passed in pieces of every size from one byte up,
// through the handshake, data both ways (records split anywhere, several
// in one piece, writes larger than a record) and close_notify.
#include "common/tls/tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace modelplane::tls {
namespace {

// A self-signed P-256 certificate and its key, as PEM files.
struct CertFiles {
  std::string dir, cert, key;
  CertFiles() {
    const char* tmp = getenv("TEST_TMPDIR");
    std::string templ =
        std::string(tmp != nullptr ? tmp : "/tmp") + "/tls_test.XXXXXX";
    dir = mkdtemp(templ.data());
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    EVP_PKEY* pkey = EVP_EC_gen("P-256");
    X509* x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pkey);
    X509_NAME* name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("test"),
                               -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, pkey, EVP_sha256());
    FILE* f = fopen(cert.c_str(), "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key.c_str(), "w");
    PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pkey);
  }
  ~CertFiles() {
    unlink(cert.c_str());
    unlink(key.c_str());
    rmdir(dir.c_str());
  }
};

// Everything `from` has to send, encrypted `plain` first if given.
std::string Output(TlsEngine& from, const std::string& plain = "") {
  std::string out;
  if (!plain.empty()) {
    EXPECT_TRUE(from.Encrypt(plain, &out)) << from.error();
  }
  from.TakeOutput(&out);
  return out;
}

// Feeds `bytes` to `to` in pieces of `piece`, reading after each, and
// returns the plaintext; `closed` is set on the peer's close_notify.
std::string Deliver(TlsEngine& to, const std::string& bytes, size_t piece,
                    bool* closed = nullptr) {
  std::string plain;
  char buf[4096];
  for (size_t at = 0; at < bytes.size(); at += piece) {
    to.Feed(absl::string_view(bytes).substr(at, piece));
    if (!to.handshake_done()) {
      EXPECT_NE(to.Handshake(), TlsEngine::kFailed) << to.error();
      if (!to.handshake_done()) continue;
    }
    for (;;) {
      long n = to.Read(buf, sizeof(buf));
      if (n > 0) {
        plain.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == TlsEngine::kClosed && closed != nullptr) *closed = true;
      EXPECT_NE(n, TlsEngine::kError) << to.error();
      break;
    }
  }
  EXPECT_FALSE(to.HasBuffered());
  return plain;
}

TEST(TlsEngineTest, BytesInPiecesOfEverySize) {
  CertFiles files;
  auto server_ctx = ServerTlsContext::Load(files.cert, files.key);
  ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
  auto client_ctx = ClientTlsContext::Make("", /*insecure=*/true);
  ASSERT_TRUE(client_ctx.ok()) << client_ctx.status();
  std::string big;
  for (int i = 0; big.size() < 70000; ++i) big += std::to_string(i) + ",";
  for (size_t piece : {1, 2, 7, 100, 1000, 5000, 17000, 1 << 20}) {
    SCOPED_TRACE(piece);
    TlsEngine server((*server_ctx)->get());
    TlsEngine client((*client_ctx)->get(), "127.0.0.1");
    ASSERT_EQ(client.Handshake(), TlsEngine::kMore);
    // The handshake: each side's flight to the other, until both are done.
    for (int i = 0;
         i < 10 && !(client.handshake_done() && server.handshake_done() &&
                     !client.HasBuffered());
         ++i) {
      EXPECT_EQ(Deliver(server, Output(client), piece), "");
      EXPECT_EQ(Deliver(client, Output(server), piece), "");
    }
    ASSERT_TRUE(client.handshake_done());
    ASSERT_TRUE(server.handshake_done());
    // Small and large, one write and several before a delivery (the
    // records of all of them in one stream, cut anywhere).
    EXPECT_EQ(Deliver(server, Output(client, "GET / HTTP/1.1\r\n\r\n"), piece),
              "GET / HTTP/1.1\r\n\r\n");
    std::string two = Output(server, big);
    EXPECT_TRUE(server.Encrypt("and more", &two));
    EXPECT_EQ(Deliver(client, two, piece), big + "and more");
    EXPECT_EQ(Deliver(server, Output(client, big), piece), big);
    // close_notify ends it.
    server.Shutdown();
    bool closed = false;
    EXPECT_EQ(Deliver(client, Output(server), piece, &closed), "");
    EXPECT_TRUE(closed);
  }
}

// A key update the client asks for with its request: the server's own
// update (OpenSSL sends it with the next write) and the response under the
// new key reach the client in order, and it reads the response. The client
// is OpenSSL on memory BIOs, to ask for the update.
TEST(TlsEngineTest, AKeyUpdateIsAnsweredBeforeTheResponse) {
  CertFiles files;
  auto server_ctx = ServerTlsContext::Load(files.cert, files.key);
  ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
  auto client_ctx = ClientTlsContext::Make("", /*insecure=*/true);
  ASSERT_TRUE(client_ctx.ok()) << client_ctx.status();
  TlsEngine server((*server_ctx)->get());
  SSL* client = SSL_new((*client_ctx)->get());
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(in, -1);
  SSL_set_bio(client, in, out);
  SSL_set_connect_state(client);
  auto client_output = [&] {
    std::string bytes(BIO_ctrl_pending(out), '\0');
    BIO_read(out, bytes.data(), static_cast<int>(bytes.size()));
    return bytes;
  };
  for (int i = 0;
       i < 10 && !(SSL_is_init_finished(client) && server.handshake_done());
       ++i) {
    SSL_do_handshake(client);
    EXPECT_EQ(Deliver(server, client_output(), 1 << 20), "");
    std::string flight = Output(server);
    BIO_write(in, flight.data(), static_cast<int>(flight.size()));
  }
  ASSERT_TRUE(server.handshake_done());
  ASSERT_EQ(SSL_key_update(client, SSL_KEY_UPDATE_REQUESTED), 1);
  ASSERT_EQ(SSL_write(client, "ping", 4), 4);
  // The server reads the update and the request, then answers.
  server.Feed(client_output());
  char buf[64];
  ASSERT_EQ(server.Read(buf, sizeof(buf)), 4);
  std::string answer;
  ASSERT_TRUE(server.Encrypt("pong", &answer)) << server.error();
  server.TakeOutput(&answer);
  BIO_write(in, answer.data(), static_cast<int>(answer.size()));
  int n = SSL_read(client, buf, sizeof(buf));
  ASSERT_EQ(n, 4) << SSL_get_error(client, n);
  EXPECT_EQ(std::string(buf, 4), "pong");
  SSL_free(client);
}

// The client's Finished, made when it reads the server's flight, waits in
// the engine; a write before anyone takes it puts it ahead of the
// request's records (the server refuses data before the Finished).
TEST(TlsEngineTest, WhatTheEngineHeldGoesBeforeAWrite) {
  CertFiles files;
  auto server_ctx = ServerTlsContext::Load(files.cert, files.key);
  ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
  auto client_ctx = ClientTlsContext::Make("", /*insecure=*/true);
  ASSERT_TRUE(client_ctx.ok()) << client_ctx.status();
  TlsEngine server((*server_ctx)->get());
  TlsEngine client((*client_ctx)->get(), "127.0.0.1");
  ASSERT_EQ(client.Handshake(), TlsEngine::kMore);
  EXPECT_EQ(Deliver(server, Output(client), 1 << 20), "");
  client.Feed(Output(server));
  ASSERT_EQ(client.Handshake(), TlsEngine::kDone);
  std::string out;  // No TakeOutput first: the Finished is still held.
  ASSERT_TRUE(client.Encrypt("GET / HTTP/1.1\r\n\r\n", &out));
  EXPECT_EQ(Deliver(server, out, 1 << 20), "GET / HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(server.handshake_done());
}

// A write that fails (after close_notify) leaves the engine whole: what
// OpenSSL writes later goes to the engine, not to the failed write's
// string, long gone (ASan would see it). An error left in the thread's
// OpenSSL queue by someone else does not fail the next read.
TEST(TlsEngineTest, AFailedWriteAndAStaleErrorLeaveTheEngineWhole) {
  CertFiles files;
  auto server_ctx = ServerTlsContext::Load(files.cert, files.key);
  ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
  auto client_ctx = ClientTlsContext::Make("", /*insecure=*/true);
  ASSERT_TRUE(client_ctx.ok()) << client_ctx.status();
  TlsEngine server((*server_ctx)->get());
  TlsEngine client((*client_ctx)->get(), "127.0.0.1");
  ASSERT_EQ(client.Handshake(), TlsEngine::kMore);
  for (int i = 0; i < 10 && !(client.handshake_done() &&
                              server.handshake_done() && !client.HasBuffered());
       ++i) {
    EXPECT_EQ(Deliver(server, Output(client), 1 << 20), "");
    EXPECT_EQ(Deliver(client, Output(server), 1 << 20), "");
  }
  ASSERT_TRUE(server.handshake_done());
  // Stale errors: nothing fed is "nothing yet", not an error.
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
  char buf[64];
  EXPECT_EQ(server.Read(buf, sizeof(buf)), TlsEngine::kNone) << server.error();
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_LENGTH);
  EXPECT_EQ(Deliver(server, Output(client, "after"), 1), "after");
  server.Shutdown();
  std::string notify = Output(server);
  {
    std::string gone;
    EXPECT_FALSE(server.Encrypt("too late", &gone));
  }
  ERR_clear_error();
  // The client's close_notify in answer: read, and any answer OpenSSL
  // writes goes to the engine.
  client.Feed(notify);
  EXPECT_EQ(client.Read(buf, sizeof(buf)), TlsEngine::kClosed);
  client.Shutdown();
  bool closed = false;
  EXPECT_EQ(Deliver(server, Output(client), 1 << 20, &closed), "");
  EXPECT_TRUE(closed);
  std::string rest;
  server.TakeOutput(&rest);
}

TEST(TlsEngineTest, GarbageFailsTheHandshake) {
  CertFiles files;
  auto server_ctx = ServerTlsContext::Load(files.cert, files.key);
  ASSERT_TRUE(server_ctx.ok()) << server_ctx.status();
  {
    // Plaintext HTTP: refused, with no alert (the peer speaks no TLS).
    TlsEngine server((*server_ctx)->get());
    server.Feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(server.Handshake(), TlsEngine::kFailed);
    EXPECT_NE(server.error().find("http request"), std::string::npos)
        << server.error();
    std::string nothing;
    server.TakeOutput(&nothing);
    EXPECT_EQ(nothing, "");
  }
  // A handshake record that holds a broken ClientHello: refused, and the
  // alert saying so is the engine's output (a fatal alert record: 21).
  TlsEngine server((*server_ctx)->get());
  server.Feed(
      absl::string_view("\x16\x03\x01\x00\x05\x01\x00\x00\x01\xff", 10));
  EXPECT_EQ(server.Handshake(), TlsEngine::kFailed);
  std::string alert;
  server.TakeOutput(&alert);
  ASSERT_FALSE(alert.empty());
  EXPECT_EQ(alert[0], '\x15');
}

}  // namespace
}  // namespace modelplane::tls
