// The actor's state machine, driven through fakes: a manual clock, scripted
// processes and probes. Deterministic; no sleeps, no real processes.
#include "server/core/actor/model_actor.h"

#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/actor/fake_env.h"

namespace modelplane::actor {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class ModelActorTest : public ::testing::Test {
 protected:
  ModelActorTest() {
    config_.id = "qwen";
    config_.argv = {"llama-server", "--port", "5800"};
    config_.env = {"CUDA_VISIBLE_DEVICES=0"};
    config_.proxy = "http://localhost:5800";
    config_.check_endpoint = "/health";
    config_.health_check_timeout = absl::Seconds(120);
    config_.unload_timeout = absl::Seconds(10);
    config_.ttl = absl::ZeroDuration();
  }

  ModelActor& actor() {
    if (actor_ == nullptr) {
      actor_ = std::make_unique<ModelActor>(
          config_, ActorEnv{&clock_, &launcher_, &prober_}, &revisions_,
          std::make_shared<logs::LogBuffer>(1 << 16),
          [this](const StateEvent& e) { events_.push_back(e); });
    }
    return *actor_;
  }

  // Starts and records the outcome in `results`.
  void StartInto(std::vector<absl::Status>* results) {
    actor().Start([results](absl::Status s) { results->push_back(s); });
  }

  void MakeReady() {
    std::vector<absl::Status> results;
    StartInto(&results);
    clock_.Advance(ModelActor::kFirstProbeDelay);
    ASSERT_TRUE(prober_.Answer(200));
    ASSERT_THAT(results, ElementsAre(absl::OkStatus()));
  }

  State state() { return actor().status().state; }

  std::vector<std::string> Transitions() {
    std::vector<std::string> out;
    for (const StateEvent& e : events_) {
      if (e.old_state != e.new_state) {
        out.push_back(
            absl::StrCat(StateName(e.old_state), "->", StateName(e.new_state)));
      }
    }
    return out;
  }

