// The scheduler over real actors driven by fakes (manual clock, scripted
// processes and probes): every swap rule, lease, queue and stop path,
// deterministically. The grant gate's tests are in scheduler_gate_test.cc.
#include "server/core/scheduler/scheduler.h"

#include <signal.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/config/loader.h"
#include "server/core/scheduler/scheduler_test_util.h"
#include "server/core/scheduler/swap_rules.h"

namespace modelplane::scheduler {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST_F(SchedulerTest, WithoutGroupsOneModelRunsAtATimeReapedBeforeTheNext) {
  Load(kThree);
  RecordingClient c1, c2;
  ClientId id1 = Hold(&c1, "a");
  Release(id1, &c1, "a");  // Idle now.
  ClientId id2 = Connect(&c2);
  Acquire(id2, "b");
  EXPECT_EQ(StateOf("a"), State::kStopping);
  EXPECT_THAT(Proc("a")->signals, ElementsAre(SIGTERM));
  EXPECT_EQ(Spawns("b"), 0) << "b must not start before a is reaped";
  Exits("a");
  EXPECT_EQ(Spawns("b"), 1);
  Healthy("b");
  EXPECT_TRUE(c2.Saw("granted b r-b http://localhost:5801"));
  EXPECT_EQ(StateOf("a"), State::kStopped);
}

TEST_F(SchedulerTest, ReadyModelIsGrantedAtOnceSoDemandCollates) {
  Load(kThree);
  RecordingClient holder, other, more;
  Hold(&holder, "a");
  ClientId o = Connect(&other);
  Acquire(o, "b");  // a is busy: b waits (no revocation yet).
  EXPECT_FALSE(holder.Saw("revoked a"));
  EXPECT_THAT(other.events, Contains("queued b r-b 1"));
  ClientId m = Connect(&more);
  Acquire(m, "a");  // a READY and not being evicted: granted at once.
  EXPECT_TRUE(more.Saw("granted a r-a http://localhost:5800"));
  EXPECT_EQ(scheduler_->Get("a")->leases.size(), 2u);
}

TEST_F(SchedulerTest, BusyModelIsEvictedWhenItsHoldersRelease) {
  Load(kThree);
  RecordingClient holder, waiter;
  ClientId h = Hold(&holder, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  EXPECT_EQ(StateOf("a"), State::kReady);
  Release(h, &holder, "a");
  EXPECT_EQ(StateOf("a"), State::kStopping);
  Exits("a");
  Healthy("b");
  EXPECT_TRUE(waiter.Saw("granted b r-b http://localhost:5801"));
}

TEST_F(SchedulerTest, MaxQueueWaitRevokesABusyModelSoOthersDoNotStarve) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}", maxQueueWait: 5}
)yaml");
  RecordingClient holder, waiter;
  ClientId h = Hold(&holder, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  clock_.Advance(absl::Seconds(4));
  Settle();
  EXPECT_FALSE(holder.Saw("revoked a"));
  clock_.Advance(absl::Seconds(1));
  Settle();
  EXPECT_TRUE(holder.Saw("revoked a"));
  // Revoked: no new leases on a; they queue.
  RecordingClient late;
  ClientId l = Connect(&late);
  Acquire(l, "a");
  EXPECT_FALSE(late.Saw("granted a r-a http://localhost:5800"));
  EXPECT_EQ(StateOf("a"), State::kReady);  // Drains first.
  Release(h, &holder, "a");
  EXPECT_EQ(StateOf("a"), State::kStopping);
  Exits("a");
  Healthy("b");
  EXPECT_TRUE(waiter.Saw("granted b r-b http://localhost:5801"));
}

// b becomes READY with its waiter's grant and a demand for a queued
// behind it: b is not stopped under the lease it has just granted (the
// grants of a pump pass used to go out after that pass had picked victims
// by their holders, so b looked idle and was evicted at once).
TEST_F(SchedulerTest, AModelIsNotEvictedInThePassThatGrantsIt) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}", maxQueueWait: 0}
)yaml");
  RecordingClient holder, waiter, late;
  ClientId h = Hold(&holder, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");  // maxQueueWait 0: a's lease is revoked at once.
  EXPECT_TRUE(holder.Saw("revoked a"));
  ClientId l = Connect(&late);
  Acquire(l, "a");  // Queued behind b.
  Release(h, &holder, "a");
  Exits("a");
  Healthy("b");
  EXPECT_TRUE(waiter.Saw("granted b r-b http://localhost:5801"));
  EXPECT_FALSE(waiter.Saw("revoked b"));
  EXPECT_EQ(StateOf("b"), State::kReady);
  EXPECT_TRUE(Alive("b"));
  // a's demand is served once b's holder is done.
  Release(w, &waiter, "b");
  EXPECT_EQ(StateOf("b"), State::kStopping);
  Exits("b");
  Healthy("a");
  EXPECT_TRUE(late.Saw("granted a r-a http://localhost:5800"));
}

