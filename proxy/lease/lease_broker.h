// The proxy's side of leases: one per model, shared by every worker of the
// proxy process (docs/proxy.md). A request for a model whose lease is held
// costs two atomic operations on that model's gate (admit, finish) — no lock
// and no call to the manager, the last one out included (it stores the time
// in atomics; the linger check, armed from the grant on, reads it); the
// mutex is taken only when a lease comes or goes. The first request
// (or the first after a revocation) asks the manager through the Acquire
// stream; requests wait here meanwhile. REVOKED stops admitting new requests
// (they wait for a new lease), the requests in flight finish, then the lease
// is released; a lease idle for `linger` is released on its own with the time
// its last request ended, so the model's TTL works.
//
// Threading: Admit and Finish from any worker thread; the transport's events
// (OnGranted...) from the gRPC thread. A waiter's callback runs through the
// `post` it gave (its worker loop); the fast path answers inline.
#ifndef MODELPLANE_PROXY_LEASE_LEASE_BROKER_H_
#define MODELPLANE_PROXY_LEASE_LEASE_BROKER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace modelplane::proxy::lease {

struct Lease {
  std::string model;     // Canonical id.
  std::string upstream;  // Base URL, e.g. http://127.0.0.1:5800.
  // Of the request's wait, how long the model was loading for it: from the
  // manager's STARTING (or the request's arrival, if later) to the grant.
  // Zero when it waited for no start (the rest of a wait is the queue's).
  absl::Duration loading;
};

// The Acquire stream, as the broker sees it (the gRPC client, or a fake).
class LeaseTransport {
 public:
  virtual ~LeaseTransport() = default;
  // False while the stream to the manager is down.
  virtual bool Connected() = 0;
  // `attempt` numbers the model's ACQUIREs (the answer's FAILED carries it
  // back, as its request id).
  virtual void SendAcquire(const std::string& model, uint64_t attempt) = 0;
  virtual void SendRelease(const std::string& model, uint64_t lease,
                           absl::Time last_used) = 0;
  // Withdraws the model's pending ACQUIRE (RELEASE with lease 0): no
  // request waits for it any more.
  virtual void SendCancel(const std::string& model) = 0;
};

class LeaseBroker {
 public:
  using Post = std::function<void(std::function<void()>)>;
  using Done = std::function<void(absl::StatusOr<Lease>)>;
  // Runs `fn` after `delay` on some thread (the broker's timer thread).
  using After = std::function<void(absl::Duration, std::function<void()>)>;
  // Measures idleness: monotonic by default (a wall clock stepped back
  // would hold an idle lease that much longer).
  using Clock = std::function<absl::Time()>;
  static absl::Time MonotonicNow();

  LeaseBroker(LeaseTransport* transport, After after,
              absl::Duration linger = absl::Seconds(1),
              Clock clock = &LeaseBroker::MonotonicNow);

  // Admits one request to `model` (canonical id), at most `limit` in flight
  // across the process. `done` gets the lease (the request is then in
  // flight: call Finish), or ResourceExhausted (over the limit), Unavailable
  // (manager unreachable), or the manager's FAILED status. Inline when the
  // lease is held; else through `post`.
  // Returns a ticket for Position() when the request waits, else 0.
  uint64_t Admit(const std::string& model, int limit, Post post, Done done);
  // A waiting request's place among those waiting for `model` in this
  // process (1: next), or 0 when it no longer waits.
  int Position(const std::string& model, uint64_t ticket);
  // A waiting request's client left: it waits no more, and its `done` is
  // never called. When it was the last one waiting for `model`, the ACQUIRE
  // is withdrawn (the manager then evicts nothing and starts nothing for
  // it). A ticket already answered is ignored.
  void Withdraw(const std::string& model, uint64_t ticket);
  // The request ended (the response was sent or the client left).
  void Finish(const std::string& model);
  // For what must not outlive `model`'s lease while holding it (a
  // WebSocket tunnel: it could hold it for hours and stall a swap until
  // the manager's revoke timeout cut the whole stream): `fn` runs through
  // `post` once the lease is revoked or lost with the stream — at once if
  // it is not held now. Returns an id for Unwatch (0 when it ran at once).
  uint64_t WatchLease(const std::string& model, Post post,
                      std::function<void()> fn);
  void Unwatch(const std::string& model, uint64_t id);

  // --- Transport events ---
  // The manager began the model's start for the ACQUIRE (STARTING): the
  // waiters' load wait counts from here.
  void OnStarting(const std::string& model);
  void OnGranted(const std::string& model, uint64_t lease,
                 const std::string& upstream);
  void OnRevoked(const std::string& model, uint64_t lease);
  // `attempt`: the ACQUIRE's (SendAcquire), or 0 for the current one. The
  // answer to an ACQUIRE since withdrawn or superseded is ignored.
  void OnFailed(const std::string& model, uint64_t attempt,
                const absl::Status& status);
  void OnFailed(const std::string& model, const absl::Status& status) {
    OnFailed(model, 0, status);
  }
  // The stream broke: every lease ended with it; waiters get Unavailable.
  void OnDisconnected();

