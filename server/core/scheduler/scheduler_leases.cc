// The scheduler's leases (docs/scheduler.md, "Leases"): clients that
// connect, Acquire and Release, the admission of a demand (refused while
// draining, backing off or over its limits), and the grant itself. The
// queue and evictions are in scheduler.cc.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/scheduler/scheduler.h"
#include "server/core/scheduler/scheduler_internal.h"

namespace modelplane::scheduler {

using actor::State;

ClientId Scheduler::Connect(LeaseClient* client, std::string name) {
  Activity activity(this);
  ClientId id = next_client_++;
  clients_[id] = Client{client, std::move(name)};
  gate_.AddClient(id);
  return id;
}

void Scheduler::Disconnect(ClientId client) {
  if (clients_.count(client) == 0) return;
  Activity activity(this);
  // The gate takes nothing more for it; what it took is absorbed first, so
  // the loop below releases those leases too.
  Apply(gate_.RemoveClient(client));
  clients_.erase(client);
  absl::Time now = env_.clock->Now();
  for (auto& [id, slot] : slots_) ReleaseLease(*slot, client, now);
  for (auto& slot : retired_) ReleaseLease(*slot, client, now);
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->client != client) {
      ++it;
      continue;
    }
    Slot* s = Find(it->model);
    it = queue_.erase(it);
    if (s != nullptr) {
      --s->queued;
      Emit(*s);
      MaybeAbortAbandonedStart(*s);
    }
  }
  Pump();
}

void Scheduler::Acquire(ClientId client, const std::string& model, int priority,
                        std::string request_id) {
  Activity activity(this);
  Apply(gate_.TakeOps());  // In order with what the gate took before.
  auto c = clients_.find(client);
  if (c == clients_.end()) return;
  LeaseClient* lc = c->second.client;
  absl::StatusOr<Slot*> admitted = Admit(model);
  if (!admitted.ok()) {
    lc->OnFailed(model, request_id, admitted.status(), nullptr);
    return;
  }
  Slot* s = *admitted;
  auto held = s->holders.find(client);
  if (held != s->holders.end() && !held->second.revoked) {
    lc->OnGranted(s->config->id, request_id, held->second.id, s->config->proxy);
    return;
  }
  Demand d = NewDemand(*s, priority);
  d.client = client;
  d.request_id = std::move(request_id);
  // A client whose lease was revoked (an eviction called off) waits its
  // turn behind the demand already queued.
  Submit(std::move(d), *s, /*wait=*/held != s->holders.end());
}

absl::StatusOr<Scheduler::Slot*> Scheduler::Admit(
    const std::string& model) const {
  if (shutting_down_) {
    return absl::UnavailableError("the manager is shutting down");
  }
  if (model.empty()) return absl::InvalidArgumentError("no model named");
  Slot* s = Find(model);
  if (s == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown model '", model, "'"));
  }
  return s;
}

bool Scheduler::Grantable(const Slot& s) const {
  return s.actor->status().state == State::kReady && !s.closed();
}

bool Scheduler::Submit(Demand d, Slot& s, bool wait) {
  // Fast path: a grantable model is granted at once, whatever the queue
  // holds (as the gate does: it waits for nothing).
  if (!wait && Grantable(s)) {
    if (d.client == 0) {
      d.done(View(s));  // A Start: nothing changes.
      return false;
    }
    ++s.queued;
    Grant(d, s);
    return false;
  }
  if (RefusedByDrain(s)) {
    Refuse(d, DrainingStatus());
    return false;
  }
  if (queue_.size() >= options_.max_queue) {
    Refuse(d, absl::ResourceExhaustedError(absl::StrCat(
                  "the queue is full (", options_.max_queue, " waiting)")));
    return false;
  }
  auto pos = std::find_if(queue_.begin(), queue_.end(), [&](const Demand& q) {
    return q.priority < d.priority;
  });
  queue_.insert(pos, std::move(d));
  ++s.queued;
  Emit(s);
  Pump();
  return true;
}

Scheduler::Refusal Scheduler::RefusalOf(const Slot& s, absl::Time now,
                                        absl::Status* why) const {
  if (RefusedByDrain(s)) {
    *why = DrainingStatus();
    return Refusal::kDraining;
  }
  if (now < s.backoff_until) {
    *why = BackoffStatus(s);
    return Refusal::kBackoff;
  }
  // A sleeping model is woken, not spawned: its command is not run.
  if (s.actor->status().state == State::kSleeping) return Refusal::kNone;
  if (absl::Status runnable = s.actor->CheckCommand(); !runnable.ok()) {
    *why = std::move(runnable);
    return Refusal::kCommand;
  }
  return Refusal::kNone;
}