  config::ModelConfig config_;
  FakeClock clock_;
  FakeLauncher launcher_;
  FakeProber prober_;
  uint64_t revisions_ = 0;
  std::vector<StateEvent> events_;
  std::unique_ptr<ModelActor> actor_;
};

// ${GPU} with no placement (no NVML): the first GPU the model may use (0
// when any), and no CUDA_VISIBLE_DEVICES of the manager's; placed: the
// GPUs, with CUDA_VISIBLE_DEVICES and the PCI order.
TEST_F(ModelActorTest, TheGpuMacroWithAndWithoutAPlacement) {
  config_.resources.set = true;
  config_.resources.gpus = {2, 3};
  config_.argv = {"srv", "--port", "5800", "--device=${GPU}"};
  config_.env = {"DEV=${GPU}"};
  std::vector<absl::Status> results;
  StartInto(&results);
  EXPECT_THAT(launcher_.last().spec.argv,
              ElementsAre("srv", "--port", "5800", "--device=2"));
  EXPECT_THAT(launcher_.last().spec.env, ElementsAre("DEV=2"));
}

TEST_F(ModelActorTest, TheGpuMacroOfAPlacedModel) {
  config_.resources.set = true;
  config_.argv = {"srv", "--port", "5800", "--device=${GPU}"};
  config_.env = {"DEV=${GPU}"};
  actor().set_gpus({1, 3});
  std::vector<absl::Status> results;
  StartInto(&results);
  EXPECT_THAT(launcher_.last().spec.argv,
              ElementsAre("srv", "--port", "5800", "--device=1,3"));
  EXPECT_THAT(launcher_.last().spec.env,
              ElementsAre("DEV=1,3", "CUDA_DEVICE_ORDER=PCI_BUS_ID",
                          "CUDA_VISIBLE_DEVICES=1,3"));
}

TEST_F(ModelActorTest, StartSpawnsProbesAndBecomesReady) {
  std::vector<absl::Status> results;
  StartInto(&results);
  EXPECT_EQ(state(), State::kStarting);
  ASSERT_EQ(launcher_.spawned().size(), 1u);
  EXPECT_THAT(launcher_.last().spec.argv,
              ElementsAre("llama-server", "--port", "5800"));
  EXPECT_THAT(launcher_.last().spec.env, ElementsAre("CUDA_VISIBLE_DEVICES=0"));
  EXPECT_EQ(actor().status().pid, 1000);
  EXPECT_EQ(prober_.total(), 0);
  clock_.Advance(ModelActor::kFirstProbeDelay);
  ASSERT_EQ(prober_.in_flight(), 1);
  EXPECT_EQ(prober_.last_url(), "http://localhost:5800/health");
  ASSERT_TRUE(prober_.Answer(503));
  EXPECT_THAT(results, IsEmpty());
  clock_.Advance(absl::Milliseconds(3));
  ASSERT_TRUE(prober_.Answer(200));
  EXPECT_THAT(results, ElementsAre(absl::OkStatus()));
  EXPECT_EQ(state(), State::kReady);
  EXPECT_EQ(actor().status().last_used, clock_.Now());
  EXPECT_THAT(Transitions(),
              ElementsAre("STOPPED->STARTING", "STARTING->READY"));
}

TEST_F(ModelActorTest, ProbesBackOffToTheCapAndRefusalsKeepWaiting) {
  std::vector<absl::Status> results;
  StartInto(&results);
  absl::Duration expected = ModelActor::kFirstProbeDelay;
  for (int i = 0; i < 20; ++i) {
    clock_.Advance(expected - absl::Microseconds(1));
    EXPECT_EQ(prober_.in_flight(), 0) << "probe " << i << " came early";
    clock_.Advance(absl::Microseconds(1));
    ASSERT_EQ(prober_.in_flight(), 1) << "probe " << i;
    prober_.Answer(absl::UnavailableError("connection refused"));
    expected = std::min(expected * ModelActor::kProbeBackoff,
                        ModelActor::kMaxProbeInterval);
  }
  EXPECT_EQ(expected, ModelActor::kMaxProbeInterval);
  EXPECT_EQ(state(), State::kStarting);
  EXPECT_THAT(results, IsEmpty());
}

TEST_F(ModelActorTest, ReadyPatternProbesAtOnce) {
  config_.ready_pattern = "server is listening";
  std::vector<absl::Status> results;
  StartInto(&results);
  launcher_.last().Print("loading model\nmain: server is listen");
  EXPECT_EQ(prober_.total(), 0);
  launcher_.last().Print("ing on http://127.0.0.1:5800\n");
  ASSERT_EQ(prober_.in_flight(), 1);  // No clock advance needed.
  prober_.Answer(200);
  EXPECT_THAT(results, ElementsAre(absl::OkStatus()));
}

TEST_F(ModelActorTest, ReadyPatternDuringAProbeProbesAgainRightAfter) {
  config_.ready_pattern = "ready";
  std::vector<absl::Status> results;
  StartInto(&results);
  clock_.Advance(ModelActor::kFirstProbeDelay);
  ASSERT_EQ(prober_.in_flight(), 1);
  launcher_.last().Print("ready\n");
  EXPECT_EQ(prober_.in_flight(), 1);
  prober_.Answer(503);                // Sent before readiness.
  ASSERT_EQ(prober_.in_flight(), 1);  // Again, without waiting.
  prober_.Answer(200);
  EXPECT_THAT(results, ElementsAre(absl::OkStatus()));
}

TEST_F(ModelActorTest, OutputGoesToTheLogAndLinesToTheSink) {
  std::vector<std::string> lines;
  actor().set_line_sink([&](const std::string& model, absl::string_view line) {
    lines.push_back(absl::StrCat(model, ": ", line));
  });
  std::vector<absl::Status> results;
  StartInto(&results);
  launcher_.last().Print("first li");
  launcher_.last().Print("ne\nsecond\nthi");
  EXPECT_THAT(lines, ElementsAre("qwen: first line", "qwen: second"));
  uint64_t offset = 0;
  // Each run is marked where it begins and ends (mpctl logs shows runs one
  // after another).
  EXPECT_EQ(actor().log()->Read(&offset, 1024).data,
            "[modelplane] ---- qwen started, pid 1000, at 1970-01-12 "
            "13:46:40.000 UTC ----\nfirst line\nsecond\nthi");
  clock_.Advance(absl::Milliseconds(1500));
  launcher_.last().Exit(ExitStatus::Code(3));
  EXPECT_EQ(actor().log()->Read(&offset, 1024).data,
            "\n[modelplane] ---- qwen (pid 1000) exited (exit code 3) at "
            "1970-01-12 13:46:41.500 UTC after 1.5s ----\n");
  // The failure's last lines are the run's own, no marker among them.
  EXPECT_THAT(actor().status().failure->last_lines,
              ElementsAre("first line", "second", "thi"));
}

TEST_F(ModelActorTest, ConcurrentStartsShareOneSpawn) {
  std::vector<absl::Status> results;
  for (int i = 0; i < 50; ++i) StartInto(&results);
  EXPECT_EQ(launcher_.spawned().size(), 1u);
  clock_.Advance(ModelActor::kFirstProbeDelay);
  prober_.Answer(200);
  ASSERT_EQ(results.size(), 50u);
  for (const absl::Status& s : results) EXPECT_TRUE(s.ok()) << s;
  StartInto(&results);  // Ready: answered at once.
  EXPECT_EQ(results.size(), 51u);
  EXPECT_EQ(launcher_.spawned().size(), 1u);
}

TEST_F(ModelActorTest, CheckEndpointNoneIsReadyAtSpawn) {
  config_.check_endpoint = "";
  std::vector<absl::Status> results;
  StartInto(&results);
  EXPECT_THAT(results, ElementsAre(absl::OkStatus()));
  EXPECT_EQ(prober_.total(), 0);
}

TEST_F(ModelActorTest, HealthCheckTimeoutFailsStopsAndReportsFailed) {
  config_.health_check_timeout = absl::Seconds(5);
  std::vector<absl::Status> results;
  StartInto(&results);
  launcher_.last().Print("loading tensors 10%\n");
  for (int i = 0; i < 200 && results.empty(); ++i) {
    clock_.Advance(absl::Milliseconds(50));
    prober_.Answer(503);
  }
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(results[0].message(),
              HasSubstr("not ready within healthCheckTimeout (5s)"));
  // Answered while STOPPING (no `failure` yet): the reason rides along.
  EXPECT_EQ(FailureReasonOf(results[0]), FailureReason::kHealthCheckTimeout);
  EXPECT_EQ(FailureReasonOf(absl::FailedPreconditionError("x")), std::nullopt);
  EXPECT_EQ(state(), State::kStopping);
  EXPECT_THAT(launcher_.last().signals, ElementsAre(SIGTERM));
  EXPECT_EQ(prober_.in_flight(), 0);
  launcher_.last().Exit(ExitStatus::Signaled(SIGTERM));
  ASSERT_EQ(state(), State::kFailed);
  const Failure& f = *actor().status().failure;
  EXPECT_EQ(f.reason, FailureReason::kHealthCheckTimeout);
  EXPECT_THAT(f.last_lines, ElementsAre("loading tensors 10%"));
  EXPECT_THAT(Transitions(),
              ElementsAre("STOPPED->STARTING", "STARTING->STOPPING",
                          "STOPPING->FAILED"));
}

TEST_F(ModelActorTest, ExitDuringStartKeepsExitCodeAndLastLines) {
  std::vector<absl::Status> results;
  StartInto(&results);
  launcher_.last().Print("ggml_cuda_init: found 1 CUDA device\n");
  launcher_.last().Print("CUDA error: out of memory\n");
  launcher_.last().Exit(ExitStatus::Code(1));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(results[0].message(),
            "model qwen: exited before it was ready (exit code 1): CUDA "
            "error: out of memory");
  ASSERT_EQ(state(), State::kFailed);
  const Failure& f = *actor().status().failure;
  EXPECT_EQ(f.reason, FailureReason::kExitedDuringStart);
  EXPECT_EQ(f.exit->exit_code, 1);
  EXPECT_EQ(f.last_lines.back(), "CUDA error: out of memory");
  EXPECT_EQ(actor().status().pid, 0);
  EXPECT_EQ(clock_.pending(), 0u);  // No timer left behind.
}

TEST_F(ModelActorTest, CrashWhileReadyIsFailedAndTheNextStartRestarts) {
  MakeReady();
  launcher_.last().Exit(ExitStatus::Signaled(SIGSEGV));
  ASSERT_EQ(state(), State::kFailed);
  EXPECT_EQ(actor().status().failure->reason, FailureReason::kCrashed);
  EXPECT_EQ(actor().status().failure->exit->ToString(), "killed by SIGSEGV");
  EXPECT_EQ(launcher_.spawned().size(), 1u);  // No automatic restart.
  MakeReady();
  EXPECT_EQ(launcher_.spawned().size(), 2u);
  EXPECT_FALSE(actor().status().failure.has_value());
}

TEST_F(ModelActorTest, SpawnErrorIsFailed) {
  launcher_.FailNextSpawn(
      absl::NotFoundError("llama-server: not found in PATH"));
  std::vector<absl::Status> results;
  StartInto(&results);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].message(),
            "model qwen: spawn error: llama-server: not found in PATH");
  EXPECT_EQ(actor().status().failure->reason, FailureReason::kSpawnError);
  EXPECT_FALSE(actor().status().failure->exit.has_value());
}

