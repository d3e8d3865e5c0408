// The scheduler's side of the grant gate (grant_gate.h): absorbing the
// grants and releases taken on other threads, closing a model before its
// holders are acted on, republishing what may be granted. Leases are in
// scheduler_leases.cc, the queue in scheduler.cc, evictions in
// scheduler_evictions.cc; docs/scheduler.md "Grants off the loop".
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/core/scheduler/scheduler.h"
#include "server/core/scheduler/scheduler_internal.h"

namespace modelplane::scheduler {

using actor::State;

void Scheduler::Absorb() {
  Activity activity(this);
  Apply(gate_.TakeOps());
}

Scheduler::Slot* Scheduler::FindAny(const std::string& id) const {
  auto it = slots_.find(id);
  if (it != slots_.end()) return it->second.get();
  for (const auto& r : retired_) {
    if (r->config->id == id) return r.get();
  }
  return nullptr;
}

void Scheduler::Apply(std::vector<GrantGate::Op> ops) {
  for (GrantGate::Op& op : ops) pending_ops_.push_back(std::move(op));
  bool released = false;
  // A close inside (a release draining an evicting model stops it) applies
  // what is left of this batch before its own newer ops: order is kept.
  while (!pending_ops_.empty()) {
    GrantGate::Op op = std::move(pending_ops_.front());
    pending_ops_.pop_front();
    Slot* s = FindAny(op.model);
    if (op.kind == GrantGate::Op::Kind::kRelease) {
      if (s == nullptr) continue;
      auto held = s->holders.find(op.client);
      if (held == s->holders.end() || held->second.id != op.lease) continue;
      ReleaseLease(*s, op.client, op.at);
      released = true;
      continue;
    }
    // A grant. Closing a model or removing a client absorbs the ops first,
    // so its client is connected and the model was open until now.
    auto c = clients_.find(op.client);
    if (c == clients_.end()) {
      gate_.EraseHolder(op.model, op.client, op.lease);
      continue;
    }
    if (s == nullptr) {  // Cannot happen (reloads close first); let it go.
      gate_.EraseHolder(op.model, op.client, op.lease);
      c->second.client->OnRevoked(op.model, op.lease,
                                  "model " + op.model + " was removed");
      continue;
    }
    if (s->holders.count(op.client) > 0) {
      s->actor->ReleaseLease(env_.clock->Now());  // Replaced (as in Grant).
    }
    s->holders[op.client] = Lease{op.lease, op.at, false};
    s->actor->AddLease();  // Emits the change (leases count).
    if (s->closed() || s->actor->status().state != State::kReady) {
      // Absorbed by the close of an eviction, a stop or a death: a holder
      // like the others, and revoked like them.
      s->holders[op.client].revoked = true;
      c->second.client->OnRevoked(
          s->config->id, op.lease,
          absl::StrCat("model ", s->config->id, " is being stopped"));
    }
  }
  if (released) SchedulePump();  // A swap may have waited for it.
}

void Scheduler::CloseGate(Slot& s) { Apply(gate_.Close(s.config->id)); }

void Scheduler::Publish() {
  std::map<std::string, std::string> open;
  if (!shutting_down_) {
    for (const auto& [id, s] : slots_) {
      if (s->actor->status().state == State::kReady && !s->closed() &&
          !s->removed && s->next_config == nullptr) {
        open[id] = s->config->proxy;
      }
    }
  }
  gate_.Publish(config_, std::move(open), !queue_.empty());
}

}  // namespace modelplane::scheduler