// The same with the demand behind overdue too (maxQueueWait 0 both ways):
// each model still serves the demand that started it before it is revoked,
// rather than the two evicting each other with nothing served.
TEST_F(SchedulerTest, OverdueDemandsTakeTurnsInsteadOfEvictingEachOther) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", maxQueueWait: 0}
  b: {cmd: "srv-b --port ${PORT}", maxQueueWait: 0}
)yaml");
  RecordingClient holder, waiter, late;
  ClientId h = Hold(&holder, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  ClientId l = Connect(&late);
  Acquire(l, "a");
  Release(h, &holder, "a");
  Exits("a");
  Healthy("b");
  // Granted, then revoked for a's overdue demand: the holder drains.
  EXPECT_TRUE(waiter.Saw("granted b r-b http://localhost:5801"));
  EXPECT_TRUE(waiter.Saw("revoked b"));
  EXPECT_TRUE(Alive("b"));
  Release(w, &waiter, "b");
  Exits("b");
  Healthy("a");
  EXPECT_TRUE(late.Saw("granted a r-a http://localhost:5800"));
}

TEST_F(SchedulerTest, HolderIgnoringRevocationIsCutOffAndTheSwapGoesOn) {
  SchedulerOptions o;
  o.revoke_timeout = absl::Seconds(60);
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}", maxQueueWait: 1}
)yaml",
       o);
  RecordingClient holder, waiter;
  Hold(&holder, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  clock_.Advance(absl::Seconds(1));
  Settle();
  ASSERT_TRUE(holder.Saw("revoked a"));
  clock_.Advance(absl::Seconds(60));
  Settle();
  EXPECT_THAT(holder.events.back(),
              HasSubstr("cutoff: kept a revoked lease on a"));
  EXPECT_EQ(StateOf("a"), State::kStopping);
  Exits("a");
  Healthy("b");
  EXPECT_TRUE(waiter.Saw("granted b r-b http://localhost:5801"));
}

TEST_F(SchedulerTest, TwoHoldersAreBothRevokedAndBothMustRelease) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}", maxQueueWait: 1}
)yaml");
  RecordingClient h1, h2, waiter;
  ClientId i1 = Hold(&h1, "a");
  ClientId i2 = Connect(&h2);
  Acquire(i2, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  clock_.Advance(absl::Seconds(1));
  Settle();
  EXPECT_TRUE(h1.Saw("revoked a"));
  EXPECT_TRUE(h2.Saw("revoked a"));
  Release(i1, &h1, "a");
  EXPECT_EQ(StateOf("a"), State::kReady);
  Release(i2, &h2, "a");
  EXPECT_EQ(StateOf("a"), State::kStopping);
}

