// The swap scheduler: owns one ModelActor per configured model, hands out
// leases on models, queues demand that cannot be served yet, and evicts
// models under llama-swap's group rules — revoking leases and waiting for
// their release first, so a model is never killed under a request
// (docs/scheduler.md).
//
// Threading: like the actors, everything runs on the actor loop's thread;
// every method must be called there and every callback runs there — except
// gate(), whose TryAcquire/TryRelease a stream's reader calls on its own
// thread to grant a READY model without the hop to the loop (grant_gate.h).
//
//   Scheduler s(config, host.env(), host.revisions(), on_change, {});
//   ClientId c = s.Connect(&lease_client, "modelproxy/worker-0");
//   s.Acquire(c, "qwen", /*priority=*/0, "req-1");  // -> OnGranted(...)
//   s.Release(c, "qwen", lease, absl::Now());
#ifndef MODELPLANE_SERVER_CORE_SCHEDULER_SCHEDULER_H_
#define MODELPLANE_SERVER_CORE_SCHEDULER_SCHEDULER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/core/actor/env.h"
#include "server/core/actor/model_actor.h"
#include "server/core/config/config.h"
#include "server/core/config/diff.h"
#include "server/core/gpu/monitor.h"
#include "server/core/logs/log_buffer.h"
#include "server/core/scheduler/grant_gate.h"

namespace modelplane::scheduler {

using WaiterId = uint64_t;

// A lease client's side of the Acquire protocol (the gRPC stream, or a
// test). Called on the loop thread; must not call back into the scheduler
// synchronously except to Release or Disconnect.
class LeaseClient {
 public:
  virtual ~LeaseClient() = default;
  virtual void OnQueued(const std::string& model, const std::string& request_id,
                        int position) = 0;
  virtual void OnStarting(const std::string& model,
                          const std::string& request_id) = 0;
  virtual void OnGranted(const std::string& model,
                         const std::string& request_id, LeaseId lease,
                         const std::string& upstream) = 0;
  virtual void OnRevoked(const std::string& model, LeaseId lease,
                         const std::string& reason) = 0;
  // `failure`: the model's failed start (what Model.failure says, or, while
  // the failed process is still torn down, its reason), else null.
  virtual void OnFailed(const std::string& model, const std::string& request_id,
                        const absl::Status& status,
                        const actor::Failure* failure) = 0;
  // The client kept a revoked lease past the bound: the scheduler released
  // all its leases and forgot it. End its stream.
  virtual void OnCutOff(const std::string& reason) = 0;
};

struct LeaseView {
  ClientId client;
  std::string client_name;
  LeaseId lease;
  absl::Time granted_at;
  bool revoked;
};

// A model as the API shows it.
struct ModelView {
  std::shared_ptr<const config::ModelConfig> config;
  actor::ModelStatus status;
  std::vector<LeaseView> leases;
  int queued = 0;  // ACQUIREs and Starts waiting for this model.
  // Its GPU memory (docs/gpu.md), when the manager has NVML; `footprint`
  // is what the scheduler charges it (declared, or measured; 0: neither).
  bool memory_known = false;
  gpu::ModelMemory memory;
  uint64_t footprint = 0;
  uint64_t revision = 0;  // Of its last change (state, leases, queue).
};

// What starting a model would do now (Scheduler::Plan, a dry run).
struct StartPlan {
  ModelView model;
  // READY or STARTING already: no start is needed, nothing is evicted.
  bool needs_start = true;
  // The models the start would evict (groups or the swap matrix), by id,
  // each with its state and its lease holders (busy: evicted only once they
  // release, or once the demand has waited its maxQueueWait).
  struct Eviction {
    std::string model;
    actor::State state;
    int holders = 0;
  };
  std::vector<Eviction> evictions;
  // It would wait first: for a model a reload removed to be reaped, or for
  // a start in progress that it would have to evict.
  bool blocked = false;
  // Not OK: a start would be refused here at once, evicting nothing (the
  // manager is draining, the model is in its start back-off, or its
  // command cannot run).
  absl::Status refusal;
};

// Counts the scheduler keeps for modelmanager's /metrics (loop thread).
struct SchedulerCounters {
  // Model -> times it was evicted to start another; model -> evictions
  // begun to start it (one per model evicted).
  std::map<std::string, uint64_t> evictions;
  std::map<std::string, uint64_t> swaps;
};

struct ModelChange {
  enum class Kind { kAdded, kModified, kDeleted };
  Kind kind;
  ModelView view;
};

struct SchedulerOptions {
  // A model whose start failed is not started again for this long (then
  // twice as long after each further failure, up to max_start_backoff):
  // SDKs retry a 503, and each retry would evict whatever runs.
  absl::Duration first_start_backoff = absl::Seconds(5);
  absl::Duration max_start_backoff = absl::Minutes(1);
  // Demand waiting at once (ACQUIREs plus Starts); more: ResourceExhausted.
  size_t max_queue = 4096;
  // How long a holder may keep a lease revoked for a swap before it is cut
  // off. Generous: a long generation in flight is legitimate.
  absl::Duration revoke_timeout = absl::Minutes(5);
  // Abort a start once nobody waits for it any more.
  bool abort_abandoned_starts = true;
  // Each line a model prints, tagged with its id (the manager logs them at
  // debug level). Loop thread.
  actor::ModelActor::LineSink on_model_line;
  // GPU memory as a resource (docs/gpu.md): NVML's view, or null (the GPU
  // features off). Outlives the scheduler; loop thread.
  gpu::Monitor* gpu = nullptr;
};

enum class SlotPhase;  // scheduler_internal.h

// The key a model's measured GPU footprint is kept under, in memory and in
// the footprint file (docs/gpu.md): its command line, its port written as
// ${PORT}, so that a port moved by a model added (ports go by id order)
// keeps the figure; any other change of the command measures it anew.
std::string FootprintKey(const config::ModelConfig& c);

class Scheduler {
 public:
  using ModelDone = std::function<void(absl::StatusOr<ModelView>)>;
  using ChangeSink = std::function<void(const ModelChange&)>;