TEST_F(ModelActorTest, StopDuringStartAbortsWaitersAndStops) {
  std::vector<absl::Status> results;
  StartInto(&results);
  StartInto(&results);
  bool stopped = false;
  actor().Stop([&] { stopped = true; });
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].code(), absl::StatusCode::kAborted);
  EXPECT_EQ(results[1].code(), absl::StatusCode::kAborted);
  EXPECT_EQ(state(), State::kStopping);
  EXPECT_FALSE(stopped);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(prober_.total(), 0);  // No probing while stopping.
  launcher_.last().Exit(ExitStatus::Code(0));
  EXPECT_TRUE(stopped);
  EXPECT_EQ(state(), State::kStopped);
  EXPECT_TRUE(launcher_.last().destroyed);
}

TEST_F(ModelActorTest, StartDuringStopWaitsForTheReapThenStarts) {
  MakeReady();
  actor().Stop(nullptr);
  std::vector<absl::Status> results;
  StartInto(&results);
  EXPECT_EQ(launcher_.spawned().size(), 1u);  // Not before the reap.
  launcher_.last().Exit(ExitStatus::Signaled(SIGTERM));
  EXPECT_EQ(state(), State::kStarting);
  EXPECT_EQ(launcher_.spawned().size(), 2u);
  clock_.Advance(ModelActor::kFirstProbeDelay);
  prober_.Answer(200);
  EXPECT_THAT(results, ElementsAre(absl::OkStatus()));
}