TEST_F(SchedulerTest, DisconnectReleasesEveryLease) {
  Load(kThree);
  RecordingClient holder, waiter;
  ClientId h = Hold(&holder, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  scheduler_->Disconnect(h);  // A broken stream.
  Settle();
  EXPECT_EQ(StateOf("a"), State::kStopping);
  EXPECT_TRUE(scheduler_->Get("a")->leases.empty());
}

TEST_F(SchedulerTest, GroupRules) {
  Load(R"yaml(
models:
  x1: {cmd: "srv-x1 --port ${PORT}"}
  x2: {cmd: "srv-x2 --port ${PORT}"}
  p1: {cmd: "srv-p1 --port ${PORT}"}
  n1: {cmd: "srv-n1 --port ${PORT}"}
  d1: {cmd: "srv-d1 --port ${PORT}"}
groups:
  together: {swap: false, exclusive: true, members: [x1, x2]}
  pinned: {persistent: true, swap: false, exclusive: false, members: [p1]}
  side: {swap: true, exclusive: false, members: [n1]}
)yaml");
  RecordingClient c;
  ClientId id = Connect(&c);
  // swap: false lets members coexist.
  Acquire(id, "x1");
  Healthy("x1");
  Acquire(id, "x2");
  Healthy("x2");
  EXPECT_TRUE(Alive("x1") && Alive("x2"));
  // A persistent group is not evicted by an exclusive one...
  Acquire(id, "p1");
  Healthy("p1");
  EXPECT_TRUE(Alive("x1") && Alive("x2") && Alive("p1"));
  // ...and a non-exclusive target evicts nothing outside its group (the
  // one-way exclusivity llama-swap keeps).
  Acquire(id, "n1");
  Healthy("n1");
  EXPECT_TRUE(Alive("x1") && Alive("x2") && Alive("p1") && Alive("n1"));
  // The default group is exclusive: it evicts every non-persistent group,
  // once their leases are released.
  for (const char* m : {"x1", "x2", "p1", "n1"}) Release(id, &c, m);
  Acquire(id, "d1");
  EXPECT_EQ(StateOf("x1"), State::kStopping);
  EXPECT_EQ(StateOf("x2"), State::kStopping);
  EXPECT_EQ(StateOf("n1"), State::kStopping);
  EXPECT_EQ(StateOf("p1"), State::kReady);
  EXPECT_EQ(Spawns("d1"), 0);
  Exits("x1");
  Exits("x2");
  EXPECT_EQ(Spawns("d1"), 0);
  Exits("n1");
  EXPECT_EQ(Spawns("d1"), 1);
  // An exclusive target evicts a non-persistent group: x1 evicts d1 later.
}

TEST_F(SchedulerTest, HigherPriorityIsServedFirst) {
  Load(kThree);
  RecordingClient holder, low, high;
  ClientId h = Hold(&holder, "a");
  ClientId l = Connect(&low);
  ClientId hi = Connect(&high);
  scheduler_->Acquire(l, "b", 0, "r-b");
  scheduler_->Acquire(hi, "c", 5, "r-c");
  Settle();
  EXPECT_TRUE(high.Saw("queued c r-c 1"));
  EXPECT_TRUE(low.Saw("queued b r-b 2"));
  Release(h, &holder, "a");
  Exits("a");
  EXPECT_EQ(Spawns("c"), 1);
  EXPECT_EQ(Spawns("b"), 0);
  EXPECT_TRUE(high.Saw("starting c r-c"));
}

TEST_F(SchedulerTest, AnAcquireWithoutPriorityTakesTheModelsConfiguredOne) {
  // The proxy sends no priority: the config's `priority` must still order
  // its demand.
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}"}
  c: {cmd: "srv-c --port ${PORT}", priority: 5}
)yaml");
  RecordingClient holder, low, high;
  ClientId h = Hold(&holder, "a");
  ClientId l = Connect(&low);
  ClientId hi = Connect(&high);
  scheduler_->Acquire(l, "b", 0, "r-b");
  scheduler_->Acquire(hi, "c", 0, "r-c");
  Settle();
  EXPECT_TRUE(high.Saw("queued c r-c 1"));
  EXPECT_TRUE(low.Saw("queued b r-b 2"));
  // An explicit priority in the ACQUIRE wins over the config's.
  RecordingClient urgent;
  ClientId u = Connect(&urgent);
  scheduler_->Acquire(u, "b", 9, "r-u");
  Settle();
  EXPECT_TRUE(urgent.Saw("queued b r-u 1"));
  Release(h, &holder, "a");
  Exits("a");
  EXPECT_EQ(Spawns("b"), 1);
  EXPECT_EQ(Spawns("c"), 0);
}

TEST_F(SchedulerTest, SwapMatrixKeepsTheCheapestAllowedSet) {
  Load(R"yaml(
models:
  q: {cmd: "srv-q --port ${PORT}"}
  l: {cmd: "srv-l --port ${PORT}"}
  e: {cmd: "srv-e --port ${PORT}"}
  w: {cmd: "srv-w --port ${PORT}"}
  solo: {cmd: "srv-solo --port ${PORT}"}
matrix:
  vars: {qwen: q}
  evict_costs: {qwen: 10}
  sets:
    coding: "qwen & e"
    chat: "(l | qwen) & w"
)yaml");
  RecordingClient c;
  ClientId id = Connect(&c);
  // q and e may run together ("coding").
  Acquire(id, "q");
  Healthy("q");
  Acquire(id, "e");
  Healthy("e");
  EXPECT_TRUE(Alive("q") && Alive("e"));
  Release(id, &c, "q");
  Release(id, &c, "e");
  // w: {q, w} ("chat") keeps q (cost 10) and evicts e (cost 1), rather than
  // {l, w}, which would evict both.
  Acquire(id, "w");
  EXPECT_EQ(StateOf("e"), State::kStopping);
  EXPECT_EQ(StateOf("q"), State::kReady);
  Exits("e");
  Healthy("w");
  EXPECT_TRUE(Alive("q") && Alive("w"));
  Release(id, &c, "w");
  // A model in no set runs alone.
  Acquire(id, "solo");
  EXPECT_EQ(StateOf("q"), State::kStopping);
  EXPECT_EQ(StateOf("w"), State::kStopping);
  EXPECT_EQ(Spawns("solo"), 0);
  Exits("q");
  Exits("w");
  Healthy("solo");
  EXPECT_EQ(StateOf("solo"), State::kReady);
}

