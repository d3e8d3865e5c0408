// Model actors with real processes (tools/fake_upstream), real health probes
// and real timers: every lifecycle path the control plane depends on.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/actor/model_actor.h"
#include "server/runtime/actor_host.h"
#include "server/runtime/test_util.h"

namespace modelplane {
namespace {

using actor::FailureReason;
using actor::ModelActor;
using actor::State;
using runtime::ProcessAlive;
using runtime::Runfile;
using runtime::WaitFor;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(20);

// A thread-safe record of one call's outcome.
class Outcome {
 public:
  void Set(absl::Status s) {
    absl::MutexLock lock(&mu_);
    status_ = std::move(s);
  }
  std::optional<absl::Status> Get() const {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  absl::Status Wait() const {
    EXPECT_TRUE(WaitFor([&] { return Get().has_value(); }, kWait, "outcome"));
    return Get().value_or(absl::InternalError("no outcome"));
  }

 private:
  mutable absl::Mutex mu_;
  std::optional<absl::Status> status_;
};

class ModelActorRealTest : public ::testing::Test {
 protected:
  ModelActorRealTest() {
    config_.id = "fake";
    config_.check_endpoint = "/health";
    config_.health_check_timeout = absl::Seconds(30);
    config_.unload_timeout = absl::Seconds(10);
    config_.ttl = absl::ZeroDuration();
  }

  ~ModelActorRealTest() override {
    if (actor_ != nullptr) {
      // Stopped and reaped before the loop ends, as the manager does: a
      // process's state in the launcher frees itself once it is reaped.
      Outcome stopped;
      Stop(&stopped);
      EXPECT_TRUE(stopped.Wait().ok());
    }
    host_.loop().RunSync([this] { actor_.reset(); });
  }

  // fake_upstream on a free port chosen by the test (the actor needs the
  // URL before spawn, like a llama-swap ${PORT}).
  void UseFakeUpstream(std::vector<std::string> flags) {
    port_ = FreePort();
    config_.argv = {Runfile("tools/fake_upstream/fake_upstream"), "--port",
                    std::to_string(port_)};
    config_.argv.insert(config_.argv.end(), flags.begin(), flags.end());
    config_.proxy = "http://127.0.0.1:" + std::to_string(port_);
  }

  static int FreePort() {
    // Bind port 0, read the port, release it: good enough on a test host.
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    close(fd);
    return ntohs(addr.sin_port);
  }

  void Create(size_t log_capacity = 1 << 20) {
    log_ = std::make_shared<logs::LogBuffer>(log_capacity);
    host_.loop().RunSync([&] {
      actor_ = std::make_unique<ModelActor>(config_, host_.env(),
                                            host_.revisions(), log_,
                                            [this](const actor::StateEvent& e) {
                                              absl::MutexLock lock(&mu_);
                                              events_.push_back(e);
                                            });
    });
  }

  void Start(Outcome* out) {
    host_.loop().Post([this, out] {
      actor_->Start([out](absl::Status s) { out->Set(std::move(s)); });
    });
  }

  void Stop(Outcome* out) {
    host_.loop().Post(
        [this, out] { actor_->Stop([out] { out->Set(absl::OkStatus()); }); });
  }

  actor::ModelStatus Status() {
    actor::ModelStatus s;
    host_.loop().RunSync([&] { s = actor_->status(); });
    return s;
  }

  ::testing::AssertionResult WaitForState(State want) {
    return WaitFor([&] { return Status().state == want; }, kWait,
                   std::string("state ") + actor::StateName(want));
  }

  std::string Log() {
    uint64_t offset = log_->begin_offset();
    return log_->Read(&offset, 1 << 20).data;
  }

  // When the actor entered `state` the last time.
  absl::Time EnteredAt(State state) {
    absl::MutexLock lock(&mu_);
    for (auto it = events_.rbegin(); it != events_.rend(); ++it) {
      if (it->new_state == state && it->old_state != state) {
        return it->status.state_since;
      }
    }
    return absl::InfinitePast();
  }

