// TlsEngine alone: a client engine and a server engine joined in memory,
// the bytes between them passed in pieces of every size from one byte up,
// through the handshake, data both ways (records split anywhere, several
// in one piece, writes larger than a record) and close_notify.
#include "common/tls/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "common/tls/test_cert.h"
#include "gtest/gtest.h"

namespace modelplane::tls {
namespace {

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

// Each side's flight to the other, in pieces of `piece`, until both are
// done and nothing waits in the client.
void HandshakeBoth(TlsEngine& client, TlsEngine& server, size_t piece) {
  ASSERT_EQ(client.Handshake(), TlsEngine::kMore);
  for (int i = 0; i < 10 && !(client.handshake_done() &&
                              server.handshake_done() && !client.HasBuffered());
       ++i) {
    EXPECT_EQ(Deliver(server, Output(client), piece), "");
    EXPECT_EQ(Deliver(client, Output(server), piece), "");
  }
  ASSERT_TRUE(client.handshake_done());
  ASSERT_TRUE(server.handshake_done());
}

// The server's certificate and context, and a client context that checks
// nothing (verification is not what these tests are about).
class TlsEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = ServerTlsContext::Load(files_.cert, files_.key);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ctx_ = *std::move(server);
    auto client = ClientTlsContext::Make("", /*insecure=*/true);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ctx_ = *std::move(client);
  }
  SSL_CTX* server_ctx() const { return server_ctx_->get(); }
  SSL_CTX* client_ctx() const { return client_ctx_->get(); }

 private:
  TestCertFiles files_;
  std::shared_ptr<const ServerTlsContext> server_ctx_;
  std::shared_ptr<const ClientTlsContext> client_ctx_;
};

TEST_F(TlsEngineTest, BytesInPiecesOfEverySize) {
  std::string big;
  for (int i = 0; big.size() < 70000; ++i) big += std::to_string(i) + ",";
  for (size_t piece : {1, 2, 7, 100, 1000, 5000, 17000, 1 << 20}) {
    SCOPED_TRACE(piece);
    TlsEngine server(server_ctx());
    TlsEngine client(client_ctx(), "127.0.0.1");
    HandshakeBoth(client, server, piece);
    if (HasFatalFailure()) return;
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
TEST_F(TlsEngineTest, AKeyUpdateIsAnsweredBeforeTheResponse) {
  TlsEngine server(server_ctx());
  SSL* client = SSL_new(client_ctx());
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
TEST_F(TlsEngineTest, WhatTheEngineHeldGoesBeforeAWrite) {
  TlsEngine server(server_ctx());
  TlsEngine client(client_ctx(), "127.0.0.1");
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
TEST_F(TlsEngineTest, AFailedWriteAndAStaleErrorLeaveTheEngineWhole) {
  TlsEngine server(server_ctx());
  TlsEngine client(client_ctx(), "127.0.0.1");
  HandshakeBoth(client, server, 1 << 20);
  if (HasFatalFailure()) return;
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

TEST_F(TlsEngineTest, GarbageFailsTheHandshake) {
  {
    // Plaintext HTTP: refused, with no alert (the peer speaks no TLS).
    TlsEngine server(server_ctx());
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
  TlsEngine server(server_ctx());
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
