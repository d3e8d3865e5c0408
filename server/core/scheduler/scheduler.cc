// The scheduler: its models' slots and their views, and the queue
// (docs/scheduler.md, "The queue"): the pass that grants, starts, evicts
// or keeps each demand waiting, and the slot's phases. Leases are in
// scheduler_leases.cc, evictions and stops in scheduler_evictions.cc.
#include "server/core/scheduler/scheduler.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/core/scheduler/scheduler_internal.h"
#include "server/core/scheduler/swap_rules.h"

namespace modelplane::scheduler {

using actor::State;

absl::Status DrainingStatus() {
  return absl::UnavailableError(
      "the manager is draining: it starts no model (another manager may)");
}

Scheduler::Scheduler(std::shared_ptr<const config::Config> config,
                     actor::ActorEnv env, uint64_t* revisions,
                     ChangeSink on_change, SchedulerOptions options)
    : config_(std::move(config)),
      env_(env),
      revisions_(revisions),
      on_change_(std::move(on_change)),
      options_(options) {
  for (const config::ModelConfig& m : config_->models) {
    auto slot = std::make_unique<Slot>();
    slot->config = ModelOf(config_, m);
    slot->log = std::make_shared<logs::LogBuffer>();
    slot->actor = MakeActor(m, slot->log);
    slot->revision = ++*revisions_;
    slots_[m.id] = std::move(slot);
  }
  Publish();
  if (options_.gpu != nullptr) {
    options_.gpu->set_on_poll([this] {
      OnGpuPoll();
      if (!queue_.empty()) SchedulePump();
    });
  }
}

Scheduler::~Scheduler() {
  if (options_.gpu != nullptr) options_.gpu->set_on_poll(nullptr);
}

std::unique_ptr<actor::ModelActor> Scheduler::MakeActor(
    const config::ModelConfig& c, std::shared_ptr<logs::LogBuffer> log) {
  auto a = std::make_unique<actor::ModelActor>(
      c, env_, revisions_, std::move(log),
      [this](const actor::StateEvent& e) { OnActorEvent(e); });
  if (options_.on_model_line) a->set_line_sink(options_.on_model_line);
  // A grant the gate took may be waiting to be absorbed when the TTL fires:
  // close the model and absorb it first (the actor then sees the lease).
  // The next pump opens it again if it stays up.
  a->set_before_idle_stop([this, id = c.id] {
    auto it = slots_.find(id);
    if (it == slots_.end()) return;
    // Not an Activity: the gate must stay closed until the actor has
    // decided (a Stop follows at once, or the pump below reopens it).
    ++activity_;
    CloseGate(*it->second);
    --activity_;
    SchedulePump();
  });
  return a;
}

Scheduler::Slot* Scheduler::Find(const std::string& name) const {
  const config::ModelConfig* m = config_->FindModel(name);
  if (m == nullptr) return nullptr;
  auto it = slots_.find(m->id);
  return it == slots_.end() ? nullptr : it->second.get();
}

ModelView Scheduler::View(const Slot& s) const {
  ModelView v;
  v.config = s.config;
  v.status = s.actor->status();
  v.queued = s.queued;
  v.revision = std::max(s.revision, v.status.revision);
  if (options_.gpu != nullptr) {
    v.memory_known = true;
    v.footprint = FootprintOf(s);
    v.memory = options_.gpu->MemoryOf(s.config->id, FootprintKey(*s.config),
                                      v.status.pid);
  }
  for (const auto& [client, lease] : s.holders) {
    auto c = clients_.find(client);
    v.leases.push_back(LeaseView{client,
                                 c == clients_.end() ? "" : c->second.name,
                                 lease.id, lease.granted_at, lease.revoked});
  }
  return v;
}

void Scheduler::Emit(Slot& s, ModelChange::Kind kind) {
  // A model a reload removed was published deleted; while it drains and
  // stops it is no one's to see (a later change would bring it back to
  // every watcher, for good).
  if (s.removed) return;
  s.revision = ++*revisions_;  // Every published change has its own.
  if (on_change_) on_change_(ModelChange{kind, View(s)});
}

bool Scheduler::Running(const Slot& s) const {
  State st = s.actor->status().state;
  return st == State::kStarting || st == State::kReady ||
         st == State::kStopping || st == State::kSleeping;
}

// --- The queue ---

void Scheduler::Defer(std::function<void()> fn) {
  auto it = deferred_.emplace(deferred_.end());
  *it = env_.clock->After(absl::ZeroDuration(), [this, it, fn = std::move(fn)] {
    Activity activity(this);
    deferred_.erase(it);  // Destroys the timer only.
    fn();
  });
}

void Scheduler::SchedulePump() {
  if (pump_scheduled_) return;
  pump_scheduled_ = true;
  // Not now: the caller may be inside an actor's transition.
  Defer([this] {
    pump_scheduled_ = false;
    Pump();
  });
}

void Scheduler::Pump() {
  if (pumping_) {
    pump_again_ = true;
    return;
  }
  Activity activity(this);
  pumping_ = true;
  Apply(gate_.TakeOps());  // Grants the gate took count as holders below.
  do {
    pump_again_ = false;
    std::list<Demand> grants;
    // Models READY for a demand of this pass. Their grants go out after the
    // loop, so their holders are not yet counted: they are no victims of
    // this pass (else a model would be stopped under the lease it is about
    // to grant). A demand they block counts them busy; once overdue, the
    // next pass revokes them after their waiters were served.
    std::set<std::string> granting;
    std::set<std::string> claimed;  // Models in a swap decided this pass.
    // Starts decided this pass, made after it (a start that fails at once
    // answers its demands, which must not change the queue under the loop);
    // with a status when the start is refused (its command cannot run).
    std::vector<std::pair<std::string, absl::Status>> starts;
    std::set<std::string> starting;     // Their ids: running, for the rules.
    std::set<std::string> backing_off;  // Their demands fail after the pass.
    std::set<std::string> drained;      // Likewise: no start while draining.
    // Starts that cannot fit their GPUs even empty: refused after the pass.
    std::map<std::string, absl::Status> never_fits;
    // Memory: READY models with demand in the queue are about to be
    // granted (never evicted for memory), and GPUs whose memory coming free
    // an earlier demand waits for are not taken by a later one.
    std::set<std::string> wanted;
    std::set<int> reserved_gpus;
    if (options_.gpu != nullptr) {
      for (const Demand& q : queue_) {
        const Slot& w = *slots_.at(q.model);
        if (w.actor->status().state == State::kReady && !w.closed()) {
          wanted.insert(q.model);
        }
      }
    }
    std::optional<absl::Time> next_expiry;
    absl::Time now = env_.clock->Now();
    for (auto it = queue_.begin(); it != queue_.end();) {
      Slot& s = *slots_.at(it->model);
      State st = s.actor->status().state;
      if (st == State::kReady && !s.closed()) {
        granting.insert(it->model);
        grants.splice(grants.end(), queue_, it++);
        continue;
      }
      Demand& d = *it++;
      if (st == State::kStarting) {
        claimed.insert(d.model);
        continue;
      }
      if (s.closed() || st == State::kStopping || claimed.count(d.model)) {
        continue;  // Wait for the stop, or for an earlier decision.
      }
      // STOPPED or FAILED: start it once nothing it evicts runs. A model a
      // reload removed blocks every start until it is reaped. But first: a
      // start that is known to fail evicts nothing. In its back-off it
      // fails at once with its last failure; a command that cannot run
      // fails now (the spawn would say the same, after the evictions).
      absl::Status why;
      Refusal refusal = RefusalOf(s, now, &why);
      if (refusal != Refusal::kNone) claimed.insert(d.model);
      if (refusal == Refusal::kDraining) {
        drained.insert(d.model);
        continue;
      }
      if (refusal == Refusal::kBackoff) {
        backing_off.insert(d.model);
        continue;
      }
      if (refusal == Refusal::kCommand) {
        starting.insert(d.model);
        starts.emplace_back(d.model, std::move(why));
        continue;
      }
      // Its retry after running out of GPU memory waits for what it
      // evicted to be gone.
      if (OomVictimsRunning(s)) continue;
      bool blocked = false;
      std::vector<Slot*> victims = VictimsOf(s, starting, claimed, &blocked);
      if (blocked) continue;
      // Memory: one more rule, once the groups let it start (docs/gpu.md).
      absl::Time due = d.since + s.config->max_queue_wait;
      if (victims.empty() && MemoryManaged(s)) {
        // Past its maxQueueWait, memory held by busy models is taken as the
        // group rules take a busy victim: leases revoked, drained, stopped.
        bool overdue = now >= due;
        gpu::Decision m = MemoryFor(s, starting, wanted, overdue);
        if (m.kind == gpu::Decision::Kind::kNever) {
          claimed.insert(d.model);
          never_fits[d.model] = absl::ResourceExhaustedError(
              absl::StrCat("model ", d.model, " cannot fit: ", m.why));
          continue;
        }
        bool reserved = std::any_of(m.gpus.begin(), m.gpus.end(), [&](int g) {
          return reserved_gpus.count(g) != 0;
        });
        if (m.kind == gpu::Decision::Kind::kWait || reserved) {
          if (m.coming) reserved_gpus.insert(m.gpus.begin(), m.gpus.end());
          RetryForMemory();  // Also notices when it becomes overdue.
          continue;
        }
        if (m.kind == gpu::Decision::Kind::kEvict && !TakeIdle(m.victims) &&
            !overdue) {
          RetryForMemory();  // One was granted meanwhile: decide again.
          continue;
        }
        if (m.kind == gpu::Decision::Kind::kAdmit) {
          // Only a model with `resources` is told where it goes; another
          // runs where it runs (and is charged where it was measured).
          if (s.config->resources.set) options_.gpu->Place(d.model, m.gpus);
          s.actor->set_gpus(s.config->resources.set ? m.gpus
                                                    : std::vector<int>{});
        }
        for (const std::string& id : m.victims) victims.push_back(Find(id));
      }
      claimed.insert(d.model);
      for (Slot* v : victims) claimed.insert(v->config->id);
      if (victims.empty()) {
        starting.insert(d.model);
        starts.emplace_back(d.model, absl::OkStatus());
        continue;
      }
      for (Slot* v : victims) {
        if (v->closed()) continue;
        if (granting.count(v->config->id) == 0 &&
            (v->holders.empty() || now >= due)) {
          BeginEviction(*v, SlotPhase::kDraining,
                        absl::StrCat("evicted to start ", d.model), "swap");
          ++counters_.evictions[v->config->id];
          ++counters_.swaps[d.model];
        } else if (!next_expiry || due < *next_expiry) {
          next_expiry = due;  // Busy: swap when idle, or once overdue.
        }
      }
    }
    if (queue_.empty()) CallOffEvictions();
    queue_timer_.reset();
    if (next_expiry) {
      queue_timer_ =
          env_.clock->After(std::max(*next_expiry - now, absl::ZeroDuration()),
                            [this] { Pump(); });
    }
    // Callbacks last: they may re-enter (Release, Disconnect).
    for (auto& [id, refuse] : starts) {
      Slot* s = Find(id);
      if (s != nullptr) StartActor(*s, std::move(refuse));
    }
    for (const std::string& id : drained) {
      Slot* s = Find(id);
      if (s != nullptr) FailDemands(*s, DrainingStatus());
    }
    // Those demands were still queued when this pass looked: once they are
    // gone, a swap they began is called off (its victim stays, served).
    if (!drained.empty()) pump_again_ = true;
    for (const std::string& id : backing_off) {
      Slot* s = Find(id);
      if (s != nullptr) FailDemands(*s, BackoffStatus(*s));
    }
    for (const auto& [id, status] : never_fits) {
      Slot* s = Find(id);
      if (s != nullptr) FailDemands(*s, status);
    }
    for (Demand& d : grants) {
      Slot* s = Find(d.model);
      if (s != nullptr) Grant(d, *s);
    }
    NotifyPositions();
  } while (pump_again_);
  pumping_ = false;
}

const char* SlotPhaseName(SlotPhase p) {
  switch (p) {
    case SlotPhase::kOpen:
      return "open";
    case SlotPhase::kDraining:
      return "draining";
    case SlotPhase::kStopDraining:
      return "draining to stop";
    case SlotPhase::kStopping:
      return "stopping";
  }
  return "?";
}

void Scheduler::Enter(Slot& s, SlotPhase next) {
#ifndef NDEBUG
  // The course drawn in scheduler_internal.h.
  bool allowed = false;
  switch (next) {
    case SlotPhase::kOpen:
      allowed =
          s.phase == SlotPhase::kDraining || s.phase == SlotPhase::kStopping;
      break;
    case SlotPhase::kDraining:
      allowed = s.phase == SlotPhase::kOpen;
      break;
    case SlotPhase::kStopDraining:
      allowed = s.phase == SlotPhase::kOpen || s.phase == SlotPhase::kDraining;
      break;
    case SlotPhase::kStopping:
      allowed = s.phase == SlotPhase::kDraining ||
                s.phase == SlotPhase::kStopDraining;
      break;
  }
  if (!allowed) {
    ABSL_RAW_LOG(FATAL, "model %s: slot phase %s -> %s is out of its course",
                 s.config->id.c_str(), SlotPhaseName(s.phase),
                 SlotPhaseName(next));
  }
#endif
  s.phase = next;
  // Open again: a swap called off stops nothing.
  if (next == SlotPhase::kOpen) s.stop_cause = nullptr;
}

std::string Scheduler::TakeStopCause(const std::string& model) {
  Slot* s = Find(model);
  if (s == nullptr) {
    for (auto& r : retired_) {
      if (r->config->id == model) s = r.get();
    }
  }
  if (s == nullptr || s->stop_cause == nullptr) return "ttl";
  std::string cause = s->stop_cause;
  s->stop_cause = nullptr;
  return cause;
}

std::vector<Scheduler::Slot*> Scheduler::VictimsOf(
    const Slot& s, const std::set<std::string>& starting,
    const std::set<std::string>& claimed, bool* blocked) {
  std::vector<Slot*> victims;
  *blocked = std::any_of(retired_.begin(), retired_.end(),
                         [&](auto& r) { return Running(*r); });
  std::vector<const config::ModelConfig*> running;
  std::set<std::string> leaving;
  // A sleeping model is not running for the rules: it holds (next to) no
  // GPU memory, and waking it is a start that evicts as they say.
  auto running_now = [&](const std::string& id, const Slot& v) {
    return (Running(v) && v.actor->status().state != State::kSleeping) ||
           starting.count(id) != 0;
  };
  for (auto& [id, v] : slots_) {
    if (v.get() == &s || !running_now(id, *v)) continue;
    running.push_back(v->config.get());
    if (v->closed() || v->actor->status().state == State::kStopping) {
      leaving.insert(id);
    }
  }
  std::set<std::string> evict = Victims(*config_, *s.config, running, leaving);
  for (auto& [id, v] : slots_) {
    if (evict.count(id) != 0 && MemoryExempt(s, *v)) evict.erase(id);
  }
  for (auto& [id, v] : slots_) {
    if (v.get() == &s || !running_now(id, *v)) continue;
    if (evict.count(id) == 0) continue;
    victims.push_back(v.get());
    if (claimed.count(id) || v->actor->status().state == State::kStarting) {
      *blocked = true;  // Never abort another start; keep decisions.
    }
  }
  return victims;
}

void Scheduler::CallOffEvictions() {
  // A swap's victim still draining when the demand it made room for is gone
  // (its clients left, the proxy withdrew the ACQUIRE): it stays up. Its
  // holders were told REVOKED; they release and are granted again at once.
  // Stops, reload restarts and removals go on; so does a stop already begun.
  for (auto& [id, v] : slots_) {
    if (v->phase != SlotPhase::kDraining || v->next_config != nullptr ||
        v->actor->status().state != State::kReady) {
      continue;
    }
    Enter(*v, SlotPhase::kOpen);
    v->drain_timer.reset();
    Emit(*v);
  }
}

void Scheduler::NotifyPositions() {
  int position = 0;
  std::vector<std::pair<Demand*, bool>> notes;  // (demand, starting)
  for (Demand& d : queue_) {
    ++position;
    Slot* s = Find(d.model);
    if (s == nullptr || d.client == 0) continue;
    bool starting = s->actor->status().state == State::kStarting;
    if (starting && !d.told_starting) {
      d.told_starting = true;
      notes.push_back({&d, true});
    } else if (!starting && d.position != position) {
      d.position = position;
      notes.push_back({&d, false});
    }
  }
  for (auto& [d, starting] : notes) {
    auto c = clients_.find(d->client);
    if (c == clients_.end()) continue;
    if (starting) {
      c->second.client->OnStarting(d->model, d->request_id);
    } else {
      c->second.client->OnQueued(d->model, d->request_id, d->position);
    }
  }
}

void Scheduler::StartActor(Slot& s, absl::Status refuse) {
  std::string id = s.config->id;
  auto done = [this, id](absl::Status status) {
    Activity activity(this);
    Slot* slot = Find(id);
    if (slot == nullptr) return;
    slot->waking = false;
    if (status.ok()) {
      ClearBackoff(*slot);
      slot->oom_retried = false;
    }
    if (absl::IsFailedPrecondition(status) && !RetryAfterOom(*slot)) {
      slot->oom_retried = false;  // The next demand's start may retry.
      BackOff(*slot, status);
      FailDemands(*slot, status);
    }
    // Aborted: an eviction or a Stop; a Stop already answered its demands,
    // the others keep waiting for the next start.
    SchedulePump();
  };
  if (refuse.ok()) {
    s.waking = s.actor->status().state == State::kSleeping;
    s.actor->Start(std::move(done));
  } else {
    s.actor->RefuseStart(std::move(done), refuse);
  }
}

void Scheduler::BackOff(Slot& s, const absl::Status& status) {
  s.backoff = s.backoff == absl::ZeroDuration()
                  ? options_.first_start_backoff
                  : std::min(s.backoff * 2, options_.max_start_backoff);
  s.failed_at = env_.clock->Now();
  s.backoff_until = s.failed_at + s.backoff;
  s.last_failure = status;
}

void Scheduler::ClearBackoff(Slot& s) {
  s.backoff = absl::ZeroDuration();
  s.backoff_until = absl::InfinitePast();
  s.last_failure = absl::OkStatus();
}

absl::Status Scheduler::BackoffStatus(const Slot& s) const {
  absl::Time now = env_.clock->Now();
  // Tenths: whole seconds rounded up read "failed 1s ago; again in 5s" for
  // a 5 s back-off just begun.
  auto secs = [](absl::Duration d) {
    return absl::StrFormat("%.1fs", absl::ToDoubleSeconds(d));
  };
  absl::Status status(
      s.last_failure.code(),
      absl::StrCat(s.last_failure.message(), " (its start failed ",
                   secs(now - s.failed_at), " ago; not tried again for ",
                   secs(s.backoff_until - now), ")"));
  // The reason's payload stays (a timed-out start is still a 504).
  s.last_failure.ForEachPayload(
      [&status](absl::string_view url, const absl::Cord& payload) {
        status.SetPayload(url, payload);
      });
  return status;
}

void Scheduler::FailDemands(Slot& s, const absl::Status& status) {
  std::list<Demand> failed;
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (it->model == s.config->id) {
      failed.splice(failed.end(), queue_, it++);
      --s.queued;
    } else {
      ++it;
    }
  }
  if (failed.empty()) return;
  Emit(s);
  // The start's failure, as Model.failure has it; while the failed process
  // is still torn down (a health-check timeout: STOPPING, its failure set
  // once reaped), its reason from the status.
  std::optional<actor::Failure> failure;
  bool start_failed = status.code() == absl::StatusCode::kFailedPrecondition ||
                      status.code() == absl::StatusCode::kAborted;
  if (start_failed) failure = s.actor->status().failure;
  if (start_failed && !failure) {
    if (std::optional<actor::FailureReason> reason =
            actor::FailureReasonOf(status)) {
      failure = actor::Failure{*reason,
                               std::nullopt,
                               std::string(status.message()),
                               {},
                               env_.clock->Now()};
    }
  }
  for (Demand& d : failed) {
    if (d.client == 0) {
      if (d.done) d.done(status);
      continue;
    }
    auto c = clients_.find(d.client);
    if (c != clients_.end()) {
      c->second.client->OnFailed(d.model, d.request_id, status,
                                 failure ? &*failure : nullptr);
    }
  }
}

}  // namespace modelplane::scheduler