  runtime::ActorHost host_;
  config::ModelConfig config_;
  int port_ = 0;
  std::shared_ptr<logs::LogBuffer> log_;
  std::unique_ptr<ModelActor> actor_;
  absl::Mutex mu_;
  std::vector<actor::StateEvent> events_;
};

TEST_F(ModelActorRealTest, StartsAndBecomesReadyWhenHealthy) {
  UseFakeUpstream({"--ready-after-ms", "200"});
  Create();
  Outcome started;
  Start(&started);
  EXPECT_TRUE(WaitForState(State::kStarting));
  ASSERT_TRUE(started.Wait().ok()) << started.Wait();
  actor::ModelStatus s = Status();
  EXPECT_EQ(s.state, State::kReady);
  EXPECT_TRUE(ProcessAlive(s.pid));
  EXPECT_THAT(Log(), HasSubstr("listening on 127.0.0.1:"));
}

TEST_F(ModelActorRealTest, ReadyPatternMakesItReadyAtOnce) {
  UseFakeUpstream(
      {"--ready-after-ms", "300", "--ready-line", "main: server is listening"});
  config_.ready_pattern = "server is listening";
  Create();
  Outcome started;
  Start(&started);
  ASSERT_TRUE(started.Wait().ok());
  EXPECT_THAT(Log(), HasSubstr("main: server is listening"));
}

TEST_F(ModelActorRealTest, FiftyConcurrentStartsSpawnOnce) {
  UseFakeUpstream({"--ready-after-ms", "100"});
  Create();
  std::vector<Outcome> outcomes(50);
  std::vector<std::thread> threads;
  for (Outcome& o : outcomes) threads.emplace_back([&] { Start(&o); });
  for (std::thread& t : threads) t.join();
  for (Outcome& o : outcomes) EXPECT_TRUE(o.Wait().ok());
  // One process: one "listening" line, and the pid never changed.
  std::string log = Log();
  EXPECT_EQ(log.find("listening on"), log.rfind("listening on"));
  int pids = 0;
  absl::MutexLock lock(&mu_);
  int last_pid = 0;
  for (const actor::StateEvent& e : events_) {
    if (e.status.pid != 0 && e.status.pid != last_pid) {
      ++pids;
      last_pid = e.status.pid;
    }
  }
  EXPECT_EQ(pids, 1);
}

TEST_F(ModelActorRealTest, StartDuringStopRestartsAfterTheReap) {
  UseFakeUpstream({});
  Create();
  Outcome first, stopped, second;
  Start(&first);
  ASSERT_TRUE(first.Wait().ok());
  int old_pid = Status().pid;
  Stop(&stopped);
  Start(&second);
  ASSERT_TRUE(second.Wait().ok()) << second.Wait();
  EXPECT_TRUE(stopped.Wait().ok());
  EXPECT_FALSE(ProcessAlive(old_pid));
  EXPECT_NE(Status().pid, old_pid);
  EXPECT_EQ(Status().state, State::kReady);
}

TEST_F(ModelActorRealTest, StopDuringStartAbortsAndLeavesNoProcess) {
  UseFakeUpstream({"--ready-after-ms", "60000"});
  Create();
  Outcome started, stopped;
  Start(&started);
  ASSERT_TRUE(WaitFor([&] { return Status().pid != 0; }, kWait, "pid"));
  int pid = Status().pid;
  Stop(&stopped);
  EXPECT_EQ(started.Wait().code(), absl::StatusCode::kAborted);
  EXPECT_TRUE(stopped.Wait().ok());
  EXPECT_EQ(Status().state, State::kStopped);
  EXPECT_FALSE(ProcessAlive(pid));
}

TEST_F(ModelActorRealTest, HealthCheckTimeoutFailsAndKillsTheProcess) {
  UseFakeUpstream({"--ready-after-ms", "60000"});
  config_.health_check_timeout = absl::Milliseconds(300);
  Create();
  Outcome started;
  Start(&started);
  absl::Status s = started.Wait();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("not ready within healthCheckTimeout"));
  ASSERT_TRUE(WaitForState(State::kFailed));
  actor::ModelStatus st = Status();
  EXPECT_EQ(st.failure->reason, FailureReason::kHealthCheckTimeout);
  EXPECT_EQ(st.pid, 0);
}

TEST_F(ModelActorRealTest, ExitDuringStartKeepsTheCodeAndLastLines) {
  UseFakeUpstream({"--exit-immediately", "3"});
  Create();
  Outcome started;
  Start(&started);
  absl::Status s = started.Wait();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("(exit code 3)"));
  actor::ModelStatus st = Status();
  ASSERT_EQ(st.state, State::kFailed);
  EXPECT_EQ(st.failure->reason, FailureReason::kExitedDuringStart);
  EXPECT_EQ(st.failure->exit->exit_code, 3);
  EXPECT_THAT(st.failure->last_lines.back(),
              HasSubstr("exiting at once with code 3"));
}

TEST_F(ModelActorRealTest, CrashWhileReadyIsFailedCrashed) {
  UseFakeUpstream({"--crash-after-ms", "300"});
  Create();
  Outcome started;
  Start(&started);
  ASSERT_TRUE(started.Wait().ok());
  ASSERT_TRUE(WaitForState(State::kFailed));
  actor::ModelStatus st = Status();
  EXPECT_EQ(st.failure->reason, FailureReason::kCrashed);
  EXPECT_EQ(st.failure->exit->signal, SIGSEGV);
}

TEST_F(ModelActorRealTest, IgnoredSigtermIsKilledAfterUnloadTimeoutNotBefore) {
  UseFakeUpstream({"--ignore-sigterm"});
  config_.unload_timeout = absl::Milliseconds(700);
  Create();
  Outcome started, stopped;
  Start(&started);
  ASSERT_TRUE(started.Wait().ok());
  int pid = Status().pid;
  Stop(&stopped);
  ASSERT_TRUE(stopped.Wait().ok());
  EXPECT_THAT(Log(), HasSubstr("ignoring SIGTERM"));
  EXPECT_FALSE(ProcessAlive(pid));
  // The SIGKILL came only after the grace period (a lower bound that the
  // timer guarantees; not a speed assertion).
  EXPECT_GE(EnteredAt(State::kStopped) - EnteredAt(State::kStopping),
            config_.unload_timeout);
}

TEST_F(ModelActorRealTest, ForkedGrandchildDoesNotHangTheStop) {
  UseFakeUpstream({"--fork-child"});
  Create();
  Outcome started, stopped;
  Start(&started);
  ASSERT_TRUE(started.Wait().ok());
  std::string log = Log();
  size_t at = log.find("forked child pid ");
  ASSERT_NE(at, std::string::npos);
  int grandchild = std::stoi(log.substr(at + 17));
  ASSERT_TRUE(ProcessAlive(grandchild));
  Stop(&stopped);
  ASSERT_TRUE(stopped.Wait().ok());
  EXPECT_FALSE(ProcessAlive(grandchild));
  // The model exited on SIGTERM: the stop never needed the SIGKILL.
  EXPECT_LT(EnteredAt(State::kStopped) - EnteredAt(State::kStopping),
            config_.unload_timeout);
}

TEST_F(ModelActorRealTest, CmdStopRunsWithThePid) {
  UseFakeUpstream({});
  config_.cmd_stop = {"kill", "-INT", "${PID}"};
  Create();
  Outcome started, stopped;
  Start(&started);
  ASSERT_TRUE(started.Wait().ok());
  Stop(&stopped);
  ASSERT_TRUE(stopped.Wait().ok());
  // SIGINT, from cmdStop, not the SIGTERM it would get otherwise.
  EXPECT_THAT(Log(), HasSubstr("received Interrupt, exiting"));
  EXPECT_EQ(Status().state, State::kStopped);
}

TEST_F(ModelActorRealTest, MissingBinaryIsASpawnError) {
  config_.argv = {"no-such-llama-server", "-m", "x.gguf"};
  config_.proxy = "http://127.0.0.1:1";
  Create();
  Outcome started;
  Start(&started);
  absl::Status s = started.Wait();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(),
              HasSubstr("no-such-llama-server: not found in PATH"));
  EXPECT_EQ(Status().failure->reason, FailureReason::kSpawnError);
}

