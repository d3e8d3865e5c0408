// TcpStream over real loopback sockets: a listener on 127.0.0.1 accepts
// into a TcpStream, and the test's own client socket (plain POSIX,
// non-blocking) talks to it while the loop turns. Every wait is bounded.
#include "common/uv/tcp_stream.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace modelplane::uv {
namespace {

class Recorder : public TcpStream::Handler {
 public:
  void OnStreamRead(absl::string_view data) override {
    read.append(data.data(), data.size());
    if (on_read) on_read();
  }
  void OnStreamEof() override { ++eofs; }
  void OnStreamError(int status) override {
    errors.push_back(status);
    if (close_on_error) stream->Close(Closed, this);
  }
  void OnStreamWritten(size_t queued) override {
    ++written;
    last_queued = queued;
    if (queued > 0) ++written_with_more_queued;
  }
  void OnStreamFlush(TcpStream* s) override {
    ++flushes;
    s->Flush();
  }
  static void Closed(void* arg) { ++static_cast<Recorder*>(arg)->closed; }

  TcpStream* stream = nullptr;
  std::string read;
  std::function<void()> on_read;
  int eofs = 0;
  std::vector<int> errors;
  int written = 0;
  int written_with_more_queued = 0;
  size_t last_queued = 0;
  int flushes = 0;
  int closed = 0;
  bool close_on_error = true;
};

class TcpStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    ASSERT_EQ(uv_tcp_init(&loop_, &listener_), 0);
    listener_.data = this;
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", 0, &addr);
    ASSERT_EQ(uv_tcp_bind(&listener_, reinterpret_cast<sockaddr*>(&addr), 0),
              0);
    ASSERT_EQ(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 8,
                        [](uv_stream_t* l, int) {
                          auto* t = static_cast<TcpStreamTest*>(l->data);
                          ASSERT_EQ(uv_accept(l, t->stream_.stream()), 0);
                          t->accepted_ = true;
                        }),
              0);
    int len = sizeof(addr);
    uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    stream_.Init(&loop_, &handler_, buffer_, sizeof(buffer_));
    handler_.stream = &stream_;
    client_ = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(client_, 0);
    ASSERT_EQ(
        connect(client_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    fcntl(client_, F_SETFL, fcntl(client_, F_GETFL) | O_NONBLOCK);
    ASSERT_TRUE(Turn([&] { return accepted_; }));
  }

  void TearDown() override {
    if (client_ >= 0) close(client_);
    stream_.Close(Recorder::Closed, &handler_);
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(handler_.closed, 1);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  // Turns the loop (and drains the client's socket into client_read_)
  // until `done`, at most ~20 s.
  bool Turn(const std::function<bool()>& done) {
    for (int i = 0; i < 20000; ++i) {
      if (done()) return true;
      uv_run(&loop_, UV_RUN_NOWAIT);
      if (reading_client_) ReadClient();
      usleep(1000);
    }
    return done();
  }
  void ReadClient() {
    char buf[65536];
    for (;;) {
      ssize_t n = read(client_, buf, sizeof(buf));
      if (n > 0) {
        client_read_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) client_eof_ = true;
      if (n < 0 && errno != EAGAIN) client_error_ = errno;
      return;
    }
  }
  // Writes all of `s` from the client, turning the loop while the socket
  // is full.
  void Send(const std::string& s) {
    size_t sent = 0;
    ASSERT_TRUE(Turn([&] {
      ssize_t n = write(client_, s.data() + sent, s.size() - sent);
      if (n > 0) sent += static_cast<size_t>(n);
      return sent == s.size();
    }));
  }

  uv_loop_t loop_;
  uv_tcp_t listener_;
  TcpStream stream_;
  Recorder handler_;
  char buffer_[4096];
  bool accepted_ = false;
  int client_ = -1;
  bool reading_client_ = true;
  std::string client_read_;
  bool client_eof_ = false;
  int client_error_ = 0;
};

TEST_F(TcpStreamTest, WritesOfOneCallbackGoOutTogetherAfterIt) {
  ASSERT_TRUE(stream_.StartReading());
  handler_.on_read = [&] {
    stream_.Write("hello ");
    stream_.WriteWith([](std::string* out) { out->append("world"); });
    // Gathered, not written yet: out once this callback is over.
    EXPECT_EQ(stream_.Queued(), 11u);
  };
  Send("ping");
  ASSERT_TRUE(Turn([&] { return client_read_ == "hello world"; }));
  EXPECT_EQ(handler_.read, "ping");
  EXPECT_EQ(handler_.flushes, 1);  // One flush for both writes.
  EXPECT_EQ(stream_.Queued(), 0u);
  EXPECT_EQ(handler_.last_queued, 0u);
}

TEST_F(TcpStreamTest, PeerThatStopsReadingIsCutOffBySendTimeout) {
  reading_client_ = false;  // The client reads nothing.
  stream_.set_send_timeout_ms(200);
  std::string big(32 << 20, 'x');  // More than loopback buffers hold.
  stream_.Write(big);
  stream_.Flush();
  // The socket took part of it; the rest waits in libuv's queue.
  EXPECT_GT(stream_.Queued(), 0u);
  EXPECT_LT(stream_.Queued(), big.size());
  ASSERT_TRUE(Turn([&] { return !handler_.errors.empty(); }));
  EXPECT_EQ(handler_.errors[0], UV_ETIMEDOUT);
  EXPECT_TRUE(stream_.closing());
}

// Written in pieces the socket cannot all take at once: each piece that
// reaches it is told with what still waits, down to nothing.
TEST_F(TcpStreamTest, ASlowPeerIsHeardOfAsItTakesBytes) {
  stream_.set_send_timeout_ms(30000);
  reading_client_ = false;
  std::string piece(1 << 20, 'y');
  for (int i = 0; i < 24; ++i) {
    stream_.Write(piece);
    stream_.Flush();
  }
  ASSERT_GT(stream_.Queued(), 0u);
  reading_client_ = true;
  ASSERT_TRUE(Turn([&] { return client_read_.size() == 24 * piece.size(); }));
  ASSERT_TRUE(Turn([&] { return stream_.Queued() == 0; }));
  EXPECT_GT(handler_.written, 1);
  EXPECT_GE(handler_.written_with_more_queued, 1);
  EXPECT_EQ(handler_.last_queued, 0u);
  EXPECT_TRUE(handler_.errors.empty());
}

TEST_F(TcpStreamTest, PeerFinIsHeardAndTheAnswerStillGoesOut) {
  ASSERT_TRUE(stream_.StartReading());
  Send("request");
  shutdown(client_, SHUT_WR);
  ASSERT_TRUE(Turn([&] { return handler_.eofs == 1; }));
  EXPECT_EQ(handler_.read, "request");
  EXPECT_FALSE(stream_.reading());
  stream_.Write("answer");
  ASSERT_TRUE(Turn([&] { return client_read_ == "answer"; }));
  EXPECT_TRUE(handler_.errors.empty());
}

// Unread input at a close would make the kernel send a reset, which can
// destroy the answer before the peer reads it. Lingering, the stream reads
// and drops what still comes, so the answer arrives whole, then the FIN.
TEST_F(TcpStreamTest, LingeringCloseDeliversTheAnswerThenDropsInput) {
  reading_client_ = false;
  Send(std::string(20000, 'u'));  // Never read by the stream's owner.
  std::string answer(300000, 'a');
  stream_.Write(answer);
  stream_.Flush();
  reading_client_ = true;
  ASSERT_TRUE(Turn([&] { return stream_.Queued() == 0; }));
  reading_client_ = false;
  // Long enough that only the client's close can end it here.
  ASSERT_TRUE(stream_.LingeringClose(15000));
  EXPECT_TRUE(stream_.lingering());
  Send("more input, dropped");
  reading_client_ = true;
  ASSERT_TRUE(Turn([&] { return client_eof_ || client_error_ != 0; }));
  EXPECT_EQ(client_error_, 0);  // No reset.
  EXPECT_EQ(client_read_, answer);
  EXPECT_EQ(handler_.read, "");  // Dropped, never handed on.
  close(client_);
  client_ = -1;
  ASSERT_TRUE(Turn([&] { return !handler_.errors.empty(); }));
  EXPECT_EQ(handler_.errors[0], UV_EOF);
}

TEST_F(TcpStreamTest, LingeringCloseEndsWhenTheLingerTimePasses) {
  ASSERT_TRUE(stream_.LingeringClose(100));
  // The client neither closes nor sends.
  ASSERT_TRUE(Turn([&] { return !handler_.errors.empty(); }));
  EXPECT_EQ(handler_.errors[0], UV_ETIMEDOUT);
}

// A close with writes still queued: libuv cancels them; the owner hears
// nothing more, and `closed` runs once (TearDown counts it), with every
// handle's memory freed (ASan's leak check).
TEST_F(TcpStreamTest, CloseWithWritesQueuedCallsNothingButClosed) {
  reading_client_ = false;
  stream_.Write(std::string(32 << 20, 'z'));
  stream_.Flush();
  ASSERT_GT(stream_.Queued(), 0u);
  int written = handler_.written;
  stream_.Close(Recorder::Closed, &handler_);
  stream_.Write("ignored");
  stream_.ScheduleFlush();
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(handler_.closed, 1);
  EXPECT_EQ(handler_.written, written);
  EXPECT_TRUE(handler_.errors.empty());
  // TearDown's Close is a no-op: `closed` stays at one.
}

// An outgoing stream: Connect, then a head and a body written by
// reference (the queued write holds the body, not a copy, until it is
// out), then a FIN.
class OutgoingTest : public ::testing::Test {
 protected:
  class Conn : public Recorder {
   public:
    void OnStreamConnected(int status) override { connected.push_back(status); }
    std::vector<int> connected;
  };
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ASSERT_GE(listener_, 0);
    addr_.sin_family = AF_INET;
    addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(
        bind(listener_, reinterpret_cast<sockaddr*>(&addr_), sizeof(addr_)), 0);
    socklen_t len = sizeof(addr_);
    getsockname(listener_, reinterpret_cast<sockaddr*>(&addr_), &len);
    ASSERT_EQ(listen(listener_, 4), 0);
    stream_.Init(&loop_, &conn_, buffer_, sizeof(buffer_));
    conn_.stream = &stream_;
  }
  void TearDown() override {
    if (peer_ >= 0) close(peer_);
    close(listener_);
    stream_.Close(Recorder::Closed, &conn_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(conn_.closed, 1);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  bool Turn(const std::function<bool()>& done) {
    for (int i = 0; i < 20000; ++i) {
      if (done()) return true;
      uv_run(&loop_, UV_RUN_NOWAIT);
      if (peer_ >= 0) {
        char buf[65536];
        ssize_t n;
        while ((n = read(peer_, buf, sizeof(buf))) > 0) {
          peer_read_.append(buf, static_cast<size_t>(n));
        }
        if (n == 0) peer_eof_ = true;
      }
      usleep(1000);
    }
    return done();
  }

  uv_loop_t loop_;
  int listener_ = -1;
  int peer_ = -1;
  sockaddr_in addr_{};
  TcpStream stream_;
  Conn conn_;
  char buffer_[4096];
  std::string peer_read_;
  bool peer_eof_ = false;
};

TEST_F(OutgoingTest, ConnectsWritesABodyByReferenceThenFin) {
  ASSERT_EQ(stream_.Connect(reinterpret_cast<sockaddr*>(&addr_)), 0);
  ASSERT_TRUE(Turn([&] { return !conn_.connected.empty(); }));
  EXPECT_EQ(conn_.connected[0], 0);
  peer_ = accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK);
  ASSERT_GE(peer_, 0);
  auto body = std::make_shared<const std::string>(32 << 20, 'b');
  std::weak_ptr<const std::string> held = body;
  stream_.Write("gathered ");
  ASSERT_EQ(stream_.WriteShared("head ", body), 0);
  body.reset();
  // The socket could not take 32 MiB: the queued write keeps the body.
  ASSERT_GT(stream_.WriteQueueSize(), 0u);
  EXPECT_FALSE(held.expired());
  ASSERT_TRUE(Turn([&] { return stream_.Queued() == 0; }));
  EXPECT_TRUE(held.expired());  // Freed with its write.
  ASSERT_TRUE(stream_.Shutdown());
  ASSERT_TRUE(Turn([&] { return peer_eof_; }));
  ASSERT_EQ(peer_read_.size(), 14u + (32 << 20));
  EXPECT_EQ(peer_read_.substr(0, 15), "gathered head b");
  EXPECT_TRUE(conn_.errors.empty());
}

TEST_F(OutgoingTest, ARefusedConnectIsToldToTheHandler) {
  close(listener_);
  listener_ = socket(AF_INET, SOCK_STREAM, 0);  // Nobody listens on addr_.
  ASSERT_EQ(stream_.Connect(reinterpret_cast<sockaddr*>(&addr_)), 0);
  ASSERT_TRUE(Turn([&] { return !conn_.connected.empty(); }));
  EXPECT_EQ(conn_.connected[0], UV_ECONNREFUSED);
}

}  // namespace
}  // namespace modelplane::uv