TEST_F(ModelActorTest, StopEscalatesToSigkillAfterUnloadTimeoutNotBefore) {
  MakeReady();
  actor().Stop(nullptr);
  EXPECT_THAT(launcher_.last().signals, ElementsAre(SIGTERM));
  clock_.Advance(config_.unload_timeout - absl::Milliseconds(1));
  EXPECT_THAT(launcher_.last().signals, ElementsAre(SIGTERM));
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_THAT(launcher_.last().signals, ElementsAre(SIGTERM, SIGKILL));
  launcher_.last().Exit(ExitStatus::Signaled(SIGKILL));
  EXPECT_EQ(state(), State::kStopped);
}

TEST_F(ModelActorTest, StopIsIdempotentAndJoinsAStopInProgress) {
  int done = 0;
  actor().Stop([&] { ++done; });
  EXPECT_EQ(done, 1);  // Already stopped.
  MakeReady();
  actor().Stop([&] { ++done; });
  actor().Stop([&] { ++done; });
  EXPECT_EQ(done, 1);
  EXPECT_THAT(launcher_.last().signals, ElementsAre(SIGTERM));
  launcher_.last().Exit(ExitStatus::Code(0));
  EXPECT_EQ(done, 3);
}

TEST_F(ModelActorTest, CmdStopGetsThePidAndTheStopWaitsForIt) {
  config_.cmd_stop = {"docker", "stop", "--pid=${PID}", "qwen"};
  MakeReady();
  actor().Stop(nullptr);
  ASSERT_EQ(launcher_.spawned().size(), 2u);
  FakeProcessRecord& stop = *launcher_.spawned()[1];
  EXPECT_THAT(stop.spec.argv,
              ElementsAre("docker", "stop", "--pid=1000", "qwen"));
  EXPECT_THAT(stop.spec.env, ElementsAre("CUDA_VISIBLE_DEVICES=0"));
  EXPECT_THAT(launcher_.spawned()[0]->signals, IsEmpty());  // No SIGTERM.
  launcher_.spawned()[0]->Exit(ExitStatus::Code(0));
  EXPECT_EQ(state(), State::kStopping);  // cmdStop still runs.
  stop.Exit(ExitStatus::Code(0));
  EXPECT_EQ(state(), State::kStopped);
}

