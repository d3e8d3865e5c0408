#include "server/core/scheduler/scheduler.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
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

// --- Leases ---

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

// --- Evictions and stops ---

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