Scheduler::Demand Scheduler::NewDemand(const Slot& s, int priority) {
  Demand d;
  d.seq = next_seq_++;
  // 0 (what the proxy sends): the model's configured priority.
  d.priority = priority != 0 ? priority : s.config->priority;
  d.model = s.config->id;
  d.since = env_.clock->Now();
  return d;
}

bool Scheduler::RefusedByDrain(const Slot& s) const {
  State st = s.actor->status().state;
  // A model a reload restarts comes back by itself: not a new start.
  return draining_ && st != State::kStarting && s.next_config == nullptr &&
         !(st == State::kReady && !s.closed());
}

void Scheduler::SetDraining(bool draining) {
  Activity activity(this);
  draining_ = draining;
  if (draining) Pump();  // Queued demand that needs a start is refused.
}

void Scheduler::Refuse(Demand& d, const absl::Status& status) {
  if (d.client == 0) {
    if (d.done) d.done(status);
    return;
  }
  auto c = clients_.find(d.client);
  if (c != clients_.end()) {
    c->second.client->OnFailed(d.model, d.request_id, status, nullptr);
  }
}

void Scheduler::Release(ClientId client, const std::string& model,
                        LeaseId lease, absl::Time last_used) {
  Activity activity(this);
  Apply(gate_.TakeOps());  // The lease may be one the gate granted.
  Slot* s = Find(model);
  // A model a reload removed drains under its id until its holders let go:
  // their RELEASE stops it (the config no longer names it).
  if (s == nullptr && lease != 0) s = FindAny(model);
  if (s == nullptr) return;
  if (lease == 0) {  // Cancel pending ACQUIREs for the model.
    std::vector<std::string> cancelled;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->client == client && it->model == s->config->id) {
        cancelled.push_back(it->request_id);
        it = queue_.erase(it);
        --s->queued;
      } else {
        ++it;
      }
    }
    if (auto c = clients_.find(client); c != clients_.end()) {
      for (const std::string& request_id : cancelled) {
        c->second.client->OnFailed(
            s->config->id, request_id,
            absl::CancelledError("cancelled by RELEASE with lease_id 0"),
            nullptr);
      }
    }
    if (!cancelled.empty()) {
      Emit(*s);
      MaybeAbortAbandonedStart(*s);
      Pump();
    }
    return;
  }
  auto held = s->holders.find(client);
  if (held == s->holders.end() || held->second.id != lease) return;
  ReleaseLease(*s, client, last_used);
  Pump();
}

void Scheduler::ReleaseLease(Slot& s, ClientId client, absl::Time last_used) {
  auto held = s.holders.find(client);
  if (held == s.holders.end()) return;
  gate_.EraseHolder(s.config->id, client, held->second.id);
  s.holders.erase(held);
  s.actor->ReleaseLease(last_used);
  MaybeStopDrained(s);
}

bool Scheduler::Grant(Demand& d, Slot& s) {
  --s.queued;
  if (d.client == 0) {
    Emit(s);
    if (d.done) d.done(View(s));
    return true;
  }
  auto c = clients_.find(d.client);
  if (c == clients_.end()) return true;
  auto held = s.holders.find(d.client);
  if (held != s.holders.end() && !held->second.revoked) {
    // A second ACQUIRE of the same stream while the first waited: one
    // client holds one lease per model, so one RELEASE gives it back.
    c->second.client->OnGranted(s.config->id, d.request_id, held->second.id,
                                s.config->proxy);
    return true;
  }
  // A new lease, unless the gate granted this client one since the ops
  // were last absorbed (on its own thread, just now): then that one.
  std::pair<LeaseId, bool> claim =
      gate_.ClaimLease(s.config->id, d.client,
                       held != s.holders.end() ? held->second.id : LeaseId{0});
  if (!claim.second) {
    Apply(gate_.TakeOps());
    c->second.client->OnGranted(s.config->id, d.request_id, claim.first,
                                s.config->proxy);
    return true;
  }
  if (held != s.holders.end()) {
    // A revoked lease not yet released is replaced (its late RELEASE no
    // longer matches and is ignored).
    s.actor->ReleaseLease(env_.clock->Now());
  }
  LeaseId id = claim.first;
  s.holders[d.client] = Lease{id, env_.clock->Now(), false};
  s.actor->AddLease();  // Emits the change (leases count).
  c->second.client->OnGranted(s.config->id, d.request_id, id, s.config->proxy);
  return true;
}

}  // namespace modelplane::scheduler