  Scheduler(std::shared_ptr<const config::Config> config, actor::ActorEnv env,
            uint64_t* revisions, ChangeSink on_change,
            SchedulerOptions options = {});
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // --- Leases (the Acquire stream) ---
  ClientId Connect(LeaseClient* client, std::string name);
  // Releases every lease of the client and drops its pending ACQUIREs.
  void Disconnect(ClientId client);
  void Acquire(ClientId client, const std::string& model, int priority,
               std::string request_id);
  // `lease` 0 cancels the client's pending ACQUIREs for the model. A stale
  // or unknown lease is ignored.
  void Release(ClientId client, const std::string& model, LeaseId lease,
               absl::Time last_used);
  // Grants and releases taken by the gate on other threads: applied to the
  // scheduler's tables (leases counted, TTLs and swaps see them). The owner
  // calls it every few milliseconds and when the gate's wake callback asks.
  void Absorb();
  GrantGate& gate() { return gate_; }

  // --- Admin ---
  // Makes the model READY through the queue (evicting as the rules say);
  // `done` gets the model, or the failure. Cancel with CancelWait.
  WaiterId Start(const std::string& model, ModelDone done);
  // Waits for READY without starting it (see the proto for the rules).
  WaiterId WaitReady(const std::string& model, ModelDone done);
  // The caller went away: drop its wait (and maybe the start it wanted).
  void CancelWait(WaiterId waiter);
  // Revokes the leases, waits for them (at most unloadTimeout unless
  // `force`), stops the process.
  void Stop(const std::string& model, bool force, ModelDone done);
  void StopAll(bool force, std::function<void(std::vector<ModelView>)> done);
  // Stops everything for good: later requests get Unavailable.
  void Shutdown(std::function<void()> done);
  // Applies a new config: only what changed is touched (docs/scheduler.md).
  config::ConfigDiff Reload(std::shared_ptr<const config::Config> config);