TEST_F(ModelActorRealTest, TtlUnloadsAnIdleModel) {
  UseFakeUpstream({});
  config_.ttl = absl::Milliseconds(300);
  Create();
  Outcome started;
  Start(&started);
  ASSERT_TRUE(started.Wait().ok());
  EXPECT_TRUE(WaitForState(State::kStopped));
  EXPECT_THAT(Log(), HasSubstr("idle for its ttl"));
}

TEST_F(ModelActorRealTest, TtlWaitsWhileALeaseIsHeld) {
  UseFakeUpstream({});
  config_.ttl = absl::Milliseconds(200);
  Create();
  Outcome started;
  Start(&started);
  ASSERT_TRUE(started.Wait().ok());
  host_.loop().RunSync([&] { actor_->AddLease(); });
  EXPECT_FALSE(WaitFor([&] { return Status().state != State::kReady; },
                       absl::Seconds(1), "an unload while leased"));
  host_.loop().RunSync([&] { actor_->ReleaseLease(absl::Now()); });
  EXPECT_TRUE(WaitForState(State::kStopped));
}

TEST_F(ModelActorRealTest, SlowLogReaderGetsDropsWhileTheModelRuns) {
  UseFakeUpstream({"--log-every-ms", "1"});
  Create(/*log_capacity=*/2048);
  Outcome started;
  Start(&started);
  ASSERT_TRUE(started.Wait().ok());
  uint64_t reader = log_->end_offset();  // A reader that then stalls.
  ASSERT_TRUE(WaitFor([&] { return log_->end_offset() > reader + 3 * 2048; },
                      kWait, "output past the buffer"));
  logs::LogBuffer::Chunk chunk = log_->Read(&reader, 1 << 20);
  EXPECT_GT(chunk.dropped, 0u);
  EXPECT_EQ(logs::DropMarker(chunk.dropped),
            "[" + std::to_string(chunk.dropped) + " bytes dropped]\n");
  uint64_t end = log_->end_offset();
  EXPECT_TRUE(
      WaitFor([&] { return log_->end_offset() > end; }, kWait, "more output"));
  EXPECT_EQ(Status().state, State::kReady);
}

}  // namespace
}  // namespace modelplane
