// The scheduler's evictions and stops (docs/scheduler.md, "Eviction
// rules" and "Stop, StopAll, shutdown"): a model's leases revoked, its
// drain, and the stop once the last lease is back or the drain timed out.
// Leases are in scheduler_leases.cc, the queue in scheduler.cc.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/scheduler/scheduler.h"
#include "server/core/scheduler/scheduler_internal.h"

namespace modelplane::scheduler {

using actor::State;

void Scheduler::RevokeAll(Slot& s, const std::string& reason) {
  std::vector<std::pair<LeaseClient*, LeaseId>> notes;
  for (auto& [client, lease] : s.holders) {
    if (lease.revoked) continue;
    lease.revoked = true;
    auto c = clients_.find(client);
    if (c != clients_.end()) notes.push_back({c->second.client, lease.id});
  }
  for (auto& [client, lease] : notes) {
    client->OnRevoked(s.config->id, lease, reason);
  }
}

void Scheduler::BeginEviction(Slot& s, SlotPhase drain,
                              const std::string& reason, const char* cause) {
  s.stop_cause = cause;
  // A stop outranks a swap's drain; a slot already stopping stays so.
  if (drain == SlotPhase::kStopDraining) {
    DrainToStop(s);
  } else if (s.phase == SlotPhase::kOpen) {
    Enter(s, SlotPhase::kDraining);
  }
  CloseGate(s);  // Before the holders are revoked: the gate's are among them.
  Emit(s);
  RevokeAll(s, reason);
  if (!s.holders.empty() && s.drain_timer == nullptr &&
      s.phase != SlotPhase::kStopping) {
    std::string id = s.config->id;
    absl::Duration bound = s.phase == SlotPhase::kStopDraining
                               ? s.config->unload_timeout
                               : options_.revoke_timeout;
    s.drain_timer = env_.clock->After(bound, [this, id, bound] {
      Activity activity(this);
      Apply(gate_.TakeOps());  // A release taken just now counts.
      Slot* slot = Find(id);
      if (slot == nullptr) return;
      slot->drain_timer.reset();
      if (slot->phase == SlotPhase::kStopDraining) {
        StopNow(*slot);  // Stop's bounded wait is over.
        return;
      }
      std::vector<ClientId> stuck;
      for (auto& [client, lease] : slot->holders) stuck.push_back(client);
      for (ClientId c : stuck) {
        CutOff(c, absl::StrCat("kept a revoked lease on ", id,
                               " for more "
                               "than ",
                               absl::FormatDuration(bound)));
      }
    });
  }
  MaybeStopDrained(s);
}

void Scheduler::DrainToStop(Slot& s) {
  if (s.phase == SlotPhase::kOpen) {
    Enter(s, SlotPhase::kStopDraining);
  } else if (s.phase == SlotPhase::kDraining) {
    Enter(s, SlotPhase::kStopDraining);
    s.drain_timer.reset();  // Bounded by the stop's unloadTimeout from now.
  }
}

void Scheduler::CutOff(ClientId client, const std::string& reason) {
  auto c = clients_.find(client);
  if (c == clients_.end()) return;
  LeaseClient* lc = c->second.client;
  Disconnect(client);
  lc->OnCutOff(reason);
}

void Scheduler::MaybeStopDrained(Slot& s) {
  if (s.closed() && s.holders.empty()) StopNow(s);
}

void Scheduler::StopNow(Slot& s) {
  CloseGate(s);
  if (s.phase == SlotPhase::kStopping) return;
  // A swap's eviction of a model that can sleep puts it to sleep
  // (docs/gpu.md#sleep-and-wake); a Stop, a removal, a reload's restart
  // and shutdown stop it.
  bool sleep = s.phase == SlotPhase::kDraining && s.next_config == nullptr &&
               !s.removed && !shutting_down_ && s.config->can_sleep() &&
               s.actor->status().state == State::kReady;
  Enter(s, SlotPhase::kStopping);
  s.drain_timer.reset();
  std::string id = s.config->id;
  Slot* target = &s;
  std::function<void()> finished = [this, target, id] {
    Activity activity(this);
    Slot& slot = *target;
    Enter(slot, SlotPhase::kOpen);
    absl::Time now = env_.clock->Now();
    // Leases end with the process; a late RELEASE is ignored.
    for (auto it = slot.holders.begin(); it != slot.holders.end();) {
      gate_.EraseHolder(slot.config->id, it->first, it->second.id);
      slot.actor->ReleaseLease(now);
      it = slot.holders.erase(it);
    }
    std::vector<ModelDone> waiters;
    waiters.swap(slot.stop_waiters);
    for (ModelDone& w : waiters) w(View(slot));
    if (slot.removed) {
      slot.log->Close(absl::NotFoundError(
          absl::StrCat("model '", slot.config->id, "' was removed")));
      Defer([this, target] {
        retired_.erase(
            std::remove_if(retired_.begin(), retired_.end(),
                           [&](auto& r) { return r.get() == target; }),
            retired_.end());
        Pump();
      });
      return;
    }
    if (slot.next_config != nullptr) {
      // A reload changed its command: start again with the new settings
      // (on the next loop turn: we are inside the old actor's callback).
      Defer([this, id] {
        Slot* s2 = Find(id);
        if (s2 == nullptr || s2->next_config == nullptr) return;
        s2->config = std::move(s2->next_config);
        s2->actor = MakeActor(*s2->config, s2->log);
        // A model asleep at the reload stays down: a request starts it
        // through the queue.
        if (s2->restart_after_stop) StartActor(*s2);
        Emit(*s2);
      });
      return;
    }
    SchedulePump();
  };
  if (!sleep) {
    s.actor->Stop(finished);
    return;
  }
  s.actor->Sleep([this, target, finished](absl::Status status) {
    // It cannot sleep, or a stop came while it was going to sleep (a Stop,
    // a removal, a reload's restart, shutdown): it is stopped.
    if (!status.ok() || !target->stop_waiters.empty() || target->removed ||
        target->next_config != nullptr || shutting_down_) {
      target->actor->Stop(finished);
      return;
    }
    target->stop_cause = nullptr;  // Asleep: no stop to count.
    finished();
  });
}

}  // namespace modelplane::scheduler