TEST_F(ModelActorTest, HangingCmdStopIsKilledWithTheModel) {
  config_.cmd_stop = {"slow-stop"};
  MakeReady();
  actor().Stop(nullptr);
  clock_.Advance(config_.unload_timeout);
  EXPECT_THAT(launcher_.spawned()[0]->signals, ElementsAre(SIGKILL));
  EXPECT_THAT(launcher_.spawned()[1]->signals, ElementsAre(SIGKILL));
  launcher_.spawned()[1]->Exit(ExitStatus::Signaled(SIGKILL));
  launcher_.spawned()[0]->Exit(ExitStatus::Signaled(SIGKILL));
  EXPECT_EQ(state(), State::kStopped);
}

TEST_F(ModelActorTest, TtlUnloadsAfterIdleTime) {
  config_.ttl = absl::Seconds(60);
  MakeReady();
  clock_.Advance(absl::Seconds(59));
  EXPECT_EQ(state(), State::kReady);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(state(), State::kStopping);
  EXPECT_THAT(launcher_.last().signals, ElementsAre(SIGTERM));
}

TEST_F(ModelActorTest, TtlNeverRunsWhileALeaseIsHeldAndCountsFromLastUse) {
  config_.ttl = absl::Seconds(60);
  MakeReady();
  actor().AddLease();
  clock_.Advance(absl::Seconds(600));
  EXPECT_EQ(state(), State::kReady);
  // The holder's last request ended 20 s ago.
  actor().ReleaseLease(clock_.Now() - absl::Seconds(20));
  clock_.Advance(absl::Seconds(39));
  EXPECT_EQ(state(), State::kReady);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(state(), State::kStopping);
}

TEST_F(ModelActorTest, StartRacingATtlStopRestartsCleanly) {
  // llama-swap #946: a TTL unload racing a new request deadlocked.
  config_.ttl = absl::Seconds(5);
  MakeReady();
  clock_.Advance(absl::Seconds(5));
  ASSERT_EQ(state(), State::kStopping);
  std::vector<absl::Status> results;
  StartInto(&results);
  launcher_.last().Exit(ExitStatus::Signaled(SIGTERM));
  clock_.Advance(ModelActor::kFirstProbeDelay);
  prober_.Answer(200);
  EXPECT_THAT(results, ElementsAre(absl::OkStatus()));
  EXPECT_EQ(launcher_.spawned().size(), 2u);
}

TEST_F(ModelActorTest, StopAfterAStartQueuedBehindAStopAbortsIt) {
  MakeReady();
  actor().Stop(nullptr);
  std::vector<absl::Status> results;
  StartInto(&results);
  actor().Stop(nullptr);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].code(), absl::StatusCode::kAborted);
  launcher_.last().Exit(ExitStatus::Code(0));
  EXPECT_EQ(state(), State::kStopped);
  EXPECT_EQ(launcher_.spawned().size(), 1u);
}

