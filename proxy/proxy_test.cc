// The proxy's core in one process: a real Proxy (workers, sockets, the lease
// broker, the routing state) in front of fake_upstream's server linked in,
// with the manager replaced by a mocked lease transport that grants on a
// thread of its own, as the real link does. Clients are plain sockets (and
// nghttp2's client for HTTP/2) on loopback. Every wait has a deadline and
// ends on a condition, never after a fixed sleep.
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/loop_thread.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/http2/test_client.h"
#include "proxy/router/route_table.h"
#include "proxy/router/snapshot.h"
#include "tools/fake_upstream/http_server.h"
#include "tools/fake_upstream/openai_handler.h"

namespace modelplane::proxy {
namespace {

using ::testing::_;
using ::testing::NiceMock;

constexpr absl::Duration kDeadline = absl::Seconds(20);

// Polls `done` (bounded) until it holds.
bool Eventually(const std::function<bool()>& done) {
  absl::Time deadline = absl::Now() + kDeadline;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// fake_upstream's server and handler on a loop of their own.
class FakeUpstream {
 public:
  explicit FakeUpstream(fake::FakeModelOptions options)
      : loop_(std::make_unique<LoopThread>()) {
    loop_->RunSync([&] {
      handler_ = std::make_unique<fake::OpenAiHandler>(options, &stats_,
                                                       [] { return true; });
      server_ = std::make_unique<fake::HttpServer>(
          loop_->loop(), &stats_,
          [this](const fake::Request& r) { return handler_->Handle(r); });
      port_ = *server_->Listen("127.0.0.1", 0);
    });
  }
  ~FakeUpstream() {
    loop_->RunSync([&] { server_->Close(); });
    loop_.reset();  // Runs the close callbacks while the server lives.
  }
  int port() const { return port_; }
  fake::ServerStats Stats() {
    fake::ServerStats s;
    loop_->RunSync([&] { s = stats_; });
    return s;
  }

 private:
  std::unique_ptr<LoopThread> loop_;
  fake::ServerStats stats_;
  std::unique_ptr<fake::OpenAiHandler> handler_;
  std::unique_ptr<fake::HttpServer> server_;
  int port_ = 0;
};

class MockTransport : public lease::LeaseTransport {
 public:
  MOCK_METHOD(bool, Connected, (), (override));
  MOCK_METHOD(void, SendAcquire, (const std::string&, uint64_t), (override));
  MOCK_METHOD(void, SendRelease, (const std::string&, uint64_t, absl::Time),
              (override));
  MOCK_METHOD(void, SendCancel, (const std::string&), (override));
};

// A blocking client socket whose every read has a deadline.
class Client {
 public:
  explicit Client(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~Client() { Close(); }
  bool connected() const { return connected_; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  void Send(absl::string_view data) {
    while (!data.empty()) {
      ssize_t n = write(fd_, data.data(), data.size());
      ASSERT_GT(n, 0);
      data.remove_prefix(static_cast<size_t>(n));
    }
  }
  // Reads until `have` (what arrived) satisfies `enough`, EOF, or the
  // deadline. False on the deadline.
  bool ReadUntil(const std::function<bool(const std::string&)>& enough) {
    absl::Time deadline = absl::Now() + kDeadline;
    while (!enough(in_)) {
      int left =
          static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, left) <= 0) continue;
      char buf[16384];
      ssize_t n = read(fd_, buf, sizeof(buf));
      if (n <= 0) {
        eof_ = true;
        return enough(in_);
      }
      in_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  // One whole HTTP/1.1 response (Content-Length or chunked), taken off the
  // input: "status\nbody" (the body de-chunked).
  struct Response {
    int status = 0;
    std::string head;
    std::string body;
  };
  Response ReadResponse() {
    Response r;
    size_t body_at = 0, end = 0;
    bool whole = ReadUntil([&](const std::string& in) {
      size_t head_end = in.find("\r\n\r\n");
      if (head_end == std::string::npos) return false;
      body_at = head_end + 4;
      std::string head = in.substr(0, head_end);
      size_t cl = FindHeader(head, "content-length");
      if (cl != std::string::npos) {
        uint64_t n = 0;
        absl::SimpleAtoi(HeaderValue(head, cl), &n);
        end = body_at + n;
        return in.size() >= end;
      }
      end = in.find("\r\n0\r\n\r\n", body_at - 2);
      if (end == std::string::npos) return false;
      end += 7;
      return true;
    });
    if (!whole) return r;
    r.head = in_.substr(0, body_at - 4);
    absl::SimpleAtoi(r.head.substr(9, 3), &r.status);
    std::string raw = in_.substr(body_at, end - body_at);
    in_.erase(0, end);
    if (FindHeader(r.head, "content-length") != std::string::npos) {
      r.body = raw;
      return r;
    }
    // De-chunk.
    size_t at = 0;
    while (at < raw.size()) {
      size_t line = raw.find("\r\n", at);
      uint64_t n = 0;
      absl::SimpleHexAtoi(raw.substr(at, line - at), &n);
      if (n == 0) break;
      r.body += raw.substr(line + 2, n);
      at = line + 2 + n + 2;
    }
    return r;
  }
  const std::string& in() const { return in_; }
  bool eof() const { return eof_; }
  int fd() const { return fd_; }

 private:
  static size_t FindHeader(const std::string& head, absl::string_view name) {
    std::string lower = absl::AsciiStrToLower(head);
    size_t at = lower.find(absl::StrCat("\r\n", name, ":"));
    return at == std::string::npos ? at : at + 2 + name.size() + 1;
  }
  static std::string HeaderValue(const std::string& head, size_t at) {
    size_t end = head.find("\r\n", at);
    return std::string(absl::StripAsciiWhitespace(head.substr(at, end - at)));
  }

  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
  std::string in_;
};

std::string Post(absl::string_view body, bool close = false) {
  return absl::StrCat("POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n",
                      close ? "Connection: close\r\n" : "",
                      "Content-Type: application/json\r\nContent-Length: ",
                      body.size(), "\r\n\r\n", body);
}

std::string Chat(int max_tokens, bool stream) {
  return absl::StrCat(R"({"model":"m","messages":[],"max_tokens":)", max_tokens,
                      stream ? R"(,"stream":true})" : "}");
}

class ProxyTest : public ::testing::Test {
 protected:
  void StartProxy(fake::FakeModelOptions model, int workers = 1) {
    upstream_ = std::make_unique<FakeUpstream>(model);
    url_ = absl::StrCat("http://127.0.0.1:", upstream_->port());
    ON_CALL(transport_, Connected()).WillByDefault([] { return true; });
    // The manager grants on a thread of its own, as the real link answers
    // on gRPC's threads.
    ON_CALL(transport_, SendAcquire(_, _))
        .WillByDefault([this](const std::string& model, uint64_t) {
          acquires_.fetch_add(1);
          manager_.Post([this, model] {
            uint64_t lease = ++lease_;
            proxy_->broker().OnGranted(model, lease, url_);
          });
        });
    ON_CALL(transport_, SendRelease(_, _, _))
        .WillByDefault([this](const std::string&, uint64_t lease, absl::Time) {
          absl::MutexLock lock(&mu_);
          released_.push_back(lease);
        });
    ProxyConfig config;
    config.host = "127.0.0.1";
    config.port = 0;
    config.workers = workers;
    config.transport = &transport_;
    config.options = options_;
    proxy_ = std::make_unique<Proxy>(config);
    ASSERT_TRUE(proxy_->Start().ok());
    v1::Model m;
    m.set_id("m");
    m.set_state(v1::MODEL_STATE_READY);
    m.set_concurrency_limit(100);
    proxy_->SetLocalView(router::RouteTable::Build({m}),
                         std::make_shared<v1::DataPlaneSettings>());
  }
  void TearDown() override {
    if (proxy_ != nullptr) proxy_->Stop();
  }
  std::vector<uint64_t> released() {
    absl::MutexLock lock(&mu_);
    return released_;
  }

  ProxyOptions options_;
  NiceMock<MockTransport> transport_;
  LoopThread manager_;
  std::unique_ptr<FakeUpstream> upstream_;
  std::string url_;
  std::unique_ptr<Proxy> proxy_;
  std::atomic<uint64_t> lease_{0};
  std::atomic<int> acquires_{0};
  absl::Mutex mu_;
  std::vector<uint64_t> released_ ABSL_GUARDED_BY(mu_);
};

TEST_F(ProxyTest, KeepAliveServesRequestsOnOneConnectionUnderOneLease) {
  StartProxy({});
  Client c(proxy_->port());
  ASSERT_TRUE(c.connected());
  for (int i = 1; i <= 3; ++i) {
    c.Send(Post(Chat(i, false)));
    Client::Response r = c.ReadResponse();
    EXPECT_EQ(r.status, 200) << r.head;
    EXPECT_THAT(r.body, ::testing::HasSubstr("\"completion_tokens\":" +
                                             std::to_string(i)));
  }
  // One ACQUIRE for all three (the lease is held), one upstream connection
  // (the pool keeps it).
  EXPECT_EQ(acquires_.load(), 1);
  fake::ServerStats stats = upstream_->Stats();
  EXPECT_EQ(stats.connections_accepted, 1u);
  EXPECT_EQ(stats.requests_by_path["/v1/chat/completions"], 3u);
}

TEST_F(ProxyTest, PipelinedRequestsAreAnsweredInOrder) {
  StartProxy({});
  Client c(proxy_->port());
  c.Send(absl::StrCat(
      Post(Chat(2, false)), "GET /health HTTP/1.1\r\nHost: t\r\n\r\n",
      Post(Chat(3, false)), "GET /v1/models HTTP/1.1\r\nHost: t\r\n\r\n"));
  Client::Response a = c.ReadResponse(), b = c.ReadResponse(),
                   d = c.ReadResponse(), e = c.ReadResponse();
  EXPECT_THAT(a.body, ::testing::HasSubstr("\"completion_tokens\":2"));
  EXPECT_EQ(b.body, "OK");
  EXPECT_THAT(d.body, ::testing::HasSubstr("\"completion_tokens\":3"));
  EXPECT_THAT(e.body, ::testing::HasSubstr(R"("id":"m")"));
}

// A model stream held after its first event: the gate says how many events
// it may have sent so far (fake_upstream asks it every millisecond).
fake::FakeModelOptions HeldStream(std::atomic<int>* gate) {
  fake::FakeModelOptions model;
  gate->store(1);
  model.stream_gate = [gate] { return gate->load(); };
  return model;
}
constexpr int kOpen = 1 << 20;

TEST_F(ProxyTest, ServerSentEventsArriveEventByEvent) {
  std::atomic<int> gate;
  StartProxy(HeldStream(&gate));
  Client c(proxy_->port());
  c.Send(Post(Chat(5, true)));
  // The first event arrives while the model holds the rest.
  ASSERT_TRUE(c.ReadUntil([](const std::string& in) {
    return in.find("data: {") != std::string::npos;
  }));
  EXPECT_EQ(c.in().find("[DONE]"), std::string::npos);
  gate = kOpen;
  Client::Response r = c.ReadResponse();
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.head, ::testing::HasSubstr("text/event-stream"));
  EXPECT_THAT(r.body, ::testing::HasSubstr("data: [DONE]"));
  EXPECT_GE(std::count(r.body.begin(), r.body.end(), '\n'), 10);
}

TEST_F(ProxyTest, AClientThatLeavesMidStreamIsNoticedByTheUpstream) {
  std::atomic<int> gate;
  StartProxy(HeldStream(&gate));  // Never opened: the stream never ends.
  {
    Client c(proxy_->port());
    c.Send(Post(Chat(100, true)));
    ASSERT_TRUE(c.ReadUntil([](const std::string& in) {
      return in.find("data: {") != std::string::npos;
    }));
  }  // Closed.
  EXPECT_TRUE(
      Eventually([&] { return upstream_->Stats().client_disconnects == 1; }));
  EXPECT_EQ(upstream_->Stats().streams_completed, 0u);
}

// A revoked lease lets the streams under it finish, then is released; the
// next request asks for a new one.
TEST_F(ProxyTest, ARevokedLeaseLetsItsStreamFinishThenIsReleased) {
  std::atomic<int> gate;
  StartProxy(HeldStream(&gate));
  Client c(proxy_->port());
  c.Send(Post(Chat(20, true)));
  ASSERT_TRUE(c.ReadUntil([](const std::string& in) {
    return in.find("data: {") != std::string::npos;
  }));
  uint64_t lease = lease_.load();
  // Revoked mid-stream (the model holds the rest): not released while the
  // stream is in flight.
  manager_.RunSync([this, lease] { proxy_->broker().OnRevoked("m", lease); });
  EXPECT_TRUE(released().empty());
  gate = kOpen;
  Client::Response r = c.ReadResponse();
  EXPECT_THAT(r.body, ::testing::HasSubstr("data: [DONE]"));
  EXPECT_TRUE(Eventually([&] {
    std::vector<uint64_t> rel = released();
    return std::find(rel.begin(), rel.end(), lease) != rel.end();
  }));
  c.Send(Post(Chat(1, false)));
  EXPECT_EQ(c.ReadResponse().status, 200);
  EXPECT_EQ(acquires_.load(), 2);
}

// Drain: no new connection, the response in flight finishes.
TEST_F(ProxyTest, DrainFinishesWhatIsInFlightAndTakesNothingNew) {
  std::atomic<int> gate;
  StartProxy(HeldStream(&gate));
  Client c(proxy_->port());
  c.Send(Post(Chat(10, true)));
  ASSERT_TRUE(c.ReadUntil([](const std::string& in) {
    return in.find("data: {") != std::string::npos;
  }));
  int port = proxy_->port();
  std::atomic<size_t> left{99};
  std::atomic<bool> drained{false};
  std::thread drain([&] {
    left = proxy_->Drain(kDeadline);
    drained = true;
  });
  // Draining with the stream held: new connections are refused, and the
  // drain waits for the stream.
  EXPECT_TRUE(Eventually([&] { return !Client(port).connected(); }));
  EXPECT_FALSE(drained.load());
  gate = kOpen;
  Client::Response r = c.ReadResponse();
  EXPECT_THAT(r.body, ::testing::HasSubstr("data: [DONE]"));
  c.Close();  // (Else the proxy lingers for the client's close.)
  drain.join();
  EXPECT_EQ(left.load(), 0u);
}

TEST_F(ProxyTest, Http2StreamsShareOneConnection) {
  StartProxy({});
  Client c(proxy_->port());
  http2::testing::Client h2;
  std::vector<int32_t> ids;
  for (int i = 1; i <= 3; ++i) {
    std::string body = Chat(i, false);
    ids.push_back(h2.Request("POST", "/v1/chat/completions",
                             {{"content-type", "application/json"}}, &body));
    c.Send(h2.Out());  // Its body goes before the next request's.
  }
  auto all_closed = [&] {
    for (int32_t id : ids) {
      if (!h2.responses[id].closed) return false;
    }
    return true;
  };
  while (!all_closed()) {
    size_t seen = c.in().size();
    ASSERT_TRUE(
        c.ReadUntil([&](const std::string& in) { return in.size() > seen; }));
    h2.In(c.in().substr(seen));
    std::string out = h2.Out();  // Window updates, SETTINGS ACKs.
    if (!out.empty()) c.Send(out);
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(h2.responses[ids[i]].headers[":status"], "200");
    EXPECT_THAT(
        h2.responses[ids[i]].body,
        ::testing::HasSubstr(absl::StrCat("\"completion_tokens\":", i + 1)));
  }
  EXPECT_EQ(upstream_->Stats().requests_by_path["/v1/chat/completions"], 3u);
}

// The UI's event stream: the models' state as it changes, the proxy's log,
// the requests served; ended by the drain.
TEST_F(ProxyTest, TheEventStreamFollowsTheProxyAndEndsOnDrain) {
  StartProxy({});
  Client events(proxy_->port());
  events.Send("GET /api/events HTTP/1.1\r\nHost: t\r\n\r\n");
  auto has = [&events](absl::string_view what) {
    return events.ReadUntil(
        [what](const std::string& in) { return absl::StrContains(in, what); });
  };
  ASSERT_TRUE(has("text/event-stream"));
  // The state first: the model, ready.
  ASSERT_TRUE(has(R"(\"id\":\"m\")"));
  EXPECT_TRUE(has(R"(\"state\":\"ready\")"));
  v1::Model m;
  m.set_id("m");
  m.set_state(v1::MODEL_STATE_STARTING);
  proxy_->SetLocalView(router::RouteTable::Build({m}), nullptr);
  EXPECT_TRUE(has(R"(\"state\":\"starting\")"));
  m.set_state(v1::MODEL_STATE_READY);
  proxy_->SetLocalView(router::RouteTable::Build({m}), nullptr);
  proxy_->Log("a line for the UI");
  EXPECT_TRUE(has("a line for the UI"));
  Client c(proxy_->port());
  c.Send(Post(Chat(3, false)));
  EXPECT_EQ(c.ReadResponse().status, 200);
  EXPECT_TRUE(has(R"({"type":"activity")"));
  EXPECT_TRUE(has(R"(\"output_tokens\":3)"));
  c.Close();
  // Drained: the stream ends cleanly (its last chunk), and does not hold
  // the drain.
  std::thread drain([&] { EXPECT_EQ(proxy_->Drain(kDeadline), 0u); });
  EXPECT_TRUE(has("\r\n0\r\n\r\n"));
  events.Close();
  drain.join();
}

// A reader that takes nothing is cut, after a last message saying so,
// once the bound waits for it; a reader that keeps up gets everything.
TEST_F(ProxyTest, ASlowEventReaderIsCutAndNothingElseWaits) {
  options_.max_buffered_response = 64 << 10;
  StartProxy({});
  Client slow(proxy_->port());
  slow.Send("GET /api/events HTTP/1.1\r\nHost: t\r\n\r\n");
  Client fast(proxy_->port());
  fast.Send("GET /api/events HTTP/1.1\r\nHost: t\r\n\r\n");
  ASSERT_TRUE(fast.ReadUntil([](const std::string& in) {
    return absl::StrContains(in, "modelStatus");
  }));
  // 12.8 MB: past what the sockets hold for the slow one, and its bound.
  std::string line(32 << 10, 'x');
  for (int i = 0; i < 400; ++i) {
    proxy_->Log(absl::StrCat("line ", i, " ", line));
    // (Only the newest bytes are searched: 12.8 MB arrive.)
    std::string want = absl::StrCat("line ", i, " ");
    ASSERT_TRUE(fast.ReadUntil([&](const std::string& in) {
      size_t from = in.size() > (128 << 10) ? in.size() - (128 << 10) : 0;
      return in.find(want, from) != std::string::npos;
    }));
  }
  // The slow one reads at last: what it was sent, the marker, the end.
  ASSERT_TRUE(slow.ReadUntil([](const std::string& in) {
    return absl::EndsWith(in, "\r\n0\r\n\r\n");
  }));
  EXPECT_THAT(slow.in(), ::testing::Not(::testing::HasSubstr("line 399 ")));
  EXPECT_THAT(slow.in(), ::testing::HasSubstr(R"({"type":"dropped")"));
  // The fast one has every line, and goes on.
  proxy_->Log("after the cut");
  EXPECT_TRUE(fast.ReadUntil([](const std::string& in) {
    return in.find("after the cut", in.size() > 4096 ? in.size() - 4096 : 0) !=
           std::string::npos;
  }));
}

}  // namespace
}  // namespace modelplane::proxy