TEST(SwapMatrixVictimsTest, ModelsAlreadyLeavingCostNothing) {
  config::LoadResult r =
      config::LoadConfigText("m.yaml", R"yaml(
models:
  t: {cmd: "x", proxy: "http://h:1"}
  a: {cmd: "x", proxy: "http://h:2"}
  b: {cmd: "x", proxy: "http://h:3"}
matrix:
  sets: {s1: "t & b", s2: "t & a"}
)yaml",
                             [](const std::string&) { return std::nullopt; });
  ASSERT_TRUE(r.ok()) << r.status();
  const config::Config& c = *r.config;
  std::vector<const config::ModelConfig*> running = {c.FindModel("a"),
                                                     c.FindModel("b")};
  // A tie: the first set, {t, b}, evicts a.
  EXPECT_THAT(Victims(c, *c.FindModel("t"), running),
              ::testing::ElementsAre("a"));
  // b is stopping anyway: {t, a} keeps a.
  EXPECT_THAT(Victims(c, *c.FindModel("t"), running, {"b"}),
              ::testing::ElementsAre("b"));
}

TEST_F(SchedulerTest, DisjointSwapsRunInParallel) {
  Load(R"yaml(
models:
  a1: {cmd: "srv-a1 --port ${PORT}"}
  a2: {cmd: "srv-a2 --port ${PORT}"}
  b1: {cmd: "srv-b1 --port ${PORT}"}
  b2: {cmd: "srv-b2 --port ${PORT}"}
groups:
  ga: {exclusive: false, members: [a1, a2]}
  gb: {exclusive: false, members: [b1, b2]}
)yaml");
  RecordingClient c;
  ClientId id = Connect(&c);
  Acquire(id, "a1");
  Acquire(id, "b1");
  EXPECT_EQ(Spawns("a1"), 1);
  EXPECT_EQ(Spawns("b1"), 1);  // Both started at once.
  Healthy("a1");
  Healthy("b1");
  Release(id, &c, "a1");
  Release(id, &c, "b1");
  Acquire(id, "a2");
  Acquire(id, "b2");
  EXPECT_EQ(StateOf("a1"), State::kStopping);
  EXPECT_EQ(StateOf("b1"), State::kStopping);
}

TEST_F(SchedulerTest, ConcurrentDemandForOneModelSpawnsOnce) {
  Load(kThree);
  std::vector<RecordingClient> clients(50);
  for (RecordingClient& c : clients)
    scheduler_->Acquire(Connect(&c), "a", 0, "r-a");
  Settle();
  EXPECT_EQ(Spawns("a"), 1);
  Healthy("a");
  for (RecordingClient& c : clients) {
    EXPECT_TRUE(c.Saw("granted a r-a http://localhost:5800"));
  }
}

TEST_F(SchedulerTest, AbandonedStartIsAborted) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Connect(&c);
  Acquire(id, "a");
  ASSERT_EQ(StateOf("a"), State::kStarting);
  scheduler_->Disconnect(id);
  Settle();
  EXPECT_EQ(StateOf("a"), State::kStopping);
  EXPECT_THAT(Proc("a")->signals, ElementsAre(SIGTERM));
}

TEST_F(SchedulerTest, StopRevokesAndWaitsAtMostUnloadTimeout) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", unloadTimeout: 7}
)yaml");
  RecordingClient holder;
  Hold(&holder, "a");
  std::vector<std::string> done;
  scheduler_->Stop("a", false, [&](absl::StatusOr<ModelView> v) {
    done.push_back(actor::StateName(v->status.state));
  });
  Settle();
  EXPECT_TRUE(holder.Saw("revoked a"));
  EXPECT_THAT(Proc("a")->signals, IsEmpty());
  clock_.Advance(absl::Seconds(7));
  Settle();
  EXPECT_THAT(Proc("a")->signals, ElementsAre(SIGTERM));
  Exits("a");
  EXPECT_THAT(done, ElementsAre("STOPPED"));
  EXPECT_TRUE(scheduler_->Get("a")->leases.empty());
}

