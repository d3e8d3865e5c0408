#include "server/runtime/http_probe.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/synchronization/notification.h"
#include "common/loop_thread.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/runtime/process_launcher.h"
#include "server/runtime/test_util.h"

namespace modelplane::runtime {
namespace {

using ::testing::HasSubstr;

// A socket listening on 127.0.0.1 that never accepts: connections complete
// in the kernel backlog and then hear nothing.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 16);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_;
  int port_;
};

class HttpProbeTest : public ::testing::Test {
 protected:
  HttpProbeTest() {
    loop_.RunSync([this] {
      prober_ = std::make_unique<HttpProber>(loop_.loop());
      launcher_ = std::make_unique<ProcessLauncher>(loop_.loop());
    });
  }
  ~HttpProbeTest() override {
    // The upstream is stopped and reaped before the loop ends: its state in
    // the launcher frees itself only once its process is reaped.
    if (upstream_ != nullptr) {
      loop_.RunSync([this] { upstream_->SignalGroup(SIGKILL); });
      EXPECT_TRUE(upstream_out_.WaitForExit(absl::Seconds(10)));
    }
    loop_.RunSync([this] {
      probes_.clear();
      upstream_.reset();
      launcher_.reset();
      prober_.reset();
    });
  }

  // Starts fake_upstream and returns its port.
  int StartUpstream(std::vector<std::string> flags) {
    std::vector<std::string> argv = {
        Runfile("tools/fake_upstream/fake_upstream"), "--port", "0"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    loop_.RunSync([&] {
      upstream_ = *launcher_->Spawn(actor::SpawnSpec{argv}, &upstream_out_);
    });
    EXPECT_TRUE(upstream_out_.WaitForOutput("listening on", absl::Seconds(10)));
    std::string out = upstream_out_.output();
    size_t colon = out.find("127.0.0.1:");
    int port = 0;
    absl::SimpleAtoi(out.substr(colon + 10, out.find('\n', colon) - colon - 10),
                     &port);
    return port;
  }

  absl::StatusOr<int> ProbeOnce(const std::string& url,
                                absl::Duration timeout = absl::Seconds(5)) {
    absl::Notification done;
    absl::StatusOr<int> result;
    loop_.RunSync([&] {
      probes_.push_back(
          prober_->Get(url, {}, timeout, [&](absl::StatusOr<int> r) {
            result = std::move(r);
            done.Notify();
          }));
    });
    EXPECT_TRUE(
        done.WaitForNotificationWithTimeout(timeout + absl::Seconds(5)));
    return result;
  }

  LoopThread loop_;
  std::unique_ptr<HttpProber> prober_;
  std::unique_ptr<ProcessLauncher> launcher_;
  RecordingObserver upstream_out_;
  std::unique_ptr<actor::Process> upstream_;
  std::vector<std::unique_ptr<actor::Probe>> probes_;
};

TEST_F(HttpProbeTest, ReportsTheStatusCode) {
  int port = StartUpstream({"--ready-after-ms", "300000"});
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  EXPECT_EQ(*ProbeOnce(base + "/health"), 503);
  EXPECT_EQ(
      *ProbeOnce("http://localhost:" + std::to_string(port) + "/v1/models"),
      200);
  EXPECT_EQ(*ProbeOnce(base + "/nope"), 404);
}

TEST_F(HttpProbeTest, RefusedConnectionIsUnavailable) {
  int port;
  {
    SilentListener l;
    port = l.port();
  }  // Closed: nothing listens there now.
  absl::StatusOr<int> r =
      ProbeOnce("http://127.0.0.1:" + std::to_string(port) + "/health");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("connection refused"));
}

TEST_F(HttpProbeTest, SilentServerTimesOut) {
  SilentListener l;
  absl::StatusOr<int> r =
      ProbeOnce("http://127.0.0.1:" + std::to_string(l.port()) + "/health",
                absl::Milliseconds(100));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(HttpProbeTest, CancelledProbeNeverCallsBack) {
  SilentListener l;
  bool called = false;
  loop_.RunSync([&] {
    auto probe = prober_->Get(
        "http://127.0.0.1:" + std::to_string(l.port()) + "/health", {},
        absl::Milliseconds(50), [&](absl::StatusOr<int>) { called = true; });
    probe.reset();
  });
  // A later probe's completion proves the loop ran past the cancelled
  // one's timeout.
  SilentListener l2;
  EXPECT_EQ(ProbeOnce("http://127.0.0.1:" + std::to_string(l2.port()) + "/",
                      absl::Milliseconds(100))
                .status()
                .code(),
            absl::StatusCode::kDeadlineExceeded);
  loop_.RunSync([&] { EXPECT_FALSE(called); });
}

TEST(ParseHttpUrlTest, Forms) {
  ParsedUrl u = *ParseHttpUrl("http://localhost:5800/health");
  EXPECT_EQ(u.host, "localhost");
  EXPECT_EQ(u.port, 5800);
  EXPECT_EQ(u.path, "/health");
  u = *ParseHttpUrl("http://[::1]:8080");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 8080);
  EXPECT_EQ(u.path, "/");
  EXPECT_EQ(ParseHttpUrl("http://host/x")->port, 80);
  absl::StatusOr<ParsedUrl> https = ParseHttpUrl("https://h/x");
  ASSERT_TRUE(https.ok()) << https.status();
  EXPECT_TRUE(https->tls);
  EXPECT_EQ(https->port, 443);
  EXPECT_EQ(ParseHttpUrl("ftp://h").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseHttpUrl("http://h:99999/").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace modelplane::runtime
