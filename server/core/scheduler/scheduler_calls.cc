// The scheduler's calls from the API (Start, WaitReady, Stop, StopAll,
// CancelWait), what the actors report (OnActorEvent), and the views (List,
// Get, Log). Leases are in scheduler_leases.cc, the queue in scheduler.cc,
// evictions in scheduler_evictions.cc; reloads and shutdown in
// scheduler_reload.cc.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/scheduler/scheduler.h"
#include "server/core/scheduler/scheduler_internal.h"

namespace modelplane::scheduler {

using actor::State;

// --- Admin ---

WaiterId Scheduler::Start(const std::string& model, ModelDone done) {
  Activity activity(this);
  absl::StatusOr<Slot*> admitted = Admit(model);
  if (!admitted.ok()) {
    done(admitted.status());
    return 0;
  }
  Slot* s = *admitted;
  Demand d = NewDemand(*s, 0);
  d.waiter = next_waiter_++;
  d.done = std::move(done);
  WaiterId id = d.waiter;
  // Answered at once (READY, or a full queue): nothing to cancel.
  return Submit(std::move(d), *s) ? id : 0;
}

WaiterId Scheduler::WaitReady(const std::string& model, ModelDone done) {
  Activity activity(this);
  // Through the queue's door, but no demand: a waiter starts nothing.
  absl::StatusOr<Slot*> admitted = Admit(model);
  if (!admitted.ok()) {
    done(admitted.status());
    return 0;
  }
  Slot* s = *admitted;
  const actor::ModelStatus& st = s->actor->status();
  if (Grantable(*s)) {
    done(View(*s));
    return 0;
  }
  if (st.state == State::kFailed) {
    done(absl::FailedPreconditionError(absl::StrCat(
        "model ", s->config->id, " failed: ", st.failure->Summary())));
    return 0;
  }
  WaiterId id = next_waiter_++;
  s->ready_waiters[id] = std::move(done);
  return id;
}

void Scheduler::CancelWait(WaiterId waiter) {
  if (waiter == 0) return;
  Activity activity(this);
  for (auto& [id, s] : slots_) {
    if (s->ready_waiters.erase(waiter) > 0) return;
  }
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (it->waiter != waiter) continue;
    Slot* s = Find(it->model);
    queue_.erase(it);
    if (s != nullptr) {
      --s->queued;
      Emit(*s);
      MaybeAbortAbandonedStart(*s);
    }
    Pump();
    return;
  }
}

void Scheduler::MaybeAbortAbandonedStart(Slot& s) {
  // A wake goes on: stopping it would end the process its sleep kept (the
  // cost of a cold start next time); woken, it is an idle model that the
  // rules may put to sleep again.
  if (!options_.abort_abandoned_starts || s.waking) return;
  if (s.actor->status().state != State::kStarting || s.queued > 0 ||
      !s.ready_waiters.empty() || !s.holders.empty()) {
    return;
  }
  s.actor->Stop(nullptr);  // Our StartActor callback sees Aborted.
}

void Scheduler::Stop(const std::string& model, bool force, ModelDone done) {
  Activity activity(this);
  Slot* s = Find(model);
  if (s == nullptr) {
    done(absl::NotFoundError(absl::StrCat("unknown model '", model, "'")));
    return;
  }
  // An operator's stop also ends a start back-off: the next request tries
  // again at once (the way to say "fixed it").
  ClearBackoff(*s);
  if (!Running(*s) && s->holders.empty()) {
    done(View(*s));
    return;
  }
  s->stop_waiters.push_back(std::move(done));
  // Draining to stop before its demands are failed (a swap's drain becomes
  // a stop's); a slot already stopping stays so.
  DrainToStop(*s);
  if (s->actor->status().state == State::kStarting) {
    absl::Status aborted = absl::AbortedError(
        absl::StrCat("model ", s->config->id, ": start cancelled by a stop"));
    FailDemands(*s, aborted);
    AnswerReadyWaiters(*s, aborted);
  }
  BeginEviction(*s, SlotPhase::kStopDraining, "stopped by an operator",
                "requested");
  if (force) StopNow(*s);
}

void Scheduler::StopAll(bool force,
                        std::function<void(std::vector<ModelView>)> done) {
  Activity activity(this);
  auto remaining = std::make_shared<size_t>(slots_.size() + 1);
  auto finish = [this, remaining, done] {
    if (--*remaining == 0) done(List());
  };
  for (auto& [id, s] : slots_) {
    Stop(id, force, [finish](absl::StatusOr<ModelView>) { finish(); });
  }
  finish();
}

