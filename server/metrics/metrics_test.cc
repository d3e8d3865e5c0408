// modelmanager's metrics: what the counters make of a model's changes, and
// the HTTP server over a real socket.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/metrics/manager_metrics.h"
#include "server/metrics/metrics_server.h"

namespace modelplane::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

scheduler::ModelChange Change(const std::string& id, actor::State state,
                              absl::Time since) {
  auto config = std::make_shared<config::ModelConfig>();
  config->id = id;
  scheduler::ModelChange c{scheduler::ModelChange::Kind::kModified, {}};
  c.view.config = config;
  c.view.status.state = state;
  c.view.status.state_since = since;
  return c;
}

TEST(ManagerMetricsTest, CountsStartsStopsFailuresAndStartDurations) {
  ManagerMetrics m;
  absl::Time t = absl::FromUnixSeconds(1000);
  int causes_asked = 0;
  auto cause = [&causes_asked](const char* c) {
    return [&causes_asked, c] {
      ++causes_asked;
      return std::string(c);
    };
  };
  m.OnChange(Change("a", actor::State::kStopped, t), cause("x"));
  m.OnChange(Change("a", actor::State::kStarting, t), cause("x"));
  m.OnChange(Change("a", actor::State::kStarting, t), cause("x"));  // Same.
  m.OnChange(Change("a", actor::State::kReady, t + absl::Seconds(3)),
             cause("x"));
  m.OnChange(Change("a", actor::State::kStopping, t + absl::Seconds(9)),
             cause("swap"));
  m.OnChange(Change("a", actor::State::kStopped, t + absl::Seconds(10)),
             cause("x"));
  m.OnChange(Change("a", actor::State::kStarting, t + absl::Seconds(20)),
             cause("x"));
  scheduler::ModelChange failed =
      Change("a", actor::State::kFailed, t + absl::Seconds(21));
  failed.view.status.failure =
      actor::Failure{actor::FailureReason::kExitedDuringStart, {}, {}, {}};
  m.OnChange(failed, cause("x"));
  m.OnReload(true);
  m.OnReload(false);
  m.OnReload(false);
  EXPECT_EQ(causes_asked, 1);  // Only for the stop.
  scheduler::SchedulerCounters counters;
  counters.evictions["a"] = 1;
  counters.swaps["b"] = 1;
  std::vector<scheduler::ModelView> models(1);
  models[0] = Change("a", actor::State::kFailed, t).view;
  models[0].queued = 2;
  std::string text = m.Render(models, counters, 3);
  EXPECT_THAT(text, HasSubstr("modelmanager_model_state{model=\"a\","
                              "state=\"failed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("modelmanager_model_state{model=\"a\","
                              "state=\"ready\"} 0\n"));
  EXPECT_THAT(text,
              HasSubstr("modelmanager_model_queued_requests{model=\"a\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("modelmanager_model_starts_total{model=\"a\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("modelmanager_model_stops_total{model=\"a\","
                              "cause=\"swap\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("modelmanager_model_failures_total{model=\"a\","
                              "reason=\"exited_during_start\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("modelmanager_model_start_duration_seconds_"
                              "bucket{model=\"a\",le=\"2.5\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("modelmanager_model_start_duration_seconds_"
                              "bucket{model=\"a\",le=\"5\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("modelmanager_model_start_duration_seconds_"
                              "sum{model=\"a\"} 3\n"));
  EXPECT_THAT(text,
              HasSubstr("modelmanager_model_evictions_total{model=\"a\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("modelmanager_model_swaps_total{model=\"b\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("modelmanager_watch_clients 3\n"));
  EXPECT_THAT(text, HasSubstr("modelmanager_reloads_total{result=\"error\"} "
                              "2\n"));
}

std::string Get(int port, const std::string& request) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(write(fd, request.data(), request.size()),
            static_cast<ssize_t>(request.size()));
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  close(fd);
  return out;
}

TEST(MetricsServerTest, AnswersGetMetricsAndNothingElse) {
  int renders = 0;
  auto server = MetricsServer::Start("127.0.0.1:0", [&renders] {
    ++renders;
    return std::string("up 1\n");
  });
  ASSERT_TRUE(server.ok()) << server.status();
  int port = (*server)->port();
  ASSERT_GT(port, 0);
  std::string ok = Get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_THAT(ok, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(ok, HasSubstr("Content-Type: text/plain; version=0.0.4"));
  EXPECT_THAT(ok, HasSubstr("\r\n\r\nup 1\n"));
  EXPECT_THAT(Get(port, "GET / HTTP/1.1\r\n\r\n"), StartsWith("HTTP/1.1 404 "));
  EXPECT_THAT(Get(port, "POST /metrics HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 405 "));
  EXPECT_THAT(Get(port, "nonsense\r\n\r\n"), StartsWith("HTTP/1.1 400 "));
  std::string head = Get(port, "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_THAT(head, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(head, Not(HasSubstr("up 1")));
  EXPECT_EQ(renders, 2);
  EXPECT_FALSE(MetricsServer::Start("nope", [] { return ""; }).ok());
  EXPECT_FALSE(MetricsServer::Start("127.0.0.1:99999", [] { return ""; }).ok());
  // The port is taken: an error, not a second listener.
  EXPECT_FALSE(MetricsServer::Start(absl::StrCat("127.0.0.1:", port), [] {
                 return "";
               }).ok());
}

// A scraper that asks and never reads holds the server only for a bounded
// time: it stops (the shutdown joins its thread) while that client is
// still connected. (A hang here fails the test by its timeout.)
TEST(MetricsServerTest, AClientThatDoesNotReadDoesNotHoldTheShutdown) {
  auto server = MetricsServer::Start("127.0.0.1:0", [] {
    return std::string(32 << 20, 'x');  // Past every socket buffer.
  });
  ASSERT_TRUE(server.ok()) << server.status();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>((*server)->port()));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  std::string request = "GET /metrics HTTP/1.1\r\n\r\n";
  ASSERT_EQ(write(fd, request.data(), request.size()),
            static_cast<ssize_t>(request.size()));
  char first = 0;
  ASSERT_EQ(read(fd, &first, 1), 1);  // The server is sending now.
  server->reset();                    // Returns: the stalled send gave up.
  close(fd);
}

}  // namespace
}  // namespace modelplane::metrics