// A Stop of a model draining for a swap makes the drain a stop's: bounded
// by the model's unloadTimeout (not the swap's revoke timeout), and not
// called off when the swap's demand goes away.
TEST_F(SchedulerTest, StopOfASwapsVictimIsAStopBoundedByUnloadTimeout) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", unloadTimeout: 7}
  b: {cmd: "srv-b --port ${PORT}", maxQueueWait: 1}
)yaml");
  RecordingClient holder, waiter;
  ClientId h = Hold(&holder, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  clock_.Advance(absl::Seconds(1));
  Settle();
  ASSERT_TRUE(holder.Saw("revoked a"));  // Draining for b's swap.
  std::vector<std::string> done;
  scheduler_->Stop("a", false, [&](absl::StatusOr<ModelView> v) {
    done.push_back(actor::StateName(v->status.state));
  });
  Settle();
  // b's demand goes: a swap's drain would be called off, a stop's is not.
  scheduler_->Disconnect(w);
  Settle();
  EXPECT_THAT(Proc("a")->signals, IsEmpty());
  clock_.Advance(absl::Seconds(7));
  Settle();
  EXPECT_THAT(Proc("a")->signals, ElementsAre(SIGTERM));
  Exits("a");
  EXPECT_THAT(done, ElementsAre("STOPPED"));
  // Open again once reaped: a new demand starts and is granted it.
  Acquire(h, "a");
  Healthy("a");
  EXPECT_TRUE(holder.Saw("granted a r-a http://localhost:5800"));
}

// A swap's drain whose demand went away is called off: the victim stays up
// and is granted again.
TEST_F(SchedulerTest, ASwapsDrainIsCalledOffWhenItsDemandLeaves) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}", maxQueueWait: 1}
)yaml");
  RecordingClient holder, waiter;
  ClientId h = Hold(&holder, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  clock_.Advance(absl::Seconds(1));
  Settle();
  ASSERT_TRUE(holder.Saw("revoked a"));
  scheduler_->Disconnect(w);
  Settle();
  Release(h, &holder, "a");
  EXPECT_EQ(StateOf("a"), State::kReady);
  holder.events.clear();
  Acquire(h, "a");
  EXPECT_TRUE(holder.Saw("granted a r-a http://localhost:5800"));
  EXPECT_EQ(Spawns("a"), 1);
}

TEST_F(SchedulerTest, ForcedStopDoesNotWaitForHolders) {
  Load(kThree);
  RecordingClient holder;
  Hold(&holder, "a");
  scheduler_->Stop("a", true, [](absl::StatusOr<ModelView>) {});
  Settle();
  EXPECT_TRUE(holder.Saw("revoked a"));
  EXPECT_THAT(Proc("a")->signals, ElementsAre(SIGTERM));
}

TEST_F(SchedulerTest, StopDuringStartFailsItsDemandsWithAborted) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Connect(&c);
  Acquire(id, "a");
  std::vector<absl::Status> started;
  scheduler_->Start(
      "a", [&](absl::StatusOr<ModelView> v) { started.push_back(v.status()); });
  scheduler_->Stop("a", false, [](absl::StatusOr<ModelView>) {});
  Settle();
  EXPECT_TRUE(c.Saw("failed a r-a ABORTED"));
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].code(), absl::StatusCode::kAborted);
}

TEST_F(SchedulerTest, StartFailureFailsEveryDemandWithTheReason) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Connect(&c);
  launcher_.FailNextSpawn(absl::NotFoundError("srv-a: not found in PATH"));
  Acquire(id, "a");
  EXPECT_TRUE(c.Saw("failed a r-a FAILED_PRECONDITION"));
  EXPECT_EQ(StateOf("a"), State::kFailed);
}

TEST_F(SchedulerTest, UnknownModelAndFullQueue) {
  SchedulerOptions o;
  o.max_queue = 1;
  Load(kThree, o);
  RecordingClient c;
  ClientId id = Connect(&c);
  Acquire(id, "nope");
  EXPECT_TRUE(c.Saw("failed nope r-nope NOT_FOUND"));
  scheduler_->Acquire(id, "", 0, "r-empty");
  EXPECT_TRUE(c.Saw("failed  r-empty INVALID_ARGUMENT"));
  Acquire(id, "a");
  Acquire(id, "b");
  EXPECT_TRUE(c.Saw("failed b r-b RESOURCE_EXHAUSTED"));
}