void Scheduler::AnswerReadyWaiters(Slot& s, const absl::Status& status) {
  std::map<WaiterId, ModelDone> waiters;
  waiters.swap(s.ready_waiters);
  for (auto& [id, w] : waiters) {
    if (status.ok()) {
      w(View(s));
    } else {
      w(status);
    }
  }
}

void Scheduler::OnActorEvent(const actor::StateEvent& e) {
  Slot* s = nullptr;
  for (auto& [id, slot] : slots_) {
    if (slot->actor != nullptr && id == e.model_id) s = slot.get();
  }
  if (s == nullptr) {  // A retired model: its memory still comes back.
    for (auto& r : retired_) {
      if (r->config->id == e.model_id && r->actor != nullptr) {
        OnMemoryEvent(*r, e);
      }
    }
    return;
  }
  Activity activity(this);
  s->revision = e.status.revision;
  OnMemoryEvent(*s, e);
  // Not READY: the gate grants it no more, and what it granted is absorbed
  // before the holders are revoked.
  if (e.new_state != State::kReady) CloseGate(*s);
  if (e.old_state == State::kReady && e.new_state != State::kReady) {
    // Not READY any more without an eviction (it died, or was restarted):
    // the holders must stop sending requests to it and ask again, which
    // starts it again. (An eviction or a stop revoked them already.)
    RevokeAll(*s,
              absl::StrCat("model ", e.model_id, " is no longer ready",
                           e.status.failure ? ": " + e.status.failure->Summary()
                                            : std::string()));
  }
  if (e.old_state != e.new_state) {
    switch (e.new_state) {
      case State::kReady:
        AnswerReadyWaiters(*s, absl::OkStatus());
        break;
      case State::kFailed:
        AnswerReadyWaiters(
            *s, absl::FailedPreconditionError(
                    absl::StrCat("model ", e.model_id, ": ",
                                 e.status.failure ? e.status.failure->Summary()
                                                  : std::string("failed"))));
        break;
      case State::kShutdown:
        AnswerReadyWaiters(
            *s, absl::UnavailableError("the manager is shutting down"));
        break;
      default:
        break;
    }
  }
  if (on_change_) {
    // The model as it is now, not as the event saw it: the close above may
    // have counted leases (their own changes already went out).
    on_change_(ModelChange{ModelChange::Kind::kModified, View(*s)});
  }
  if (e.old_state != e.new_state) SchedulePump();
}

// --- Views ---

std::vector<ModelView> Scheduler::List() {
  Absorb();
  std::vector<ModelView> out;
  for (const auto& [id, s] : slots_) out.push_back(View(*s));
  return out;
}

absl::StatusOr<StartPlan> Scheduler::Plan(const std::string& model) {
  Activity activity(this);
  Apply(gate_.TakeOps());  // The leases it shows are counted.
  absl::StatusOr<Slot*> admitted = Admit(model);
  if (!admitted.ok()) return admitted.status();
  Slot& s = **admitted;
  StartPlan plan;
  plan.model = View(s);
  State st = s.actor->status().state;
  if (Grantable(s) || st == State::kStarting) {
    plan.needs_start = false;
    return plan;
  }
  // Refused before any eviction, as the queue's pass refuses it.
  if (RefusalOf(s, env_.clock->Now(), &plan.refusal) != Refusal::kNone) {
    return plan;
  }
  // As the queue's next pass would see it, with no other start decided.
  std::vector<Slot*> victims = VictimsOf(s, {}, {}, &plan.blocked);
  // Being stopped (a swap, a Stop): it waits for that first.
  if (s.closed() || st == State::kStopping) plan.blocked = true;
  for (Slot* v : victims) {
    plan.evictions.push_back({v->config->id, v->actor->status().state,
                              static_cast<int>(v->holders.size())});
  }
  return plan;
}

absl::StatusOr<ModelView> Scheduler::Get(const std::string& model) {
  Absorb();
  Slot* s = Find(model);
  if (s == nullptr) {
    return absl::NotFoundError(absl::StrCat("unknown model '", model, "'"));
  }
  return View(*s);
}

std::shared_ptr<logs::LogBuffer> Scheduler::Log(
    const std::string& model) const {
  Slot* s = Find(model);
  return s == nullptr ? nullptr : s->log;
}

}  // namespace modelplane::scheduler