TEST_F(ModelActorTest, ShutdownAnswersEveryoneAndStaysDown) {
  std::vector<absl::Status> results;
  StartInto(&results);
  bool down = false;
  actor().Shutdown([&] { down = true; });
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(down);
  launcher_.last().Exit(ExitStatus::Code(0));
  EXPECT_TRUE(down);
  EXPECT_EQ(state(), State::kShutdown);
  StartInto(&results);
  EXPECT_EQ(results[1].code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(launcher_.spawned().size(), 1u);
}

TEST_F(ModelActorTest, EveryChangeHasAHigherRevision) {
  MakeReady();
  actor().AddLease();
  actor().ReleaseLease(clock_.Now());
  actor().Stop(nullptr);
  launcher_.last().Exit(ExitStatus::Code(0));
  ASSERT_GE(events_.size(), 6u);
  for (size_t i = 1; i < events_.size(); ++i) {
    EXPECT_GT(events_[i].status.revision, events_[i - 1].status.revision);
  }
  EXPECT_EQ(events_.back().status.revision, revisions_);
  EXPECT_EQ(actor().status().revision, revisions_);
}

// Sleep and wake (docs/gpu.md#sleep-and-wake): vLLM's endpoints.
class SleepTest : public ModelActorTest {
 protected:
  SleepTest() {
    config_.sleep.endpoint = "/sleep?level=1";
    config_.wake.endpoint = "/wake_up";
  }
  absl::Status SleepNow() {
    absl::Status out = absl::UnknownError("no answer");
    actor().Sleep([&out](absl::Status s) { out = s; });
    EXPECT_TRUE(
        prober_.AnswerUrl("POST http://localhost:5800/sleep?level=1", 200));
    return out;
  }
};

TEST_F(SleepTest, SleepKeepsTheProcessAndAStartWakesIt) {
  MakeReady();
  ASSERT_TRUE(SleepNow().ok());
  EXPECT_EQ(state(), State::kSleeping);
  EXPECT_NE(actor().status().pid, 0) << "the process stays";
  std::vector<absl::Status> results;
  StartInto(&results);
  EXPECT_EQ(state(), State::kStarting);
  ASSERT_TRUE(prober_.AnswerUrl("POST http://localhost:5800/wake_up", 200));
  clock_.Advance(ModelActor::kFirstProbeDelay);
  ASSERT_TRUE(prober_.AnswerUrl("/health", 200));
  EXPECT_THAT(results, ElementsAre(absl::OkStatus()));
  EXPECT_EQ(state(), State::kReady);
  EXPECT_EQ(launcher_.spawned().size(), 1u) << "no second process";
  EXPECT_THAT(
      Transitions(),
      ElementsAre("STOPPED->STARTING", "STARTING->READY", "READY->SLEEPING",
                  "SLEEPING->STARTING", "STARTING->READY"));
}

TEST_F(SleepTest, AFailedSleepLeavesItReadyAndSaysWhy) {
  MakeReady();
  absl::Status out;
  actor().Sleep([&out](absl::Status s) { out = s; });
  ASSERT_TRUE(prober_.AnswerUrl("POST", 404));
  EXPECT_FALSE(out.ok());
  EXPECT_THAT(std::string(out.message()), HasSubstr("HTTP 404"));
  EXPECT_EQ(state(), State::kReady);
}

TEST_F(SleepTest, AFailedWakeStopsTheProcessAsWakeFailed) {
  MakeReady();
  ASSERT_TRUE(SleepNow().ok());
  std::vector<absl::Status> results;
  StartInto(&results);
  ASSERT_TRUE(prober_.AnswerUrl("POST http://localhost:5800/wake_up", 500));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(absl::IsFailedPrecondition(results[0])) << results[0];
  EXPECT_EQ(state(), State::kStopping);
  launcher_.last().Exit(ExitStatus::Signaled(SIGTERM));
  EXPECT_EQ(state(), State::kFailed);
  EXPECT_EQ(actor().status().failure->reason, FailureReason::kWakeFailed);
}

TEST_F(SleepTest, StopWhileAsleepStopsTheProcess) {
  MakeReady();
  ASSERT_TRUE(SleepNow().ok());
  bool stopped = false;
  actor().Stop([&stopped] { stopped = true; });
  EXPECT_EQ(state(), State::kStopping);
  EXPECT_THAT(launcher_.last().signals, ElementsAre(SIGTERM));
  launcher_.last().Exit(ExitStatus::Signaled(SIGTERM));
  EXPECT_TRUE(stopped);
  EXPECT_EQ(state(), State::kStopped);
}

TEST_F(SleepTest, ExitWhileAsleepIsACrash) {
  MakeReady();
  ASSERT_TRUE(SleepNow().ok());
  launcher_.last().Exit(ExitStatus::Code(1));
  EXPECT_EQ(state(), State::kFailed);
  EXPECT_EQ(actor().status().failure->reason, FailureReason::kCrashed);
}

TEST_F(SleepTest, AStopDuringTheSleepCallAbortsIt) {
  MakeReady();
  absl::Status out;
  actor().Sleep([&out](absl::Status s) { out = s; });
  actor().Stop(nullptr);
  EXPECT_TRUE(absl::IsAborted(out)) << out;
  EXPECT_EQ(prober_.in_flight(), 0) << "the call is cancelled";
  EXPECT_EQ(state(), State::kStopping);
}

TEST_F(SleepTest, ACommandSleepsWithItsPid) {
  config_.sleep = {};
  config_.sleep.argv = {"pause-model", "${PID}"};
  MakeReady();
  int pid = actor().status().pid;
  absl::Status out = absl::UnknownError("no answer");
  actor().Sleep([&out](absl::Status s) { out = s; });
  ASSERT_EQ(launcher_.last().spec.argv,
            (std::vector<std::string>{"pause-model", std::to_string(pid)}));
  launcher_.last().Exit(ExitStatus::Code(0));
  EXPECT_TRUE(out.ok()) << out;
  EXPECT_EQ(state(), State::kSleeping);
}

TEST_F(SleepTest, AModelWithoutSleepCannot) {
  config_.sleep = {};
  config_.wake = {};
  MakeReady();
  absl::Status out;
  actor().Sleep([&out](absl::Status s) { out = s; });
  EXPECT_TRUE(absl::IsFailedPrecondition(out));
  EXPECT_EQ(state(), State::kReady);
}

TEST_F(SleepTest, ASleepThatHangsIsBounded) {
  config_.health_check_timeout = absl::Seconds(30);
  MakeReady();
  absl::Status out = absl::UnknownError("no answer");
  actor().Sleep([&out](absl::Status s) { out = s; });
  clock_.Advance(absl::Seconds(30));
  EXPECT_TRUE(absl::IsDeadlineExceeded(out)) << out;
  EXPECT_EQ(prober_.in_flight(), 0) << "the call is cancelled";
  EXPECT_EQ(state(), State::kReady);
}

TEST_F(SleepTest, ItsTtlRunsWhileAsleep) {
  config_.ttl = absl::Seconds(60);
  MakeReady();
  ASSERT_TRUE(SleepNow().ok());
  clock_.Advance(absl::Seconds(61));
  EXPECT_EQ(state(), State::kStopping);
  EXPECT_THAT(launcher_.last().signals, ElementsAre(SIGTERM));
}

TEST_F(SleepTest, AReloadThatRemovesSleepStopsASleepingModel) {
  MakeReady();
  ASSERT_TRUE(SleepNow().ok());
  config::ModelConfig changed = config_;
  changed.sleep = {};
  changed.wake = {};
  actor().UpdateConfig(changed);
  EXPECT_EQ(state(), State::kStopping);
}

}  // namespace
}  // namespace modelplane::actor
