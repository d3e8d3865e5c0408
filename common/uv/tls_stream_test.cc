// TcpStream with TLS (EnableServerTls) over real loopback sockets: the
// server side is the stream on a libuv loop, the client OpenSSL on a
// blocking socket in a thread of its own. Every wait is bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/tls/test_cert.h"
#include "common/tls/tls.h"
#include "common/uv/tcp_stream.h"
#include "gtest/gtest.h"

namespace modelplane::uv {
namespace {

class Server : public TcpStream::Handler {
 public:
  void OnStreamRead(absl::string_view data) override {
    read.append(data.data(), data.size());
    ++reads;
    if (on_read) on_read(data);
  }
  void OnStreamEof() override { ++eofs; }
  void OnStreamError(int status) override {
    errors.push_back(status);
    stream->Close();
  }
  void OnStreamWritten(size_t) override {}
  void OnStreamSecured(absl::string_view a) override {
    alpn = std::string(a);
    ++secured;
    if (on_secured) on_secured();
  }

  TcpStream* stream = nullptr;
  std::string read;
  int reads = 0;
  std::function<void(absl::string_view)> on_read;
  std::function<void()> on_secured;
  int eofs = 0;
  std::vector<int> errors;
  std::string alpn;
  int secured = 0;
};

class TlsStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ctx = tls::ServerTlsContext::Load(files_.cert, files_.key);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    ctx_ = *ctx;
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ASSERT_EQ(uv_tcp_init(&loop_, &listener_), 0);
    listener_.data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    ASSERT_EQ(uv_tcp_bind(&listener_, reinterpret_cast<sockaddr*>(&addr), 0),
              0);
    ASSERT_EQ(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 8,
                        [](uv_stream_t* l, int) {
                          auto* t = static_cast<TlsStreamTest*>(l->data);
                          ASSERT_EQ(uv_accept(l, t->stream_.stream()), 0);
                          t->stream_.EnableServerTls(t->ctx_->get());
                          t->stream_.StartReading();
                          t->accepted_ = true;
                        }),
              0);
    int len = sizeof(addr);
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    addr_ = addr;
    stream_.Init(&loop_, &server_, buffer_, sizeof(buffer_));
    server_.stream = &stream_;
  }

  void TearDown() override {
    if (client_.joinable()) client_.join();
    stream_.Close();
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  // Turns the loop until `done`, at most ~20 s.
  bool Turn(const std::function<bool()>& done) {
    for (int i = 0; i < 20000; ++i) {
      if (done()) return true;
      uv_run(&loop_, UV_RUN_NOWAIT);
      usleep(1000);
    }
    return done();
  }

  // Runs `body(ssl)` in a thread on a TLS client connected to the stream
  // (ALPN "h2, http/1.1"; the certificate is not checked). `plain`: no
  // TLS, `body` gets a null SSL and the socket.
  void Client(std::function<void(SSL*, int)> body, bool plain = false) {
    client_ = std::thread([this, body, plain] {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      if (connect(fd, reinterpret_cast<sockaddr*>(&addr_), sizeof(addr_)) !=
          0) {
        client_failed_ = true;
        close(fd);
        return;
      }
      timeval tv{20, 0};
      setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      if (plain) {
        body(nullptr, fd);
        close(fd);
        client_done_ = true;
        return;
      }
      SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
      static const unsigned char kAlpn[] = "\x02h2\x08http/1.1";
      SSL_CTX_set_alpn_protos(cctx, kAlpn, sizeof(kAlpn) - 1);
      SSL* ssl = SSL_new(cctx);
      SSL_set_fd(ssl, fd);
      if (SSL_connect(ssl) == 1) {
        body(ssl, fd);
      } else {
        client_failed_ = true;
      }
      SSL_free(ssl);
      SSL_CTX_free(cctx);
      close(fd);
      client_done_ = true;
    });
  }

  static std::string ReadExactly(SSL* ssl, size_t n) {
    std::string out;
    char buf[16384];
    while (out.size() < n) {
      int r = SSL_read(ssl, buf, sizeof(buf));
      if (r <= 0) break;
      out.append(buf, static_cast<size_t>(r));
    }
    return out;
  }

  tls::TestCertFiles files_;
  std::shared_ptr<const tls::ServerTlsContext> ctx_;
  uv_loop_t loop_;
  uv_tcp_t listener_;
  sockaddr_in addr_{};
  TcpStream stream_;
  Server server_;
  char buffer_[65536];
  bool accepted_ = false;
  std::thread client_;
  std::atomic<bool> client_done_{false};
  std::atomic<bool> client_failed_{false};
};

