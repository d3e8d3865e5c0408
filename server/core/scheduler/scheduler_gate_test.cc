// The grant gate (grant_gate.h) with the scheduler: leases granted and
// released off the loop, absorbed, closed before evictions, and the races
// between the loop and the gate.
#include <signal.h>

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/scheduler/grant_gate.h"
#include "server/core/scheduler/scheduler.h"
#include "server/core/scheduler/scheduler_test_util.h"

namespace modelplane::scheduler {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST_F(SchedulerTest, GateGrantsAReadyModelOffTheLoopAndTheSchedulerAbsorbs) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", aliases: [alpha]}
  b: {cmd: "srv-b --port ${PORT}"}
)yaml");
  RecordingClient first, c;
  ClientId f = Hold(&first, "a");
  Release(f, &first, "a");
  ClientId id = Connect(&c);
  GrantGate& gate = scheduler_->gate();
  std::optional<GrantGate::Grant> g =
      gate.TryAcquire(id, "alpha", clock_.Now());
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->model, "a");
  EXPECT_EQ(g->upstream, "http://localhost:5800");
  EXPECT_NE(g->lease, first.leases.at("a"));  // Ids come from one counter.
  // One lease per client per model: a second ACQUIRE goes to the loop.
  EXPECT_FALSE(gate.TryAcquire(id, "a", clock_.Now()).has_value());
  // A view absorbs what the gate took before it answers: the lease shows.
  ASSERT_EQ(scheduler_->Get("a")->leases.size(), 1u);
  EXPECT_EQ(scheduler_->Get("a")->leases[0].lease, g->lease);
  EXPECT_EQ(scheduler_->Get("a")->status.leases, 1u);
  // The loop's answer to that second ACQUIRE: the same lease.
  Acquire(id, "a");
  EXPECT_EQ(c.leases.at("a"), g->lease);
  EXPECT_FALSE(gate.TryRelease(id, "a", g->lease + 100, clock_.Now()));
  EXPECT_TRUE(gate.TryRelease(id, "a", g->lease, clock_.Now()));
  scheduler_->Absorb();
  EXPECT_TRUE(scheduler_->Get("a")->leases.empty());
  EXPECT_EQ(scheduler_->Get("a")->status.leases, 0u);
}

TEST_F(SchedulerTest, GateLeavesToTheLoopWhatIsNotAPlainReadyGrant) {
  Load(kThree);
  RecordingClient c, other;
  ClientId id = Connect(&c);
  GrantGate& gate = scheduler_->gate();
  EXPECT_FALSE(gate.TryAcquire(id, "a", clock_.Now()));    // Not started.
  EXPECT_FALSE(gate.TryAcquire(id, "zzz", clock_.Now()));  // Unknown.
  Acquire(id, "a");
  EXPECT_FALSE(gate.TryAcquire(id, "a", clock_.Now()));  // Starting.
  Healthy("a");
  EXPECT_FALSE(gate.TryAcquire(99, "a", clock_.Now()));  // No such client.
  ClientId o = Connect(&other);
  scheduler_->Disconnect(o);
  EXPECT_FALSE(gate.TryAcquire(o, "a", clock_.Now()));  // Gone.
  // Being evicted (a Stop waits for c's lease): closed.
  scheduler_->Stop("a", false, [](absl::StatusOr<ModelView>) {});
  Settle();
  EXPECT_TRUE(c.Saw("revoked a"));
  RecordingClient late;
  EXPECT_FALSE(gate.TryAcquire(Connect(&late), "a", clock_.Now()));
}

TEST_F(SchedulerTest, AGateLeaseHoldsOffASwapUntilReleasedAndTheReleaseWakes) {
  Load(kThree);
  int wakes = 0;
  scheduler_->gate().set_wake([&] { ++wakes; });
  RecordingClient first, c, waiter;
  ClientId f = Hold(&first, "a");
  Release(f, &first, "a");
  ClientId id = Connect(&c);
  std::optional<GrantGate::Grant> g =
      scheduler_->gate().TryAcquire(id, "a", clock_.Now());
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(wakes, 0);  // Grants are absorbed lazily.
  // A swap to b: the lease taken off the loop counts (the scheduler absorbs
  // before it decides), so a is busy and b waits.
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  EXPECT_EQ(StateOf("a"), State::kReady);
  EXPECT_FALSE(c.Saw("revoked a"));  // Busy, and b not overdue.
  EXPECT_EQ(Spawns("b"), 0);
  // Released off the loop while demand waits: the loop is woken at once.
  EXPECT_TRUE(scheduler_->gate().TryRelease(id, "a", g->lease, clock_.Now()));
  EXPECT_EQ(wakes, 1);
  scheduler_->Absorb();  // What the wake posts.
  Settle();
  EXPECT_EQ(StateOf("a"), State::kStopping);
  Exits("a");
  Healthy("b");
  EXPECT_TRUE(waiter.Saw("granted b r-b http://localhost:5801"));
}