  // --- Views ---
  // Each absorbs what the gate took first: the leases it shows are counted.
  std::vector<ModelView> List();  // Sorted by id.
  absl::StatusOr<ModelView> Get(const std::string& model);
  // What a start of `model` would evict now, without starting anything
  // (for placement across managers); the errors of Admit.
  absl::StatusOr<StartPlan> Plan(const std::string& model);
  std::shared_ptr<logs::LogBuffer> Log(const std::string& model) const;
  std::shared_ptr<const config::Config> config() const { return config_; }
  gpu::Monitor* gpu() const { return options_.gpu; }
  bool shutting_down() const { return shutting_down_; }
  const SchedulerCounters& counters() const { return counters_; }
  // Why `model`'s stop began, once (then forgotten): "swap" (evicted to
  // start another), "requested" (Stop, StopAll: /unload), "reload"
  // (removed, or its command changed), "shutdown"; "ttl" when the
  // scheduler began none (the model stopped on its own when idle).
  std::string TakeStopCause(const std::string& model);
  // Draining: the manager starts no model (a placement across managers
  // sends new starts elsewhere). Demand for a model READY here is still
  // granted, and a start in progress still finishes; demand that would
  // start one is refused UNAVAILABLE, queued demand included. Until
  // SetDraining(false).
  void SetDraining(bool draining);
  bool draining() const { return draining_; }

 private:
  struct Lease {
    LeaseId id;
    absl::Time granted_at;
    bool revoked = false;
  };
  struct Slot;
  struct Demand;
  class Activity;
  struct Client {
    LeaseClient* client;
    std::string name;
  };

  Slot* Find(const std::string& name) const;
  void Enter(Slot& s, SlotPhase next);
  ModelView View(const Slot& s) const;
  void Emit(Slot& s, ModelChange::Kind kind = ModelChange::Kind::kModified);
  void OnActorEvent(const actor::StateEvent& e);
  void Pump();
  // Runs `fn` on the next loop turn (never inside the caller).
  void Defer(std::function<void()> fn);
  void SchedulePump();
  bool Grant(Demand& d, Slot& s);
  // What starting `s` would evict now, given the starts decided in the pass
  // so far (`starting`: running for the rules; `claimed`: in a swap decided
  // this pass); `blocked` when it must wait (a removed model still runs, or
  // a victim is starting or claimed).
  std::vector<Slot*> VictimsOf(const Slot& s,
                               const std::set<std::string>& starting,
                               const std::set<std::string>& claimed,
                               bool* blocked);
  // The demand queue's door, shared by Acquire, Start and WaitReady: the
  // slot a call names, or UNAVAILABLE (shutting down), INVALID_ARGUMENT
  // (no name), NOT_FOUND (unknown).
  absl::StatusOr<Slot*> Admit(const std::string& model) const;
  // READY and open: a demand for it is granted at once.
  bool Grantable(const Slot& s) const;
  // A new demand (Acquire, Start) for `s`: a demand for a grantable model
  // is granted at once (`wait`: it waits its turn in the queue anyway);
  // otherwise it joins the queue by priority, then arrival, unless the
  // queue is full (RESOURCE_EXHAUSTED).
  // Returns whether it was queued.
  bool Submit(Demand d, Slot& s, bool wait = false);
  // Draining, and a demand for `s` would need a start.
  bool RefusedByDrain(const Slot& s) const;
  // Why a start of `s` would be refused at once, before anything is
  // evicted (`why` says it): the manager drains, the model is in its start
  // back-off, or its command cannot run. The queue's pass and Plan ask it.
  enum class Refusal { kNone, kDraining, kBackoff, kCommand };
  Refusal RefusalOf(const Slot& s, absl::Time now, absl::Status* why) const;
  // A demand for `s` (priority 0: the model's configured one), in arrival
  // order.
  Demand NewDemand(const Slot& s, int priority);
  // Answers a demand with a refusal (its caller or its lease client).
  void Refuse(Demand& d, const absl::Status& status);
  // `drain`: kDraining (a swap, a restart) or kStopDraining (a stop, a
  // removal; a draining slot becomes one).
  // `cause`: TakeStopCause's.
  void BeginEviction(Slot& s, SlotPhase drain, const std::string& reason,
                     const char* cause);
  void RevokeAll(Slot& s, const std::string& reason);
  // A Stop's or a removal's drain: kOpen and kDraining become
  // kStopDraining (bounded by unloadTimeout from now); kStopping stays.
  void DrainToStop(Slot& s);
  void MaybeStopDrained(Slot& s);
  void StopNow(Slot& s);
  void FailDemands(Slot& s, const absl::Status& status);
  void AnswerReadyWaiters(Slot& s, const absl::Status& status);
  void ReleaseLease(Slot& s, ClientId client, absl::Time last_used);
  // The gate: ops taken on other threads applied here, in the order taken
  // (a nested call finishes the outer call's first); a model closed (its
  // ops absorbed) before anything acts on its holders; the open set
  // republished when the outermost Activity ends, never in the middle of
  // one (a nested event must not reopen what its caller is closing).
  void Apply(std::vector<GrantGate::Op> ops);
  void CloseGate(Slot& s);
  void Publish();
  // A model by id, also among those a reload removed (still stopping).
  Slot* FindAny(const std::string& id) const;
  void CutOff(ClientId client, const std::string& reason);
  // Starts the model, or (`refuse` not OK: its command cannot run) fails
  // the start at once without a process.
  void StartActor(Slot& s, absl::Status refuse = absl::OkStatus());
  // A start of `s` failed with `status`: the back-off grows.
  void BackOff(Slot& s, const absl::Status& status);
  void ClearBackoff(Slot& s);
  // What a demand during the back-off gets: the last failure, and when.
  absl::Status BackoffStatus(const Slot& s) const;
  bool Running(const Slot& s) const;
  void NotifyPositions();
  // With no demand left: swap evictions still draining are called off.
  void CallOffEvictions();
  void MaybeAbortAbandonedStart(Slot& s);
  // --- GPU memory (scheduler_memory.cc) ---
  // Whether memory decides for `s`: NVML is there and its footprint is
  // known (declared, or measured before).
  bool MemoryManaged(const Slot& s) const;
  uint64_t FootprintOf(const Slot& s) const;
  // The start of `s` as memory sees it, the starts decided this pass
  // (`starting`) holding their footprints.
  // `busy`: granted this pass (about to have holders). `overdue`: its
  // demand has waited maxQueueWait, so models busy with holders may be
  // evicted for it (their leases revoked), after the idle ones.
  gpu::Decision MemoryFor(const Slot& s, const std::set<std::string>& starting,
                          const std::set<std::string>& busy, bool overdue);
  // The implicit group's one-at-a-time rule does not bind two models with
  // `resources` and known footprints while NVML is there: memory decides.
  bool MemoryExempt(const Slot& target, const Slot& running) const;
  // Each poll: READY models sampled, memory waits retried.
  void OnGpuPoll();
  // A demand waits for memory: ask again soon.
  void RetryForMemory();
  void OnMemoryEvent(Slot& s, const actor::StateEvent& e);
  // A start of `s` failed: when its process exited saying it ran out of
  // GPU memory, and this start has not been retried yet, the idle models
  // on its GPUs are evicted and it is tried once more (its demands stay
  // queued). Whether it did.
  bool RetryAfterOom(Slot& s);
  bool OomVictimsRunning(Slot& s);
  // Memory's victims, idle when decided: their gates are closed (what the
  // gate granted meanwhile absorbed) and they are still idle. False when
  // one is not: its gate reopens when the pass ends.
  bool TakeIdle(const std::vector<std::string>& victims);
  std::unique_ptr<actor::Timer> memory_timer_;