TEST_F(TlsStreamTest, HandshakeAlpnAndAMegabyteEachWay) {
  std::string big(1 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 997) big[i] = static_cast<char>(i);
  // The server sends it back once it has it all (one SSL object is not
  // for two threads: the client writes, then reads).
  server_.on_read = [this, &big](absl::string_view) {
    if (server_.read.size() == big.size()) stream_.Write(big);
  };
  std::string echoed;
  Client([&](SSL* ssl, int) {
    size_t at = 0;
    while (at < big.size()) {
      int n = SSL_write(
          ssl, big.data() + at,
          static_cast<int>(std::min<size_t>(100000, big.size() - at)));
      if (n <= 0) return;
      at += static_cast<size_t>(n);
    }
    echoed = ReadExactly(ssl, big.size());
  });
  ASSERT_TRUE(Turn([&] { return client_done_.load(); }));
  EXPECT_FALSE(client_failed_);
  EXPECT_EQ(server_.secured, 1);
  EXPECT_EQ(server_.alpn, "h2");
  EXPECT_TRUE(server_.read == big);  // Not printed: 1 MiB.
  EXPECT_TRUE(echoed == big);
  EXPECT_TRUE(stream_.tls());
}

TEST_F(TlsStreamTest, PlaintextLeftInTheEngineComesWhenReadingStartsAgain) {
  // Reading stops at the handshake; the client sends three records; then
  // one socket read takes them all into the engine, and the handler stops
  // after the first piece. The other records are in the engine, where no
  // socket read will bring them again: they must be handed on once
  // reading starts.
  server_.on_secured = [this] { stream_.StopReading(); };
  server_.on_read = [this](absl::string_view) {
    if (server_.reads == 1) stream_.StopReading();
  };
  std::string sent(48 << 10, 'y');
  std::atomic<bool> written{false};
  std::atomic<bool> may_close{false};
  Client([&](SSL* ssl, int) {
    SSL_write(ssl, sent.data(), static_cast<int>(sent.size()));
    written = true;
    while (!may_close) usleep(1000);
  });
  ASSERT_TRUE(Turn([&] { return written.load() && server_.secured == 1; }));
  // SSL_write returned: over loopback its bytes are in the server's socket
  // (the send hands them to the receiver), so the next read takes them all.
  ASSERT_TRUE(stream_.StartReading());
  ASSERT_TRUE(Turn([&] { return server_.reads >= 1; }));
  for (int i = 0; i < 50; ++i) {  // ~50 ms: nothing more may come.
    uv_run(&loop_, UV_RUN_NOWAIT);
    usleep(1000);
  }
  EXPECT_EQ(server_.reads, 1);
  EXPECT_LT(server_.read.size(), sent.size());
  ASSERT_TRUE(stream_.StartReading());
  EXPECT_TRUE(Turn([&] { return server_.read.size() == sent.size(); }))
      << server_.read.size();
  may_close = true;
  ASSERT_TRUE(Turn([&] { return client_done_.load(); }));
  EXPECT_TRUE(server_.read == sent);  // Not printed: 48 KiB.
}

TEST_F(TlsStreamTest, CloseNotifyIsTheEndAndShutdownSendsOne) {
  std::atomic<int> client_read{-1};
  server_.on_read = [this](absl::string_view) { stream_.Shutdown(); };
  Client([&](SSL* ssl, int) {
    SSL_write(ssl, "bye", 3);
    char c;
    int r = SSL_read(ssl, &c, 1);
    // The server's close_notify: a clean end, not a truncation.
    client_read = r == 0 && SSL_get_error(ssl, r) == SSL_ERROR_ZERO_RETURN;
    SSL_shutdown(ssl);
  });
  ASSERT_TRUE(Turn([&] { return client_done_.load() && server_.eofs == 1; }));
  EXPECT_EQ(server_.read, "bye");
  EXPECT_EQ(client_read, 1);
  EXPECT_TRUE(server_.errors.empty());
}

TEST_F(TlsStreamTest, PlaintextFailsTheHandshake) {
  Client(
      [](SSL*, int fd) {
        const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        (void)!write(fd, req, sizeof(req) - 1);
        char buf[256];
        while (read(fd, buf, sizeof(buf)) > 0) {
        }
      },
      /*plain=*/true);
  ASSERT_TRUE(Turn([&] { return !server_.errors.empty(); }));
  EXPECT_EQ(server_.errors[0], UV_EPROTO);
  EXPECT_FALSE(stream_.TlsError().empty());
  EXPECT_EQ(server_.secured, 0);
  EXPECT_TRUE(server_.read.empty());
  ASSERT_TRUE(Turn([&] { return client_done_.load(); }));
}

}  // namespace
}  // namespace modelplane::uv
