// The scheduler's test fixture: real actors driven by fakes (manual clock,
// scripted processes and probes), and a lease client that records what it
// is told. Shared by scheduler_test.cc and scheduler_gate_test.cc.
#ifndef MODELPLANE_SERVER_CORE_SCHEDULER_SCHEDULER_TEST_UTIL_H_
#define MODELPLANE_SERVER_CORE_SCHEDULER_SCHEDULER_TEST_UTIL_H_

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/core/actor/fake_env.h"
#include "server/core/config/loader.h"
#include "server/core/scheduler/scheduler.h"

namespace modelplane::scheduler {

using actor::ExitStatus;
using actor::FakeProcessRecord;
using actor::State;

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
                const absl::Status& s, const actor::Failure*) override {
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

inline constexpr char kThree[] = R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}"}
  c: {cmd: "srv-c --port ${PORT}"}
)yaml";

}  // namespace modelplane::scheduler

#endif  // MODELPLANE_SERVER_CORE_SCHEDULER_SCHEDULER_TEST_UTIL_H_