TEST_F(SchedulerTest, AStopRevokesALeaseTheGateTookAndNotYetAbsorbed) {
  Load(kThree);
  RecordingClient first, c;
  ClientId f = Hold(&first, "a");
  Release(f, &first, "a");
  ClientId id = Connect(&c);
  ASSERT_TRUE(scheduler_->gate().TryAcquire(id, "a", clock_.Now()));
  std::vector<std::string> done;
  scheduler_->Stop("a", false, [&](absl::StatusOr<ModelView> v) {
    done.push_back(actor::StateName(v->status.state));
  });
  Settle();
  EXPECT_TRUE(c.Saw("revoked a"));
  EXPECT_THAT(Proc("a")->signals, IsEmpty());  // Waits for that lease.
  scheduler_->Disconnect(id);  // Its stream ends: the lease goes with it.
  Settle();
  EXPECT_THAT(Proc("a")->signals, ElementsAre(SIGTERM));
  Exits("a");
  EXPECT_THAT(done, ElementsAre("STOPPED"));
}

TEST_F(SchedulerTest, TtlDoesNotUnloadAModelWhileAGateLeaseWaitsToBeAbsorbed) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", ttl: 10}
)yaml");
  RecordingClient first, c;
  ClientId f = Hold(&first, "a");
  Release(f, &first, "a");
  clock_.Advance(absl::Seconds(9));
  Settle();
  ClientId id = Connect(&c);
  std::optional<GrantGate::Grant> g =
      scheduler_->gate().TryAcquire(id, "a", clock_.Now());
  ASSERT_TRUE(g.has_value());
  clock_.Advance(absl::Seconds(2));  // The TTL fires before any absorb.
  Settle();
  EXPECT_EQ(StateOf("a"), State::kReady);
  EXPECT_EQ(scheduler_->Get("a")->status.leases, 1u);
  // The gate opens again once the loop has pumped: another client is
  // granted off the loop.
  RecordingClient d;
  ClientId did = Connect(&d);
  EXPECT_TRUE(scheduler_->gate().TryAcquire(did, "a", clock_.Now()));
  // Released off the loop (nobody waits: absorbed lazily), then idle for
  // the TTL: unloaded.
  EXPECT_TRUE(scheduler_->gate().TryRelease(id, "a", g->lease, clock_.Now()));
  scheduler_->Disconnect(did);
  scheduler_->Absorb();
  clock_.Advance(absl::Seconds(10));
  Settle();
  EXPECT_EQ(StateOf("a"), State::kStopping);
}

TEST_F(SchedulerTest, AModelBeingStoppedStaysClosedWhileItsHoldersAreRevoked) {
  Load(kThree);
  RecordingClient first, c, late;
  ClientId f = Hold(&first, "a");
  ClientId id = Connect(&c);
  ClientId l = Connect(&late);
  // A grant off the loop, not absorbed: the stop's close absorbs it, which
  // counts a lease on the actor (a nested change event). That must not
  // republish the gate before the model is marked as stopping.
  ASSERT_TRUE(scheduler_->gate().TryAcquire(id, "a", clock_.Now()));
  bool granted_meanwhile = false;
  first.on_revoked = [&] {
    granted_meanwhile =
        scheduler_->gate().TryAcquire(l, "a", clock_.Now()).has_value();
  };
  scheduler_->Stop("a", false, [](absl::StatusOr<ModelView>) {});
  Settle();
  EXPECT_TRUE(first.Saw("revoked a"));
  EXPECT_TRUE(c.Saw("revoked a"));  // The gate's lease is revoked too.
  EXPECT_FALSE(granted_meanwhile);
  EXPECT_FALSE(scheduler_->gate().TryAcquire(l, "a", clock_.Now()));
  scheduler_->Release(f, "a", first.leases.at("a"), clock_.Now());
  scheduler_->Disconnect(id);
  Settle();
  EXPECT_THAT(Proc("a")->signals, ElementsAre(SIGTERM));
}

TEST_F(SchedulerTest, TheLoopAndTheGateGrantingOneClientAtOnceShareOneLease) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}"}
groups:
  g: {swap: false, exclusive: false, members: [a, b]}
)yaml");
  RecordingClient x, c;
  ClientId xid = Connect(&x);
  ClientId cid = Connect(&c);
  scheduler_->Acquire(xid, "b", 0, "rx");
  scheduler_->Acquire(cid, "b", 0, "rc");
  Settle();
  // When b is ready the pump grants x, then c. Between the two, c's stream
  // (nothing of it waiting on the loop) asks again and the gate grants it.
  std::optional<GrantGate::Grant> off_loop;
  x.on_granted = [&] {
    if (!off_loop)
      off_loop = scheduler_->gate().TryAcquire(cid, "b", clock_.Now());
  };
  Healthy("b");
  ASSERT_TRUE(off_loop.has_value());
  ASSERT_TRUE(c.Saw("granted b rc http://localhost:5801"));
  EXPECT_EQ(c.leases.at("b"), off_loop->lease);  // One lease, not two.
  scheduler_->Absorb();
  EXPECT_EQ(scheduler_->Get("b")->status.leases, 2u);  // x and c.
  EXPECT_EQ(scheduler_->Get("b")->leases.size(), 2u);
}

}  // namespace
}  // namespace modelplane::scheduler