// Start, WaitReady and Acquire come through one door: the same refusals,
// with the same words.
TEST_F(SchedulerTest, StartAndWaitReadyAreRefusedAsAcquireIs) {
  SchedulerOptions o;
  o.max_queue = 1;
  Load(kThree, o);
  std::vector<absl::Status> got;
  auto done = [&](absl::StatusOr<ModelView> v) { got.push_back(v.status()); };
  EXPECT_EQ(scheduler_->Start("nope", done), 0u);
  EXPECT_EQ(scheduler_->WaitReady("nope", done), 0u);
  EXPECT_EQ(scheduler_->Start("", done), 0u);
  EXPECT_NE(scheduler_->Start("a", done), 0u);  // Queued: it can be cancelled.
  EXPECT_EQ(scheduler_->Start("b", done), 0u);  // The queue is full.
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got[0].message(), "unknown model 'nope'");
  EXPECT_EQ(got[1].code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(got[2].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(got[3].code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(got[3].message(), "the queue is full (1 waiting)");
  scheduler_->Shutdown([] {});
  Settle();
  EXPECT_EQ(scheduler_->Start("c", done), 0u);
  EXPECT_EQ(got.back().code(), absl::StatusCode::kUnavailable);
}

// Plan: what a start would evict now, as the queue would decide it, and
// nothing started or evicted for asking.
TEST_F(SchedulerTest, PlanSaysWhatAStartWouldEvictWithoutDoingIt) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}"}
  c: {cmd: "srv-c --port ${PORT}"}
  d: {cmd: "srv-d --port ${PORT}"}
groups:
  pair: {swap: false, members: [c, d]}
)yaml");
  absl::StatusOr<StartPlan> p = scheduler_->Plan("a");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->needs_start);
  EXPECT_TRUE(p->evictions.empty());  // Nothing runs.
  EXPECT_FALSE(p->blocked);
  RecordingClient holder;
  ClientId h = Hold(&holder, "a");
  p = scheduler_->Plan("a");
  EXPECT_FALSE(p->needs_start);  // READY.
  // b swaps with a (the default group), which holds a lease: busy.
  p = scheduler_->Plan("b");
  ASSERT_EQ(p->evictions.size(), 1u);
  EXPECT_EQ(p->evictions[0].model, "a");
  EXPECT_EQ(p->evictions[0].state, State::kReady);
  EXPECT_EQ(p->evictions[0].holders, 1);
  // c's group does not swap, but is exclusive: it evicts a too.
  EXPECT_EQ(scheduler_->Plan("c")->evictions.size(), 1u);
  Release(h, &holder, "a");
  p = scheduler_->Plan("b");
  ASSERT_EQ(p->evictions.size(), 1u);
  EXPECT_EQ(p->evictions[0].holders, 0);  // Idle now.
  // Asking changed nothing.
  EXPECT_EQ(StateOf("a"), State::kReady);
  EXPECT_EQ(StateOf("b"), State::kStopped);
  EXPECT_EQ(Spawns("b"), 0);
  EXPECT_EQ(scheduler_->Plan("nope").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(scheduler_->Plan("").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Draining: no model starts here. A READY model is still granted; demand
// that would start one (new or already queued) is refused UNAVAILABLE;
// resuming takes starts again.
TEST_F(SchedulerTest, DrainingStartsNothingButServesWhatIsReady) {
  Load(kThree);
  RecordingClient holder, other;
  ClientId h = Hold(&holder, "a");
  ClientId o = Connect(&other);
  Acquire(o, "b");  // Queued behind a's lease.
  ASSERT_FALSE(other.Saw("failed b r-b UNAVAILABLE"));
  scheduler_->SetDraining(true);
  EXPECT_TRUE(other.Saw("failed b r-b UNAVAILABLE"));  // The queued one.
  Acquire(o, "c");
  EXPECT_TRUE(other.Saw("failed c r-c UNAVAILABLE"));
  std::vector<absl::Status> got;
  scheduler_->Start(
      "c", [&](absl::StatusOr<ModelView> v) { got.push_back(v.status()); });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(got[0].message()), HasSubstr("draining"));
  Acquire(o, "a");  // READY here: served.
  EXPECT_TRUE(other.Saw("granted a r-a http://localhost:5800"));
  // A plan says so too: a start of c is refused here, a's needs none.
  absl::StatusOr<StartPlan> plan = scheduler_->Plan("c");
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->refusal.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(plan->evictions.empty());
  EXPECT_FALSE(scheduler_->Plan("a")->needs_start);
  EXPECT_EQ(Spawns("b"), 0);
  EXPECT_EQ(Spawns("c"), 0);
  scheduler_->SetDraining(false);
  Release(h, &holder, "a");
  Release(o, &other, "a");
  Acquire(o, "b");
  EXPECT_EQ(StateOf("a"), State::kStopping);  // Evicted (idle) for b ...
  Exits("a");
  EXPECT_EQ(Spawns("b"), 1);  // ... which starts once a is reaped.
}

// A drain that refuses the demand a swap was begun for calls the swap off:
// the victim, revoked and draining, stays up and is served again.
TEST_F(SchedulerTest, ADrainCallsOffTheSwapOfTheDemandItRefuses) {
  Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}", maxQueueWait: 1}
)yaml");
  RecordingClient holder, waiter, late;
  ClientId h = Hold(&holder, "a");
  ClientId w = Connect(&waiter);
  Acquire(w, "b");
  clock_.Advance(absl::Seconds(1));
  Settle();
  ASSERT_TRUE(holder.Saw("revoked a"));  // Draining a for b's start.
  scheduler_->SetDraining(true);
  Settle();
  EXPECT_TRUE(waiter.Saw("failed b r-b UNAVAILABLE"));
  Release(h, &holder, "a");
  EXPECT_EQ(StateOf("a"), State::kReady);  // Not stopped for nobody.
  ClientId l = Connect(&late);
  Acquire(l, "a");
  EXPECT_TRUE(late.Saw("granted a r-a http://localhost:5800"));
  EXPECT_EQ(Spawns("b"), 0);
}