  std::unique_ptr<actor::ModelActor> MakeActor(
      const config::ModelConfig& c, std::shared_ptr<logs::LogBuffer> log);

  std::shared_ptr<const config::Config> config_;
  actor::ActorEnv env_;
  uint64_t* revisions_;
  ChangeSink on_change_;
  SchedulerOptions options_;
  std::map<std::string, std::unique_ptr<Slot>> slots_;  // By model id.
  // Models a reload removed, until their process is reaped.
  std::vector<std::unique_ptr<Slot>> retired_;
  std::list<std::unique_ptr<actor::Timer>> deferred_;
  bool pump_scheduled_ = false;
  std::map<ClientId, Client> clients_;
  std::list<Demand> queue_;  // Priority (high first), then arrival.
  uint64_t next_seq_ = 1;
  ClientId next_client_ = 1;
  GrantGate gate_;                         // Also hands out the lease ids.
  std::deque<GrantGate::Op> pending_ops_;  // Being applied.
  int activity_ = 0;                       // Nesting depth of Activity scopes.
  WaiterId next_waiter_ = 1;
  bool shutting_down_ = false;
  SchedulerCounters counters_;
  bool draining_ = false;
  bool pumping_ = false;
  bool pump_again_ = false;
  std::unique_ptr<actor::Timer> queue_timer_;  // Next maxQueueWait expiry.
};

}  // namespace modelplane::scheduler

#endif  // MODELPLANE_SERVER_CORE_SCHEDULER_SCHEDULER_H_
