// The scheduler when starts fail or their demand goes away: a start known
// to fail evicts nothing (its command cannot run, or it failed moments ago
// and is in its back-off), so a client retrying a 503 cannot tear down the
// model that works; and demand withdrawn before it is served evicts and
// starts nothing.
#include <signal.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/scheduler/scheduler.h"
#include "server/core/scheduler/scheduler_test_util.h"

namespace modelplane::scheduler {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A working model `a` is READY and idle: any start of another model in the
// default group would evict it at once.
class StartFailureTest : public SchedulerTest {
 protected:
  void SetUp() override {
    Load(kThree);
    holder_ = Hold(&a_client_, "a");
    Release(holder_, &a_client_, "a");
  }
  // A Start call's answer.
  absl::Status StartStatus(const std::string& model) {
    absl::Status got = absl::UnknownError("no answer");
    scheduler_->Start(
        model, [&got](absl::StatusOr<ModelView> v) { got = v.status(); });
    Settle();
    return got;
  }
  // b is started (evicting a) and exits before it is ready.
  void BFailsAfterEvictingA() {
    ClientId id = Connect(&b_client_);
    Acquire(id, "b");
    Exits("a");
    ASSERT_TRUE(Alive("b"));
    Proc("b")->Exit(ExitStatus::Code(1));
    Settle();
    ASSERT_EQ(StateOf("b"), State::kFailed);
    // a comes back for its own demand.
    Acquire(holder_, "a");
    Healthy("a");
    Release(holder_, &a_client_, "a");
    ASSERT_EQ(StateOf("a"), State::kReady);
  }

  RecordingClient a_client_, b_client_;
  ClientId holder_ = 0;
};

TEST_F(StartFailureTest, ACommandThatCannotRunFailsWithoutEvictingAnything) {
  launcher_.SetMissing("srv-b",
                       absl::NotFoundError("srv-b: not found in PATH (/bin)"));
  RecordingClient c;
  ClientId id = Connect(&c);
  Acquire(id, "b");
  EXPECT_TRUE(c.Saw("failed b r-b FAILED_PRECONDITION"));
  EXPECT_EQ(StateOf("a"), State::kReady);
  EXPECT_THAT(Proc("a")->signals, IsEmpty());
  EXPECT_EQ(Spawns("b"), 0);
  ModelView b = *scheduler_->Get("b");
  EXPECT_EQ(b.status.state, State::kFailed);
  ASSERT_TRUE(b.status.failure.has_value());
  EXPECT_EQ(b.status.failure->reason, actor::FailureReason::kSpawnError);
  EXPECT_THAT(b.status.failure->message, HasSubstr("srv-b: not found in PATH"));
}

TEST_F(StartFailureTest, AFailedStartBacksOffBeforeItMayEvictAgain) {
  BFailsAfterEvictingA();
  // Retries within the back-off get the failure at once: a stays up.
  absl::Status s = StartStatus("b");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(),
              HasSubstr("exited before it was ready (exit code 1)"));
  EXPECT_THAT(s.message(),
              HasSubstr("failed 0.0s ago; not tried again for 5.0s"));
  RecordingClient retry;
  Acquire(Connect(&retry), "b");
  EXPECT_TRUE(retry.Saw("failed b r-b FAILED_PRECONDITION"));
  EXPECT_EQ(StateOf("a"), State::kReady);
  EXPECT_THAT(Proc("a")->signals, IsEmpty());
  EXPECT_EQ(Spawns("b"), 1);
  // Once it is over, the next start is a real one (and evicts a).
  clock_.Advance(absl::Seconds(5));
  RecordingClient later;
  Acquire(Connect(&later), "b");
  EXPECT_EQ(StateOf("a"), State::kStopping);
  Exits("a");
  EXPECT_EQ(Spawns("b"), 2);
  Proc("b")->Exit(ExitStatus::Code(1));
  Settle();
  // A second failure: twice as long.
  EXPECT_THAT(StartStatus("b").message(),
              HasSubstr("failed 0.0s ago; not tried again for 10.0s"));
  clock_.Advance(absl::Seconds(9));
  EXPECT_THAT(StartStatus("b").message(),
              HasSubstr("failed 9.0s ago; not tried again for 1.0s"));
}

TEST_F(StartFailureTest, ATimedOutStartKeepsItsReasonThroughTheBackoff) {
  ClientId id = Connect(&b_client_);
  Acquire(id, "b");
  Exits("a");
  clock_.Advance(scheduler_->Get("b")->config->health_check_timeout);
  Settle();
  Exits("b");  // Torn down after the timeout.
  absl::Status s = StartStatus("b");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(actor::FailureReasonOf(s),
            actor::FailureReason::kHealthCheckTimeout);
}