// A start known to fail (its back-off after a failed start) is refused
// before anything is evicted, and a plan says so.
TEST_F(SchedulerTest, PlanOfAStartInItsBackOffIsARefusal) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Connect(&c);
  Acquire(id, "a");
  Proc("a")->Exit(ExitStatus::Code(1));  // Exits before it is ready.
  Settle();
  ASSERT_EQ(StateOf("a"), State::kFailed);
  absl::StatusOr<StartPlan> plan = scheduler_->Plan("a");
  ASSERT_TRUE(plan.ok());
  EXPECT_FALSE(plan->refusal.ok());
  EXPECT_TRUE(plan->evictions.empty());
}

TEST_F(SchedulerTest, WaitReadyWaitsForSomeoneElsesStart) {
  Load(kThree);
  std::vector<std::string> got;
  scheduler_->WaitReady("a", [&](absl::StatusOr<ModelView> v) {
    got.push_back(v.ok() ? "ready" : std::string(v.status().message()));
  });
  Settle();
  EXPECT_TRUE(got.empty());
  EXPECT_EQ(Spawns("a"), 0);  // WaitReady never starts it.
  scheduler_->Start("a", [](absl::StatusOr<ModelView>) {});
  Settle();
  Healthy("a");
  EXPECT_THAT(got, ElementsAre("ready"));
}

TEST_F(SchedulerTest, ReloadRestartsOnlyWhatChanged) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Connect(&c);
  Acquire(id, "a");
  Healthy("a");
  int pid_a = Proc("a")->pid;
  config::LoadResult r = config::LoadConfigText(
      "t.yaml", R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", ttl: 60}
  b: {cmd: "srv-b --port ${PORT} --new-flag"}
  d: {cmd: "srv-d --port ${PORT}"}
)yaml",
      [](const std::string&) { return std::optional<std::string>(); });
  ASSERT_TRUE(r.ok()) << r.status();
  changes_.clear();
  config::ConfigDiff diff = scheduler_->Reload(r.config);
  Settle();
  // b's command changed, but it has no process to restart: an update.
  EXPECT_THAT(diff.update, ElementsAre("a", "b"));
  EXPECT_THAT(diff.removed, ElementsAre("c"));
  EXPECT_THAT(diff.added, ElementsAre("d"));
  EXPECT_THAT(diff.restart, IsEmpty());
  EXPECT_EQ(Proc("a")->pid, pid_a);  // Untouched.
  EXPECT_EQ(StateOf("a"), State::kReady);
  EXPECT_EQ(scheduler_->Get("c").status().code(), absl::StatusCode::kNotFound);
  bool deleted = false, added = false;
  for (const ModelChange& ch : changes_) {
    deleted |=
        ch.kind == ModelChange::Kind::kDeleted && ch.view.config->id == "c";
    added |= ch.kind == ModelChange::Kind::kAdded && ch.view.config->id == "d";
  }
  EXPECT_TRUE(deleted);
  EXPECT_TRUE(added);
}

// A running model a reload removes is announced deleted once: nothing
// after that (its revocation, its stop) may publish it again, or a watcher
// (the proxy's route table) would see it back and keep it.
TEST_F(SchedulerTest, ARemovedRunningModelIsNotPublishedAfterItsDeletion) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Hold(&c, "c");
  config::LoadResult r = config::LoadConfigText(
      "t.yaml", "models:\n  a: {cmd: \"srv-a --port ${PORT}\"}\n",
      [](const std::string&) { return std::optional<std::string>(); });
  ASSERT_TRUE(r.ok()) << r.status();
  changes_.clear();
  scheduler_->Reload(r.config);
  Settle();
  EXPECT_TRUE(c.Saw("revoked c"));
  Release(id, &c, "c");
  Exits("c");
  std::vector<std::string> published;
  for (const ModelChange& ch : changes_) {
    if (ch.view.config->id != "c") continue;
    published.push_back(ch.kind == ModelChange::Kind::kDeleted ? "deleted"
                                                               : "changed");
  }
  EXPECT_THAT(published, ElementsAre("deleted"));
}

