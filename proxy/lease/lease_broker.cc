#include "proxy/lease/lease_broker.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace modelplane::proxy::lease {

absl::Time LeaseBroker::MonotonicNow() {
  return absl::UnixEpoch() +
         absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

LeaseBroker::LeaseBroker(LeaseTransport* transport, After after,
                         absl::Duration linger, Clock clock)
    : transport_(transport),
      after_(std::move(after)),
      linger_(linger),
      clock_(std::move(clock)) {}

LeaseBroker::Admission LeaseBroker::TryAdmit(Entry& e, int limit) {
  uint64_t g = e.gate.load(std::memory_order_acquire);
  while ((g & kOpen) != 0) {
    if (static_cast<int64_t>(g & kCount) >= limit) return Admission::kFull;
    if (e.gate.compare_exchange_weak(g, g + 1, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
      return Admission::kAdmitted;
    }
  }
  return Admission::kClosed;
}

LeaseBroker::Entry& LeaseBroker::EntryLocked(const std::string& model) {
  auto [it, inserted] = entries_.try_emplace(model);
  if (inserted) {
    const Index* old = index_.load(std::memory_order_relaxed);
    auto next = old != nullptr ? std::make_unique<Index>(*old)
                               : std::make_unique<Index>();
    (*next)[model] = &it->second;
    index_.store(next.get(), std::memory_order_release);
    indexes_.push_back(std::move(next));
  }
  return it->second;
}

LeaseBroker::Entry* LeaseBroker::Find(const std::string& model) const {
  const Index* index = index_.load(std::memory_order_acquire);
  if (index == nullptr) return nullptr;
  auto it = index->find(model);
  return it == index->end() ? nullptr : it->second;
}

namespace {

absl::Status OverLimit(const std::string& model, int limit) {
  return absl::ResourceExhaustedError(
      absl::StrCat("model ", model, " already has ", limit,
                   " requests in flight (its concurrencyLimit)"));
}

}  // namespace

uint64_t LeaseBroker::Admit(const std::string& model, int limit, Post post,
                            Done done) {
  // The held lease: no lock. The upstream was published before the gate
  // opened, and stays while this request is in flight.
  if (Entry* e = Find(model)) {
    Admission a = TryAdmit(*e, limit);
    if (a == Admission::kAdmitted) {
      done(Lease{model, *e->upstream.load(std::memory_order_acquire),
                 absl::ZeroDuration()});
      return 0;
    }
    if (a == Admission::kFull) {
      done(OverLimit(model, limit));
      return 0;
    }
  }
  std::optional<absl::StatusOr<Lease>> now;
  uint64_t acquire = 0;  // The attempt to send.
  uint64_t ticket = 0;
  {
    absl::MutexLock lock(&mu_);
    Entry& e = EntryLocked(model);
    Admission a = TryAdmit(e, limit);  // Opened meanwhile?
    if (a == Admission::kAdmitted) {
      now = Lease{model, *e.upstream.load(std::memory_order_acquire),
                  absl::ZeroDuration()};
    } else if (a == Admission::kFull) {
      now = OverLimit(model, limit);
    } else if (!transport_->Connected()) {
      now = absl::UnavailableError("the model manager is unreachable");
    } else {
      ticket = next_ticket_++;
      e.waiters.push_back(
          Waiter{std::move(post), std::move(done), ticket, clock_()});
      e.limit = limit;
      if (e.state == State::kIdle) {
        e.state = State::kAcquiring;
        e.starting_since = absl::InfinitePast();  // This ACQUIRE's own.
        acquire = ++e.attempt;
      }
    }
  }
  if (acquire != 0) transport_->SendAcquire(model, acquire);
  if (now) done(*std::move(now));
  return ticket;
}

int LeaseBroker::Position(const std::string& model, uint64_t ticket) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(model);
  if (it == entries_.end()) return 0;
  const std::vector<Waiter>& w = it->second.waiters;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i].ticket == ticket) return static_cast<int>(i) + 1;
  }
  return 0;
}

void LeaseBroker::Withdraw(const std::string& model, uint64_t ticket) {
  if (ticket == 0) return;
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(model);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  auto w =
      std::find_if(e.waiters.begin(), e.waiters.end(),
                   [ticket](const Waiter& w) { return w.ticket == ticket; });
  if (w == e.waiters.end()) return;  // Answered meanwhile.
  e.waiters.erase(w);
  if (e.waiters.empty() && e.state == State::kAcquiring) {
    // Nobody waits: the manager must not evict or start anything for it.
    // Under mu_, as a RELEASE: a next ACQUIRE must follow it on the stream.
    // A GRANTED already on its way is held and lingers out like any lease.
    e.state = State::kIdle;
    transport_->SendCancel(model);
  }
}