  // Requests in flight to `model` (tests, metrics).
  int InFlight(const std::string& model);
  // In flight and waiting for its lease: how busy it is (selectors).
  int Busy(const std::string& model);
  // How long the longest-waiting request for `model` has waited for its
  // lease (zero: none waits). Replicas spill over by it.
  absl::Duration OldestWait(const std::string& model);
  // Every model's requests in flight and waiting for a lease (metrics).
  void Loads(std::map<std::string, int>* in_flight,
             std::map<std::string, int>* queued);

 private:
  enum class State { kIdle, kAcquiring, kHeld };
  struct Waiter {
    Post post;
    Done done;
    uint64_t ticket = 0;
    absl::Time since;  // When it began to wait (clock_).
  };
  // A model's gate: its requests in flight (low bits) and kOpen while its
  // lease is held and not revoked. Requests are admitted by one CAS while it
  // is open; closing it (revocation, release, a broken stream) is one atomic
  // operation under mu_, after which no request gets in without mu_.
  static constexpr uint64_t kOpen = uint64_t{1} << 63;
  static constexpr uint64_t kCount = (uint64_t{1} << 32) - 1;
  struct Entry {
    State state = State::kIdle;  // mu_.
    uint64_t lease = 0;          // mu_.
    std::atomic<uint64_t> gate{0};
    // The lease's base URL: a string the broker keeps for as long as it
    // lives (upstreams_), so an admitted request reads it without mu_.
    std::atomic<const std::string*> upstream{nullptr};
    bool revoked = false;  // mu_ (the gate closes with it).
    int limit = 1;         // The concurrencyLimit waiters asked with.
    uint64_t attempt = 0;  // mu_: the last ACQUIRE sent for the model.
    // mu_: when the manager said the model's start began (STARTING), until
    // the grant; absl::InfinitePast() when it did not.
    absl::Time starting_since = absl::InfinitePast();
    // Unix nanoseconds, written by the last request out without mu_:
    // the wall clock, sent with the RELEASE (TTL), and `clock_`'s time,
    // since the last request ended or since the grant.
    std::atomic<int64_t> last_used_ns{0};
    std::atomic<int64_t> idle_since_ns{0};
    // A linger check is pending on the timer thread (mu_). From the grant
    // on, one at a time, re-armed while the lease is busy or was used since:
    // a request never arms one, so finishing one takes no lock.
    bool linger_armed = false;
    std::vector<Waiter> waiters;
    // WatchLease's, by id: told when the lease goes.
    std::map<uint64_t, std::pair<Post, std::function<void()>>> watchers;
  };
  // The last request on `e` ended now (any thread, no lock needed).
  void Touch(Entry& e);
  // Posts every watcher's fn (outside mu_).
  static void Notify(
      std::vector<std::pair<Post, std::function<void()>>> watchers);
  using Answer = std::pair<Waiter, absl::StatusOr<Lease>>;
  enum class Admission { kAdmitted, kFull, kClosed };
  // One more request in flight if the gate is open and under `limit`.
  static Admission TryAdmit(Entry& e, int limit);
  static int InFlightOf(const Entry& e) {
    return static_cast<int>(e.gate.load(std::memory_order_acquire) & kCount);
  }
  // The model's entry, made (and indexed for Find) if new.
  Entry& EntryLocked(const std::string& model)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Without mu_: the entry, or nullptr if the model was never asked for.
  Entry* Find(const std::string& model) const;

  // With mu_ held: a release if the lease is done with; returns whether to
  // send one (and a new ACQUIRE for waiters).
  void MaybeRelease(const std::string& model, Entry& e)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Arms the linger check unless one is pending; it releases the lease once
  // the model has been idle for `linger_` since its last use (re-arming for
  // the rest when it was used meanwhile).
  void ArmLinger(const std::string& model, Entry& e, absl::Duration delay)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnLinger(const std::string& model);
  static void Deliver(std::vector<Answer> answers);

  LeaseTransport* transport_;
  After after_;
  absl::Duration linger_;
  Clock clock_;
  absl::Mutex mu_;
  uint64_t next_ticket_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_watch_ ABSL_GUARDED_BY(mu_) = 1;
  // Entries are never removed: Find's pointers stay valid.
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // A read-only index of entries_, replaced (not changed) when a model is
  // first asked for; the old ones are kept until the broker goes.
  using Index = absl::flat_hash_map<std::string, Entry*>;
  std::atomic<const Index*> index_{nullptr};
  std::vector<std::unique_ptr<const Index>> indexes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<const std::string>> upstreams_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace modelplane::proxy::lease

#endif  // MODELPLANE_PROXY_LEASE_LEASE_BROKER_H_
