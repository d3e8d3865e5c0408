// The upstream pool against real loopback sockets: what it hands back as
// unsent (a request a failover may send to another node) and what it never
// does (one a model server may have read).
#include "proxy/upstream/upstream_pool.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/loop_thread.h"
#include "gtest/gtest.h"

namespace modelplane::proxy::upstream {
namespace {

int Listen(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(listen(fd, 8), 0);
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// Reads one request whose body is `body_len` bytes; false at EOF.
bool ReadRequest(int fd, size_t body_len) {
  std::string got;
  char buf[4096];
  while (true) {
    size_t head = got.find("\r\n\r\n");
    if (head != std::string::npos && got.size() >= head + 4 + body_len) {
      return true;
    }
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
  }
}

class Recorder : public UpstreamObserver {
 public:
  void OnUpstreamHead(http1::ResponseHead head) override {
    status = head.status;
  }
  void OnUpstreamBody(absl::string_view data) override {
    body.append(data.data(), data.size());
  }
  void OnUpstreamEnd() override { done.Notify(); }
  void OnUpstreamError(const std::string& m, bool before_head, bool,
                       OutgoingRequest* u) override {
    message = m;
    failed_before_head = before_head;
    if (u != nullptr) unsent = u->head;
    offered_back = u != nullptr;
    done.Notify();
  }
  int status = 0;
  std::string body, message, unsent;
  bool failed_before_head = false;
  bool offered_back = false;
  absl::Notification done;
};

const char kRequest[] =
    "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";

class UpstreamPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    loop_.RunSync(
        [this] { pool_ = std::make_unique<UpstreamPool>(loop_.loop()); });
  }
  void TearDown() override {
    loop_.RunSync([this] {
      handles_.clear();
      pool_.reset();
    });
  }
  void Send(int port, Recorder* r) {
    loop_.RunSync([&] {
      handles_.push_back(pool_->Send(absl::StrCat("http://127.0.0.1:", port),
                                     OutgoingRequest{kRequest, nullptr}, false,
                                     r));
    });
    ASSERT_TRUE(r->done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  }

  LoopThread loop_;
  std::unique_ptr<UpstreamPool> pool_;
  std::vector<std::unique_ptr<UpstreamRequest>> handles_;
};

TEST_F(UpstreamPoolTest, ARequestRefusedAtConnectIsHandedBackUnsent) {
  int port = 0;
  close(Listen(&port));  // Nothing listens there now.
  Recorder r;
  Send(port, &r);
  EXPECT_TRUE(r.failed_before_head);
  EXPECT_TRUE(r.offered_back) << r.message;
  EXPECT_EQ(r.unsent, kRequest);  // Head and body, whole, to send elsewhere.
}

TEST_F(UpstreamPoolTest, ARequestAServerMayHaveReadIsNeverHandedBack) {
  // The server answers one request on a kept-alive connection, then reads
  // the second whole and goes (the connection and its listener closed).
  int port = 0;
  int listener = Listen(&port);
  std::atomic<int> read_requests{0};
  std::thread server([&] {
    int c = accept(listener, nullptr, nullptr);
    if (ReadRequest(c, 2)) ++read_requests;
    const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    ASSERT_EQ(write(c, ok, sizeof(ok) - 1),
              static_cast<ssize_t>(sizeof(ok) - 1));
    if (ReadRequest(c, 2)) ++read_requests;
    close(listener);  // The pool's retry is refused...
    close(c);         // ... after the request was read.
  });
  Recorder first;
  Send(port, &first);
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(first.body, "ok");
  Recorder second;
  Send(port, &second);  // On the pooled connection.
  server.join();
  EXPECT_EQ(read_requests.load(), 2);
  EXPECT_TRUE(second.failed_before_head);
  // Retried once on a fresh connection (refused), and then not offered
  // back: the server had it, so no other node may get it too.
  EXPECT_FALSE(second.offered_back) << second.message;
  EXPECT_FALSE(second.message.empty());
}

}  // namespace
}  // namespace modelplane::proxy::upstream
