// The grant gate: lets the thread that reads an Acquire stream (a gRPC
// thread) grant a lease on a READY model at once, and take a RELEASE of one,
// without the hop to the actor loop that every other scheduler call makes.
// That hop (a wakeup of the loop thread, then the write handed back to gRPC)
// was a fifth of ACQUIRE -> GRANTED (docs/manager.md, "Benchmarks").
//
// The scheduler stays the owner of every decision. It publishes which
// models may be granted this way ("open": READY, not being evicted, not
// shutting down) and mirrors who holds a lease on what. A grant or release
// made here is recorded as an op under the gate's lock; the scheduler
// absorbs the ops (applies them to its own tables) on its loop, and — the
// rule that makes this safe — closes a model in the gate, absorbing its ops
// under the same lock, before it acts on that model's holders (evicts,
// stops, revokes). A grant therefore either happened before the close and
// is a holder the eviction revokes and waits for, or comes after it and
// finds the model closed (the ACQUIRE then takes the loop's path).
//
// Absorbing is otherwise lazy: waking the loop for every grant cost as much
// as the hop it saves (two threads busy on two cores). The owner absorbs
// every few milliseconds, every scheduler call absorbs first, and the TTL
// check absorbs before it unloads. Only a release someone may be waiting
// for wakes the loop at once: of a model that is closed (being evicted or
// stopped) or while demand is queued (a swap may wait for the model to go
// idle).
//
// Thread-safety: TryAcquire and TryRelease on any thread; the rest on the
// scheduler's loop thread.
#ifndef MODELPLANE_SERVER_CORE_SCHEDULER_GRANT_GATE_H_
#define MODELPLANE_SERVER_CORE_SCHEDULER_GRANT_GATE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/core/config/config.h"

namespace modelplane::scheduler {

using ClientId = uint64_t;
using LeaseId = uint64_t;

class GrantGate {
 public:
  struct Op {
    enum class Kind { kGrant, kRelease };
    Kind kind;
    ClientId client;
    std::string model;  // Canonical id.
    LeaseId lease;
    absl::Time at;  // Granted at, or the client's last use.
  };
  struct Grant {
    std::string model;  // Canonical id.
    std::string upstream;
    LeaseId lease;
  };

  // --- Any thread ---

  // A new lease on `name` (id or alias) for `client` when the model is open
  // and the client holds none on it; else nullopt (ask the loop).
  std::optional<Grant> TryAcquire(ClientId client, const std::string& name,
                                  absl::Time now);
  // Takes the release of `lease` when it is the client's lease on the model
  // as the gate knows it; else false (ask the loop).
  bool TryRelease(ClientId client, const std::string& name, LeaseId lease,
                  absl::Time last_used);

  // --- The scheduler's loop thread ---

  // Called (outside the lock) when a release someone may wait for was
  // taken and no earlier call is still pending: the owner posts
  // Scheduler::Absorb to the loop.
  void set_wake(std::function<void()> wake) { wake_ = std::move(wake); }
  // Fast ops are taken for `client` from now on (it is connected).
  void AddClient(ClientId client);
  // No more fast ops for `client`; returns every pending op to absorb first.
  std::vector<Op> RemoveClient(ClientId client);
  std::vector<Op> TakeOps();
  // Closes one model (or all) and returns every pending op.
  std::vector<Op> Close(const std::string& model);
  std::vector<Op> CloseAll();
  // The models that are open now (id -> upstream URL), resolving names
  // through `config`, and whether demand is queued. Replaces the previous.
  void Publish(std::shared_ptr<const config::Config> config,
               std::map<std::string, std::string> open, bool demand_waiting);
  // A lease for the scheduler to grant `client` on `model`: a new id
  // (recorded; `replaced` is the client's revoked lease it replaces, or 0),
  // or — second false — the lease the gate granted that client meanwhile,
  // which the scheduler absorbs and answers with instead.
  std::pair<LeaseId, bool> ClaimLease(const std::string& model, ClientId client,
                                      LeaseId replaced);
  // The scheduler's releases, mirrored (only `lease`, not a newer one).
  void EraseHolder(const std::string& model, ClientId client, LeaseId lease);

 private:
  std::vector<Op> TakeOpsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeIfNeeded(bool wake);

  std::function<void()> wake_;
  absl::Mutex mu_;
  std::shared_ptr<const config::Config> config_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> open_ ABSL_GUARDED_BY(mu_);
  bool demand_waiting_ ABSL_GUARDED_BY(mu_) = false;
  // model id -> client -> its lease (granted here or by the scheduler).
  std::map<std::string, std::map<ClientId, LeaseId>> holders_
      ABSL_GUARDED_BY(mu_);
  std::set<ClientId> clients_ ABSL_GUARDED_BY(mu_);
  std::vector<Op> ops_ ABSL_GUARDED_BY(mu_);
  bool wake_pending_ ABSL_GUARDED_BY(mu_) = false;
  LeaseId next_lease_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace modelplane::scheduler

#endif  // MODELPLANE_SERVER_CORE_SCHEDULER_GRANT_GATE_H_
