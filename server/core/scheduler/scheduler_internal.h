// The scheduler's per-model and per-demand records, shared by its source
// files (scheduler.cc: the queue; scheduler_leases.cc: leases;
// scheduler_evictions.cc: evictions and stops; scheduler_calls.cc:
// the API's calls, the actors' events, the views; scheduler_reload.cc:
// reload and shutdown; scheduler_gate.cc: the grant gate's side). Private
// to the scheduler.
#ifndef MODELPLANE_SERVER_CORE_SCHEDULER_SCHEDULER_INTERNAL_H_
#define MODELPLANE_SERVER_CORE_SCHEDULER_SCHEDULER_INTERNAL_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/core/scheduler/scheduler.h"

namespace modelplane::scheduler {

// Where a slot stands between its leases and its process: one value,
// changed only by Scheduler::Enter (which checks each step in debug
// builds), as ModelActor has one State. Independent of the actor's state:
// a TTL unload or a crash stops the process of an open slot.
//
//   from            event                                    to
//   kOpen           BeginEviction: a swap, a reload restart  kDraining
//   kOpen           BeginEviction: Stop, a reload removal    kStopDraining
//   kDraining       Stop                                     kStopDraining
//   kDraining       its demand gone (CallOffEvictions)       kOpen
//   kDraining       drained, or holders cut off              kStopping
//   kStopDraining   drained, or unloadTimeout over           kStopping
//   kStopping       reaped                                   kOpen
enum class SlotPhase {
  kOpen,          // Granted whenever its model is READY.
  kDraining,      // Revoked for a swap or a restart: no new grants; stopped
                  // once its holders released (they are cut off after the
                  // revoke timeout); a swap's is called off with its demand.
  kStopDraining,  // Revoked for a Stop or a removal: stopped once drained,
                  // or when the model's unloadTimeout is over.
  kStopping,      // Its actor was told to stop; open again once reaped.
};
const char* SlotPhaseName(SlotPhase p);

struct Scheduler::Slot {
  std::shared_ptr<const config::ModelConfig> config;
  std::shared_ptr<logs::LogBuffer> log;
  std::unique_ptr<actor::ModelActor> actor;
  std::map<ClientId, Lease> holders;
  SlotPhase phase = SlotPhase::kOpen;
  // Not kOpen: revoked, no new grants (the gate is closed).
  bool closed() const { return phase != SlotPhase::kOpen; }
  std::unique_ptr<actor::Timer> drain_timer;
  std::vector<ModelDone> stop_waiters;
  std::map<WaiterId, ModelDone> ready_waiters;
  bool removed = false;  // By a reload: freed once stopped.
  std::shared_ptr<const config::ModelConfig> next_config;  // Restart pending.
  bool restart_after_stop = true;  // False: it was asleep; it stays down.
  uint64_t revision = 0;
  int queued = 0;
  // Start back-off: a start that failed is not tried again (nor evicts
  // anything) until `backoff_until`; demand meanwhile gets `last_failure`
  // at once. The wait doubles with each failed start, from kFirstBackoff
  // up to kMaxBackoff; READY, a Stop, or a changed config clears it.
  absl::Time backoff_until = absl::InfinitePast();
  absl::Duration backoff = absl::ZeroDuration();
  absl::Time failed_at;
  absl::Status last_failure;
  // When its current start began (its measured start time, docs/gpu.md).
  absl::Time starting_since;
  // Its start ran out of GPU memory and is tried once more, after these
  // idle models (evicted for it) are gone.
  bool oom_retried = false;
  std::vector<std::string> oom_victims;
  // Its current start is a wake (it was SLEEPING): one nobody waits for
  // any more still completes (MaybeAbortAbandonedStart).
  bool waking = false;
  // Its process group while it had one (the driver wait after its stop).
  int gpu_pid = 0;
  bool memory_unseen_said = false;  // The warning, once per start.
  // The measured footprint watchers were last told (OnGpuPoll).
  uint64_t measured_told = 0;
  // Why a stop of it began (TakeStopCause), until taken or called off.
  const char* stop_cause = nullptr;
};

struct Scheduler::Demand {
  uint64_t seq = 0;
  int priority = 0;
  std::string model;
  absl::Time since;
  ClientId client = 0;  // 0: a Start call.
  std::string request_id;
  WaiterId waiter = 0;
  ModelDone done;
  bool told_starting = false;
  int position = 0;
};

// A scheduler call or event in progress. The grant gate is republished when
// the outermost one ends: every path that closes a model for an eviction, a
// stop or a revocation runs inside one, so the nested events it causes
// (a lease counted, an actor's state change) cannot reopen the model before
// the caller has marked it evicting or stopped.
class Scheduler::Activity {
 public:
  explicit Activity(Scheduler* s) : s_(s) { ++s_->activity_; }
  ~Activity() {
    if (--s_->activity_ == 0) s_->Publish();
  }
  Activity(const Activity&) = delete;
  Activity& operator=(const Activity&) = delete;

 private:
  Scheduler* s_;
};

// The refusal of a demand that would start a model while draining.
absl::Status DrainingStatus();

inline std::shared_ptr<const config::ModelConfig> ModelOf(
    const std::shared_ptr<const config::Config>& config,
    const config::ModelConfig& m) {
  // Shares ownership of the whole config.
  return std::shared_ptr<const config::ModelConfig>(config, &m);
}

}  // namespace modelplane::scheduler

#endif  // MODELPLANE_SERVER_CORE_SCHEDULER_SCHEDULER_INTERNAL_H_