TEST_F(StartFailureTest, AStopEndsTheBackoff) {
  BFailsAfterEvictingA();
  bool stopped = false;
  scheduler_->Stop("b", false,
                   [&](absl::StatusOr<ModelView>) { stopped = true; });
  Settle();
  EXPECT_TRUE(stopped);
  RecordingClient c;
  Acquire(Connect(&c), "b");
  EXPECT_EQ(StateOf("a"), State::kStopping);  // A real start again.
}

TEST_F(StartFailureTest, AReadyStartEndsTheBackoff) {
  BFailsAfterEvictingA();
  clock_.Advance(absl::Seconds(5));
  RecordingClient c;
  ClientId id = Connect(&c);
  Acquire(id, "b");
  Exits("a");
  Healthy("b");
  Release(id, &c, "b");
  // The next failure backs off 5 s again, not 10.
  Acquire(holder_, "a");
  Exits("b");
  Healthy("a");
  Release(holder_, &a_client_, "a");
  Acquire(id, "b");
  Exits("a");
  Proc("b")->Exit(ExitStatus::Code(1));
  Settle();
  EXPECT_THAT(StartStatus("b").message(),
              HasSubstr("failed 0.0s ago; not tried again for 5.0s"));
}

TEST_F(StartFailureTest, AChangedConfigEndsTheBackoff) {
  BFailsAfterEvictingA();
  config::LoadResult r = config::LoadConfigText(
      "t.yaml", R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT} --fixed"}
  c: {cmd: "srv-c --port ${PORT}"}
)yaml",
      [](const std::string&) { return std::optional<std::string>(); });
  ASSERT_TRUE(r.ok()) << r.status();
  scheduler_->Reload(r.config);
  Settle();
  RecordingClient c;
  Acquire(Connect(&c), "b");
  EXPECT_EQ(StateOf("a"), State::kStopping);
  Exits("a");
  EXPECT_EQ(Proc("b")->spec.argv.back(), "--fixed");
}

TEST_F(StartFailureTest, ARefusedStartLeavesOtherDemandAlone) {
  launcher_.SetMissing("srv-b", absl::NotFoundError("srv-b: not found"));
  RecordingClient cb, cc;
  ClientId ib = Connect(&cb), ic = Connect(&cc);
  scheduler_->Acquire(ib, "b", 0, "r-b");
  scheduler_->Acquire(ic, "c", 0, "r-c");
  Settle();
  EXPECT_TRUE(cb.Saw("failed b r-b FAILED_PRECONDITION"));
  // c is a real start: a goes first.
  Exits("a");
  Healthy("c");
  EXPECT_TRUE(cc.Saw("granted c r-c http://localhost:5802"));
}

constexpr char kPatientB[] = R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}", maxQueueWait: 5}
)yaml";

TEST_F(SchedulerTest, AWithdrawnAcquireNeverRevokesTheBusyModel) {
  Load(kPatientB);
  RecordingClient holder, waiter;
  Hold(&holder, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  clock_.Advance(absl::Seconds(1));
  // The proxy withdraws it: every request for b left.
  scheduler_->Release(w, "b", 0, clock_.Now());
  Settle();
  EXPECT_TRUE(waiter.Saw("failed b r-b CANCELLED"));
  EXPECT_EQ(scheduler_->Get("b")->queued, 0);
  clock_.Advance(absl::Seconds(60));
  Settle();
  EXPECT_FALSE(holder.Saw("revoked a"));
  EXPECT_EQ(StateOf("a"), State::kReady);
  EXPECT_EQ(Spawns("b"), 0);
}

TEST_F(SchedulerTest, AnEvictionNobodyWaitsForAnyMoreIsCalledOff) {
  Load(kPatientB);
  RecordingClient holder, waiter, late;
  ClientId h = Hold(&holder, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  clock_.Advance(absl::Seconds(5));
  Settle();
  ASSERT_TRUE(holder.Saw("revoked a"));  // Overdue: a drains.
  scheduler_->Release(w, "b", 0, clock_.Now());
  Settle();
  // Its holder finishes what it had in flight and releases: a stays up.
  Release(h, &holder, "a");
  EXPECT_EQ(StateOf("a"), State::kReady);
  EXPECT_THAT(Proc("a")->signals, IsEmpty());
  Acquire(Connect(&late), "a");
  EXPECT_TRUE(late.Saw("granted a r-a http://localhost:5800"));
  EXPECT_EQ(Spawns("b"), 0);
}

TEST_F(SchedulerTest, AStopIsNotCalledOffWhenTheQueueEmpties) {
  Load(kPatientB);
  RecordingClient holder, waiter;
  ClientId h = Hold(&holder, "a");
  bool stopped = false;
  scheduler_->Stop("a", false,
                   [&](absl::StatusOr<ModelView>) { stopped = true; });
  Settle();
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  scheduler_->Release(w, "b", 0, clock_.Now());
  Settle();
  Release(h, &holder, "a");
  EXPECT_EQ(StateOf("a"), State::kStopping);
  Exits("a");
  EXPECT_TRUE(stopped);
}

}  // namespace
}  // namespace modelplane::scheduler