void LeaseBroker::Finish(const std::string& model) {
  Entry* found = Find(model);
  if (found == nullptr) return;  // Never admitted.
  // On an open gate, no lock, the last one out included: the linger check
  // (armed from the grant on) reads the time it ended.
  uint64_t g = found->gate.load(std::memory_order_acquire);
  while ((g & kOpen) != 0 && (g & kCount) > 0) {
    if ((g & kCount) == 1) Touch(*found);  // Before the count says idle.
    if (found->gate.compare_exchange_weak(g, g - 1, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
      return;
    }
  }
  // The gate is closed: the lease is going (revoked, released, the stream
  // lost), and the last one out may owe the RELEASE.
  absl::MutexLock lock(&mu_);
  Entry& e = *found;
  g = e.gate.load(std::memory_order_acquire);
  while ((g & kCount) > 0 &&
         !e.gate.compare_exchange_weak(g, g - 1, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
  }
  Touch(e);
  if (e.state != State::kHeld) return;
  if (e.revoked) {
    MaybeRelease(model, e);
  } else if (InFlightOf(e) == 0) {
    ArmLinger(model, e, linger_);
  }
}

void LeaseBroker::Touch(Entry& e) {
  e.last_used_ns.store(absl::ToUnixNanos(absl::Now()),
                       std::memory_order_relaxed);
  e.idle_since_ns.store(absl::ToUnixNanos(clock_()), std::memory_order_relaxed);
}

void LeaseBroker::MaybeRelease(const std::string& model, Entry& e) {
  // Closed only if nothing is in flight: a request admitted a moment ago
  // (the gate was open) keeps the lease.
  uint64_t g = e.gate.load(std::memory_order_acquire);
  do {
    if ((g & kCount) > 0) return;
  } while (!e.gate.compare_exchange_weak(g, 0, std::memory_order_acq_rel,
                                         std::memory_order_acquire));
  // Calls the transport under mu_: it only queues a write (it never calls
  // back into the broker synchronously), and the order of a RELEASE and the
  // next ACQUIRE must hold.
  transport_->SendRelease(
      model, e.lease,
      absl::FromUnixNanos(e.last_used_ns.load(std::memory_order_relaxed)));
  e.state = State::kIdle;
  e.lease = 0;
  e.revoked = false;
  if (!e.waiters.empty()) {
    e.state = State::kAcquiring;
    e.starting_since = absl::InfinitePast();
    transport_->SendAcquire(model, ++e.attempt);
  }
}

void LeaseBroker::ArmLinger(const std::string& model, Entry& e,
                            absl::Duration delay) {
  if (e.linger_armed) return;
  e.linger_armed = true;
  after_(delay, [this, model] { OnLinger(model); });
}

void LeaseBroker::OnLinger(const std::string& model) {
  absl::MutexLock lock(&mu_);
  Entry& e = EntryLocked(model);
  e.linger_armed = false;
  // Revoked or released meanwhile: the check ends with the lease.
  if (e.state != State::kHeld || e.revoked) return;
  // Busy: checked again a linger later (requests never arm a check).
  if (InFlightOf(e) > 0) return ArmLinger(model, e, linger_);
  absl::Duration left =
      absl::FromUnixNanos(e.idle_since_ns.load(std::memory_order_acquire)) +
      linger_ - clock_();
  if (left >= absl::Milliseconds(1)) {
    // Used since the check was armed. Rounded up: a timer a fraction of a
    // millisecond short would come back again and again.
    ArmLinger(model, e, absl::Ceil(left, absl::Milliseconds(1)));
    return;
  }
  MaybeRelease(model, e);
}

void LeaseBroker::OnGranted(const std::string& model, uint64_t lease,
                            const std::string& upstream) {
  std::vector<Answer> answers;
  {
    absl::MutexLock lock(&mu_);
    Entry& e = EntryLocked(model);
    e.state = State::kHeld;
    e.lease = lease;
    // Published before the gate opens; a string kept for good (requests of
    // an earlier lease may still be copying the old one).
    const std::string* current = e.upstream.load(std::memory_order_relaxed);
    if (current == nullptr || *current != upstream) {
      // One string per distinct URL (a model alternating between two ports
      // adds none after the second).
      auto known =
          std::find_if(upstreams_.begin(), upstreams_.end(),
                       [&upstream](const auto& u) { return *u == upstream; });
      if (known == upstreams_.end()) {
        upstreams_.push_back(std::make_unique<const std::string>(upstream));
        known = upstreams_.end() - 1;
      }
      e.upstream.store(known->get(), std::memory_order_release);
    }
    e.revoked = false;
    absl::Time now = clock_();
    for (Waiter& w : e.waiters) {
      if (InFlightOf(e) >= e.limit) {
        answers.push_back({std::move(w), OverLimit(model, e.limit)});
        continue;
      }
      e.gate.fetch_add(1, std::memory_order_acq_rel);
      absl::Duration loading;
      if (e.starting_since != absl::InfinitePast()) {
        loading = now - std::max(e.starting_since, w.since);
      }
      answers.push_back({std::move(w), Lease{model, upstream, loading}});
    }
    e.starting_since = absl::InfinitePast();
    e.waiters.clear();
    e.gate.fetch_or(kOpen, std::memory_order_acq_rel);
    // Idle from the grant on (a check pending from an earlier hold must
    // not release this one early); checked from now on, busy or not.
    e.idle_since_ns.store(absl::ToUnixNanos(clock_()),
                          std::memory_order_relaxed);
    ArmLinger(model, e, linger_);
  }
  Deliver(std::move(answers));
}

void LeaseBroker::OnStarting(const std::string& model) {
  absl::MutexLock lock(&mu_);
  Entry* e = Find(model);
  if (e == nullptr || e->state != State::kAcquiring) return;
  if (e->starting_since == absl::InfinitePast()) e->starting_since = clock_();
}

void LeaseBroker::OnRevoked(const std::string& model, uint64_t lease) {
  std::vector<std::pair<Post, std::function<void()>>> told;
  {
    absl::MutexLock lock(&mu_);
    Entry& e = EntryLocked(model);
    if (e.state != State::kHeld || e.lease != lease) return;
    e.revoked = true;  // New requests wait for a new lease.
    e.gate.fetch_and(~kOpen, std::memory_order_acq_rel);
    for (auto& [id, w] : e.watchers) told.push_back(std::move(w));
    e.watchers.clear();
    MaybeRelease(model, e);
  }
  Notify(std::move(told));
}

uint64_t LeaseBroker::WatchLease(const std::string& model, Post post,
                                 std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    Entry& e = EntryLocked(model);
    if (e.state == State::kHeld && !e.revoked) {
      uint64_t id = next_watch_++;
      e.watchers.emplace(id, std::make_pair(std::move(post), std::move(fn)));
      return id;
    }
  }
  post(std::move(fn));  // Already revoked or lost.
  return 0;
}

void LeaseBroker::Unwatch(const std::string& model, uint64_t id) {
  if (id == 0) return;
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(model);
  if (it != entries_.end()) it->second.watchers.erase(id);
}

void LeaseBroker::Notify(
    std::vector<std::pair<Post, std::function<void()>>> watchers) {
  for (auto& [post, fn] : watchers) post(std::move(fn));
}

void LeaseBroker::OnFailed(const std::string& model, uint64_t attempt,
                           const absl::Status& status) {
  std::vector<Answer> answers;
  {
    absl::MutexLock lock(&mu_);
    Entry& e = EntryLocked(model);
    // A withdrawn ACQUIRE's answer (CANCELLED), or one superseded: the
    // requests waiting now wait for the newer one.
    if (attempt != 0 && attempt != e.attempt) return;
    if (e.state == State::kAcquiring) e.state = State::kIdle;
    for (Waiter& w : e.waiters) answers.push_back({std::move(w), status});
    e.waiters.clear();
  }
  Deliver(std::move(answers));
}

void LeaseBroker::OnDisconnected() {
  std::vector<Answer> answers;
  std::vector<std::pair<Post, std::function<void()>>> told;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [model, e] : entries_) {
      for (auto& [id, w] : e.watchers) told.push_back(std::move(w));
      e.watchers.clear();
      e.gate.fetch_and(~kOpen, std::memory_order_acq_rel);
      e.state = State::kIdle;
      e.lease = 0;
      e.revoked = false;
      for (Waiter& w : e.waiters) {
        answers.push_back(
            {std::move(w), absl::UnavailableError(
                               "lost the connection to the model manager")});
      }
      e.waiters.clear();
    }
  }
  Deliver(std::move(answers));
  Notify(std::move(told));
}

