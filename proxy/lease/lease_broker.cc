#include "proxy/lease/lease_broker.h"

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

uint64_t LeaseBroker::Admit(const std::string& model, int limit, Post post,
                            Done done) {
  std::optional<absl::StatusOr<Lease>> now;
  bool acquire = false;
  uint64_t ticket = 0;
  {
    absl::MutexLock lock(&mu_);
    Entry& e = entries_[model];
    if (e.state == State::kHeld && !e.revoked) {
      if (e.in_flight >= limit) {
        now = absl::ResourceExhaustedError(
            absl::StrCat("model ", model, " already has ", limit,
                         " requests in flight (its concurrencyLimit)"));
      } else {
        ++e.in_flight;  // A pending linger check sees it and lets go.
        now = Lease{model, e.upstream};
      }
    } else if (!transport_->Connected()) {
      now = absl::UnavailableError("the model manager is unreachable");
    } else {
      ticket = next_ticket_++;
      e.waiters.push_back(Waiter{std::move(post), std::move(done), ticket});
      e.limit = limit;
      if (e.state == State::kIdle) {
        e.state = State::kAcquiring;
        acquire = true;
      }
    }
  }
  if (acquire) transport_->SendAcquire(model);
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

void LeaseBroker::Finish(const std::string& model) {
  absl::MutexLock lock(&mu_);
  Entry& e = entries_[model];
  if (e.in_flight > 0) --e.in_flight;
  e.last_used = absl::Now();
  e.idle_since = clock_();
  if (e.state != State::kHeld) return;
  if (e.revoked) {
    MaybeRelease(model, e);
  } else if (e.in_flight == 0) {
    ArmLinger(model, e, linger_);
  }
}

void LeaseBroker::MaybeRelease(const std::string& model, Entry& e) {
  if (e.in_flight > 0) return;
  // Calls the transport under mu_: it only queues a write (it never calls
  // back into the broker synchronously), and the order of a RELEASE and the
  // next ACQUIRE must hold.
  transport_->SendRelease(model, e.lease, e.last_used);
  e.state = State::kIdle;
  e.lease = 0;
  e.revoked = false;
  if (!e.waiters.empty()) {
    e.state = State::kAcquiring;
    transport_->SendAcquire(model);
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
  Entry& e = entries_[model];
  e.linger_armed = false;
  // Busy again (its last request re-arms), revoked, or released meanwhile.
  if (e.state != State::kHeld || e.in_flight > 0 || e.revoked) return;
  absl::Duration left = e.idle_since + linger_ - clock_();
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
    Entry& e = entries_[model];
    e.state = State::kHeld;
    e.lease = lease;
    e.upstream = upstream;
    e.revoked = false;
    for (Waiter& w : e.waiters) {
      if (e.in_flight >= e.limit) {
        answers.push_back(
            {std::move(w), absl::ResourceExhaustedError(absl::StrCat(
                               "model ", model, " already has ", e.limit,
                               " requests in flight (its concurrencyLimit)"))});
        continue;
      }
      ++e.in_flight;
      answers.push_back({std::move(w), Lease{model, upstream}});
    }
    e.waiters.clear();
    // Idle from the grant on (a check pending from an earlier hold must
    // not release this one early).
    e.idle_since = clock_();
    if (e.in_flight == 0) ArmLinger(model, e, linger_);
  }
  Deliver(std::move(answers));
}

void LeaseBroker::OnRevoked(const std::string& model, uint64_t lease) {
  absl::MutexLock lock(&mu_);
  Entry& e = entries_[model];
  if (e.state != State::kHeld || e.lease != lease) return;
  e.revoked = true;  // New requests wait for a new lease.
  MaybeRelease(model, e);
}

void LeaseBroker::OnFailed(const std::string& model,
                           const absl::Status& status) {
  std::vector<Answer> answers;
  {
    absl::MutexLock lock(&mu_);
    Entry& e = entries_[model];
    if (e.state == State::kAcquiring) e.state = State::kIdle;
    for (Waiter& w : e.waiters) answers.push_back({std::move(w), status});
    e.waiters.clear();
  }
  Deliver(std::move(answers));
}

void LeaseBroker::OnDisconnected() {
  std::vector<Answer> answers;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [model, e] : entries_) {
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
}

int LeaseBroker::InFlight(const std::string& model) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(model);
  return it == entries_.end() ? 0 : it->second.in_flight;
}

int LeaseBroker::Busy(const std::string& model) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(model);
  if (it == entries_.end()) return 0;
  return it->second.in_flight + static_cast<int>(it->second.waiters.size());
}

void LeaseBroker::Loads(std::map<std::string, int>* in_flight,
                        std::map<std::string, int>* queued) {
  absl::MutexLock lock(&mu_);
  for (const auto& [model, e] : entries_) {
    (*in_flight)[model] = e.in_flight;
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