// The holder's RELEASE of a model a reload removed (by the id it was
// granted) stops it at once, not at the end of the drain bound: the
// release must find the retired model, which the config no longer names.
TEST_F(SchedulerTest, ReleasingARemovedModelStopsItAtOnce) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Hold(&c, "c");
  config::LoadResult r = config::LoadConfigText(
      "t.yaml", "models:\n  a: {cmd: \"srv-a --port ${PORT}\"}\n",
      [](const std::string&) { return std::optional<std::string>(); });
  ASSERT_TRUE(r.ok()) << r.status();
  scheduler_->Reload(r.config);
  Settle();
  EXPECT_TRUE(c.Saw("revoked c"));
  EXPECT_THAT(Proc("c")->signals, IsEmpty());  // Drains first.
  Release(id, &c, "c");
  EXPECT_THAT(Proc("c")->signals, ElementsAre(SIGTERM));
}

TEST_F(SchedulerTest, ReloadRestartsARunningModelWhoseCommandChanged) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Connect(&c);
  Acquire(id, "a");
  Healthy("a");
  config::LoadResult r = config::LoadConfigText(
      "t.yaml", "models:\n  a: {cmd: \"srv-a --port ${PORT} --v2\"}\n",
      [](const std::string&) { return std::optional<std::string>(); });
  config::ConfigDiff diff = scheduler_->Reload(r.config);
  Settle();
  EXPECT_THAT(diff.restart, ElementsAre("a"));
  EXPECT_EQ(diff.restart_reasons["a"], "cmd changed");
  EXPECT_TRUE(c.Saw("revoked a"));
  Release(id, &c, "a");
  Exits("a");
  EXPECT_EQ(Spawns("a"), 2);
  EXPECT_THAT(Proc("a")->spec.argv.back(), "--v2");
}

TEST_F(SchedulerTest, ShutdownStopsEverythingAndRefusesNewWork) {
  Load(kThree);
  RecordingClient c;
  Hold(&c, "a");
  bool down = false;
  scheduler_->Shutdown([&] { down = true; });
  Settle();
  EXPECT_TRUE(c.Saw("revoked a"));
  Exits("a");
  EXPECT_TRUE(down);
  ClientId id = Connect(&c);
  Acquire(id, "b");
  EXPECT_TRUE(c.Saw("failed b r-b UNAVAILABLE"));
}

TEST_F(SchedulerTest, RevisionsOfChangesOnlyGrow) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Hold(&c, "a");
  Release(id, &c, "a");
  uint64_t last = 0;
  for (const ModelChange& ch : changes_) {
    if (ch.view.config->id != "a") continue;
    EXPECT_GE(ch.view.revision, last);
    last = ch.view.revision;
  }
  EXPECT_GT(last, 0u);
}

TEST_F(SchedulerTest,
       AModelThatDiesUnderALeaseRevokesItAndStartsAgainOnDemand) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Hold(&c, "a");
  Proc("a")->Exit(ExitStatus::Signaled(SIGSEGV));  // Not asked to stop.
  Settle();
  EXPECT_NE(StateOf("a"), State::kReady);
  // The holder must hear of it, or it would go on sending requests to a
  // dead upstream and never ask again.
  EXPECT_TRUE(c.Saw("revoked a"));
  EXPECT_EQ(scheduler_->Get("a")->status.leases, 0 + 1u);  // Until released.
  Release(id, &c, "a");
  EXPECT_EQ(scheduler_->Get("a")->status.leases, 0u);
  c.events.clear();
  Acquire(id, "a");  // The next request starts it again.
  EXPECT_EQ(Spawns("a"), 2);
  Healthy("a");
  EXPECT_TRUE(c.Saw("granted a r-a http://localhost:5800"));
}

TEST_F(SchedulerTest, TwoPendingAcquiresOfOneClientShareOneLease) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Connect(&c);
  scheduler_->Acquire(id, "a", 0, "r1");
  scheduler_->Acquire(id, "a", 0, "r2");
  Settle();
  Healthy("a");
  EXPECT_TRUE(c.Saw("granted a r1 http://localhost:5800"));
  EXPECT_TRUE(c.Saw("granted a r2 http://localhost:5800"));
  EXPECT_EQ(scheduler_->Get("a")->status.leases, 1u);
  Release(id, &c, "a");  // One RELEASE gives it all back: TTL can run.
  EXPECT_EQ(scheduler_->Get("a")->status.leases, 0u);
}

}  // namespace
}  // namespace modelplane::scheduler