int LeaseBroker::InFlight(const std::string& model) {
  const Entry* e = Find(model);  // No lock: the gate is an atomic.
  return e == nullptr ? 0 : InFlightOf(*e);
}

absl::Duration LeaseBroker::OldestWait(const std::string& model) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(model);
  if (it == entries_.end() || it->second.waiters.empty()) {
    return absl::ZeroDuration();
  }
  // Waiters queue in arrival order (a withdrawn one is erased in place).
  return clock_() - it->second.waiters.front().since;
}

int LeaseBroker::Busy(const std::string& model) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(model);
  if (it == entries_.end()) return 0;
  return InFlightOf(it->second) + static_cast<int>(it->second.waiters.size());
}

void LeaseBroker::Loads(std::map<std::string, int>* in_flight,
                        std::map<std::string, int>* queued) {
  absl::MutexLock lock(&mu_);
  for (const auto& [model, e] : entries_) {
    (*in_flight)[model] = InFlightOf(e);
    (*queued)[model] = static_cast<int>(e.waiters.size());
  }
}

void LeaseBroker::Deliver(std::vector<Answer> answers) {
  for (auto& [w, result] : answers) {
    w.post([done = std::move(w.done), r = std::move(result)]() mutable {
      done(std::move(r));
    });
  }
}

}  // namespace modelplane::proxy::lease
