// The scheduler over real actors driven by fakes (manual clock, scripted
// processes and probes): every swap rule, lease, queue and stop path,
// deterministically.
#include "server/core/scheduler/scheduler.h"

#include <signal.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/actor/fake_env.h"
#include "server/core/config/loader.h"

namespace modelplane::scheduler {
namespace {

using actor::ExitStatus;
using actor::FakeProcessRecord;
using actor::State;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Records what the scheduler tells one lease client.
class RecordingClient : public LeaseClient {
 public:
  void OnQueued(const std::string& m, const std::string& r, int pos) override {
    events.push_back(absl::StrCat("queued ", m, " ", r, " ", pos));
  }
  void OnStarting(const std::string& m, const std::string& r) override {
    events.push_back(absl::StrCat("starting ", m, " ", r));
  }
  void OnGranted(const std::string& m, const std::string& r, LeaseId lease,
                 const std::string& upstream) override {
    leases[m] = lease;
    events.push_back(absl::StrCat("granted ", m, " ", r, " ", upstream));
    if (on_granted) on_granted();
  }
  void OnRevoked(const std::string& m, LeaseId, const std::string&) override {
    events.push_back(absl::StrCat("revoked ", m));
    if (on_revoked) on_revoked();
  }
  void OnFailed(const std::string& m, const std::string& r,
                const absl::Status& s) override {
    events.push_back(absl::StrCat("failed ", m, " ", r, " ",
                                  absl::StatusCodeToString(s.code())));
  }
  void OnCutOff(const std::string& reason) override {
    events.push_back(absl::StrCat("cutoff: ", reason));
  }
  bool Saw(const std::string& e) const {
    return std::find(events.begin(), events.end(), e) != events.end();
  }
  std::vector<std::string> events;
  std::map<std::string, LeaseId> leases;
  // Run inside the callbacks: what another thread might do at that moment.
  std::function<void()> on_granted;
  std::function<void()> on_revoked;
};

class SchedulerTest : public ::testing::Test {
 protected:
  void Load(const std::string& yaml, SchedulerOptions options = {}) {
    config::LoadResult r = config::LoadConfigText(
        "t.yaml", yaml,
        [](const std::string&) { return std::optional<std::string>(); });
    ASSERT_TRUE(r.ok()) << r.status();
    scheduler_ = std::make_unique<Scheduler>(
        r.config, actor::ActorEnv{&clock_, &launcher_, &prober_}, &revisions_,
        [this](const ModelChange& c) { changes_.push_back(c); }, options);
  }

  // Runs deferred work (the scheduler pumps on the next loop turn).
  void Settle() {
    for (int i = 0; i < 10; ++i) clock_.Advance(absl::ZeroDuration());
  }

  ClientId Connect(RecordingClient* c) {
    return scheduler_->Connect(c, "test-client");
  }
  void Acquire(ClientId c, const std::string& model, int priority = 0) {
    scheduler_->Acquire(c, model, priority, "r-" + model);
    Settle();
  }
  void Release(ClientId c, RecordingClient* rc, const std::string& model) {
    scheduler_->Release(c, model, rc->leases.at(model), clock_.Now());
    Settle();
  }

  // The latest process spawned for `model` (its argv[0] is "srv-<model>").
  FakeProcessRecord* Proc(const std::string& model) {
    for (auto it = launcher_.spawned().rbegin();
         it != launcher_.spawned().rend(); ++it) {
      if ((*it)->spec.argv[0] == "srv-" + model) return it->get();
    }
    return nullptr;
  }
  int Spawns(const std::string& model) {
    int n = 0;
    for (const auto& p : launcher_.spawned())
      n += p->spec.argv[0] == "srv-" + model;
    return n;
  }
  bool Alive(const std::string& model) {
    FakeProcessRecord* p = Proc(model);
    return p != nullptr && !p->exited;
  }
  // The model passes its health check.
  void Healthy(const std::string& model) {
    clock_.Advance(actor::ModelActor::kFirstProbeDelay);
    int port = scheduler_->Get(model)->config->port;
    ASSERT_TRUE(prober_.AnswerUrl(absl::StrCat(":", port, "/"), 200)) << model;
    Settle();
  }
  // The model exits (after a signal).
  void Exits(const std::string& model) {
    ASSERT_TRUE(Alive(model)) << model;
    Proc(model)->Exit(ExitStatus::Signaled(SIGTERM));
    Settle();
  }
  State StateOf(const std::string& model) {
    return scheduler_->Get(model)->status.state;
  }
  // Acquire on a model nothing blocks, and make it ready.
  ClientId Hold(RecordingClient* c, const std::string& model) {
    ClientId id = Connect(c);
    Acquire(id, model);
    Healthy(model);
    EXPECT_TRUE(c->Saw("granted " + model + " r-" + model + " " +
                       scheduler_->Get(model)->config->proxy));
    return id;
  }

  actor::FakeClock clock_;
  actor::FakeLauncher launcher_;
  actor::FakeProber prober_;
  uint64_t revisions_ = 0;
  std::vector<ModelChange> changes_;
  std::unique_ptr<Scheduler> scheduler_;
};

constexpr char kThree[] = R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}"}
  c: {cmd: "srv-c --port ${PORT}"}
)yaml";

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
  EXPECT_THAT(diff.update, ElementsAre("a"));
  EXPECT_THAT(diff.removed, ElementsAre("c"));
  EXPECT_THAT(diff.added, ElementsAre("d"));
  EXPECT_THAT(diff.restart, ElementsAre("b"));
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

TEST_F(SchedulerTest, ReloadRestartsARunningModelWhoseCommandChanged) {
  Load(kThree);
  RecordingClient c;
  ClientId id = Connect(&c);
  Acquire(id, "a");
  Healthy("a");
  config::LoadResult r = config::LoadConfigText(
      "t.yaml", "models:\n  a: {cmd: \"srv-a --port ${PORT} --v2\"}\n",
      [](const std::string&) { return std::optional<std::string>(); });
  scheduler_->Reload(r.config);
  Settle();
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

// --- The grant gate: leases taken off the loop (grant_gate.h) ---

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
  EXPECT_TRUE(scheduler_->Get("a")->leases.empty());  // Not absorbed yet.
  scheduler_->Absorb();
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
