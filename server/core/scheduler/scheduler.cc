#include "server/core/scheduler/scheduler.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/scheduler/swap_rules.h"

namespace modelplane::scheduler {

using actor::State;

struct Scheduler::Slot {
  std::shared_ptr<const config::ModelConfig> config;
  std::shared_ptr<logs::LogBuffer> log;
  std::unique_ptr<actor::ModelActor> actor;
  std::map<ClientId, Lease> holders;
  bool evicting = false;    // Revoked: no new grants; stop once drained.
  bool admin_stop = false;  // The eviction is a Stop (not a swap).
  bool stop_requested = false;
  std::unique_ptr<actor::Timer> drain_timer;
  std::vector<ModelDone> stop_waiters;
  std::map<WaiterId, ModelDone> ready_waiters;
  bool removed = false;  // By a reload: freed once stopped.
  std::shared_ptr<const config::ModelConfig> next_config;  // Restart pending.
  uint64_t revision = 0;
  int queued = 0;
};

struct Scheduler::Demand {
  uint64_t seq = 0;
  int priority = 0;
  std::string model;
  absl::Time since;
  ClientId client = 0;  // 0: a Start call.
  std::string request_id;
  WaiterId waiter = 0;
  ModelDone done;
  bool told_starting = false;
  int position = 0;
};

namespace {

std::shared_ptr<const config::ModelConfig> ModelOf(
    const std::shared_ptr<const config::Config>& config,
    const config::ModelConfig& m) {
  return std::shared_ptr<const config::ModelConfig>(config, &m);
}

}  // namespace

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
}

Scheduler::~Scheduler() = default;

std::unique_ptr<actor::ModelActor> Scheduler::MakeActor(
    const config::ModelConfig& c, std::shared_ptr<logs::LogBuffer> log) {
  auto a = std::make_unique<actor::ModelActor>(
      c, env_, revisions_, std::move(log),
      [this](const actor::StateEvent& e) { OnActorEvent(e); });
  if (options_.on_model_line) a->set_line_sink(options_.on_model_line);
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
  for (const auto& [client, lease] : s.holders) {
    auto c = clients_.find(client);
    v.leases.push_back(LeaseView{client,
                                 c == clients_.end() ? "" : c->second.name,
                                 lease.id, lease.granted_at, lease.revoked});
  }
  return v;
}

void Scheduler::Emit(Slot& s, ModelChange::Kind kind) {
  s.revision = ++*revisions_;  // Every published change has its own.
  if (on_change_) on_change_(ModelChange{kind, View(s)});
}

bool Scheduler::Running(const Slot& s) const {
  State st = s.actor->status().state;
  return st == State::kStarting || st == State::kReady ||
         st == State::kStopping;
}

// --- Leases ---

ClientId Scheduler::Connect(LeaseClient* client, std::string name) {
  ClientId id = next_client_++;
  clients_[id] = Client{client, std::move(name)};
  return id;
}

void Scheduler::Disconnect(ClientId client) {
  if (clients_.erase(client) == 0) return;
  absl::Time now = env_.clock->Now();
  for (auto& [id, slot] : slots_) ReleaseLease(*slot, client, now);
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
  auto c = clients_.find(client);
  if (c == clients_.end()) return;
  LeaseClient* lc = c->second.client;
  if (shutting_down_) {
    lc->OnFailed(model, request_id,
                 absl::UnavailableError("the manager is shutting down"));
    return;
  }
  Slot* s = Find(model);
  if (s == nullptr) {
    lc->OnFailed(
        model, request_id,
        absl::NotFoundError(absl::StrCat("unknown model '", model, "'")));
    return;
  }
  auto held = s->holders.find(client);
  if (held != s->holders.end() && !held->second.revoked) {
    lc->OnGranted(s->config->id, request_id, held->second.id, s->config->proxy);
    return;
  }
  if (queue_.size() >= options_.max_queue) {
    lc->OnFailed(model, request_id,
                 absl::ResourceExhaustedError(absl::StrCat(
                     "the queue is full (", options_.max_queue, " waiting)")));
    return;
  }
  Demand d;
  d.seq = next_seq_++;
  d.priority = priority;
  d.model = s->config->id;
  d.since = env_.clock->Now();
  d.client = client;
  d.request_id = std::move(request_id);
  // Fast path: a READY model that is not being evicted is granted at once.
  if (held == s->holders.end() && s->actor->status().state == State::kReady &&
      !s->evicting) {
    ++s->queued;
    Grant(d, *s);
    return;
  }
  auto pos = std::find_if(queue_.begin(), queue_.end(), [&](const Demand& q) {
    return q.priority < d.priority;
  });
  queue_.insert(pos, std::move(d));
  ++s->queued;
  Emit(*s);
  Pump();
}

void Scheduler::Release(ClientId client, const std::string& model,
                        LeaseId lease, absl::Time last_used) {
  Slot* s = Find(model);
  if (s == nullptr) return;
  if (lease == 0) {  // Cancel pending ACQUIREs for the model.
    bool any = false;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->client == client && it->model == s->config->id) {
        it = queue_.erase(it);
        --s->queued;
        any = true;
      } else {
        ++it;
      }
    }
    if (any) {
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
  if (s.holders.erase(client) == 0) return;
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
  LeaseId id = next_lease_++;
  s.holders[d.client] = Lease{id, env_.clock->Now(), false};
  s.actor->AddLease();  // Emits the change (leases count).
  c->second.client->OnGranted(s.config->id, d.request_id, id, s.config->proxy);
  return true;
}

// --- The queue ---

void Scheduler::Defer(std::function<void()> fn) {
  auto it = deferred_.emplace(deferred_.end());
  *it = env_.clock->After(absl::ZeroDuration(), [this, it, fn = std::move(fn)] {
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
  pumping_ = true;
  do {
    pump_again_ = false;
    std::list<Demand> grants;
    std::set<std::string> claimed;  // Models in a swap decided this pass.
    std::optional<absl::Time> next_expiry;
    absl::Time now = env_.clock->Now();
    for (auto it = queue_.begin(); it != queue_.end();) {
      Slot& s = *slots_.at(it->model);
      State st = s.actor->status().state;
      if (st == State::kReady && !s.evicting) {
        grants.splice(grants.end(), queue_, it++);
        continue;
      }
      Demand& d = *it++;
      if (st == State::kStarting) {
        claimed.insert(d.model);
        continue;
      }
      if (s.evicting || st == State::kStopping || claimed.count(d.model)) {
        continue;  // Wait for the stop, or for an earlier decision.
      }
      // STOPPED or FAILED: start it once nothing it evicts runs. A model a
      // reload removed blocks every start until it is reaped.
      std::vector<Slot*> victims;
      bool blocked = std::any_of(retired_.begin(), retired_.end(),
                                 [&](auto& r) { return Running(*r); });
      for (auto& [id, v] : slots_) {
        if (v.get() == &s || !Running(*v)) continue;
        if (!Evicts(*config_, *s.config, *v->config)) continue;
        victims.push_back(v.get());
        if (claimed.count(id) || v->actor->status().state == State::kStarting) {
          blocked = true;  // Never abort another start; keep decisions.
        }
      }
      if (blocked) continue;
      claimed.insert(d.model);
      for (Slot* v : victims) claimed.insert(v->config->id);
      if (victims.empty()) {
        StartActor(s);
        continue;
      }
      absl::Time due = d.since + s.config->max_queue_wait;
      for (Slot* v : victims) {
        if (v->evicting) continue;
        if (v->holders.empty() || now >= due) {
          BeginEviction(*v, absl::StrCat("evicted to start ", d.model));
        } else if (!next_expiry || due < *next_expiry) {
          next_expiry = due;  // Busy: swap when idle, or once overdue.
        }
      }
    }
    queue_timer_.reset();
    if (next_expiry) {
      queue_timer_ =
          env_.clock->After(std::max(*next_expiry - now, absl::ZeroDuration()),
                            [this] { Pump(); });
    }
    // Callbacks last: they may re-enter (Release, Disconnect).
    for (Demand& d : grants) {
      Slot* s = Find(d.model);
      if (s != nullptr) Grant(d, *s);
    }
    NotifyPositions();
  } while (pump_again_);
  pumping_ = false;
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

void Scheduler::StartActor(Slot& s) {
  std::string id = s.config->id;
  s.actor->Start([this, id](absl::Status status) {
    Slot* slot = Find(id);
    if (slot == nullptr) return;
    if (absl::IsFailedPrecondition(status)) FailDemands(*slot, status);
    // Aborted: an eviction or a Stop; a Stop already answered its demands,
    // the others keep waiting for the next start.
    SchedulePump();
  });
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
  for (Demand& d : failed) {
    if (d.client == 0) {
      if (d.done) d.done(status);
      continue;
    }
    auto c = clients_.find(d.client);
    if (c != clients_.end()) {
      c->second.client->OnFailed(d.model, d.request_id, status);
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

void Scheduler::BeginEviction(Slot& s, const std::string& reason) {
  s.evicting = true;
  Emit(s);
  RevokeAll(s, reason);
  if (!s.holders.empty() && s.drain_timer == nullptr) {
    std::string id = s.config->id;
    absl::Duration bound =
        s.admin_stop ? s.config->unload_timeout : options_.revoke_timeout;
    s.drain_timer = env_.clock->After(bound, [this, id, bound] {
      Slot* slot = Find(id);
      if (slot == nullptr) return;
      slot->drain_timer.reset();
      if (slot->admin_stop) {
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

void Scheduler::CutOff(ClientId client, const std::string& reason) {
  auto c = clients_.find(client);
  if (c == clients_.end()) return;
  LeaseClient* lc = c->second.client;
  Disconnect(client);
  lc->OnCutOff(reason);
}

void Scheduler::MaybeStopDrained(Slot& s) {
  if (s.evicting && s.holders.empty()) StopNow(s);
}

void Scheduler::StopNow(Slot& s) {
  if (s.stop_requested) return;
  s.stop_requested = true;
  s.drain_timer.reset();
  std::string id = s.config->id;
  Slot* target = &s;
  s.actor->Stop([this, target, id] {
    Slot& slot = *target;
    slot.stop_requested = false;
    slot.evicting = false;
    slot.admin_stop = false;
    absl::Time now = env_.clock->Now();
    // Leases end with the process; a late RELEASE is ignored.
    for (auto it = slot.holders.begin(); it != slot.holders.end();) {
      slot.actor->ReleaseLease(now);
      it = slot.holders.erase(it);
    }
    std::vector<ModelDone> waiters;
    waiters.swap(slot.stop_waiters);
    for (ModelDone& w : waiters) w(View(slot));
    if (slot.removed) {
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
        StartActor(*s2);
        Emit(*s2);
      });
      return;
    }
    SchedulePump();
  });
}

// --- Admin ---

WaiterId Scheduler::Start(const std::string& model, ModelDone done) {
  if (shutting_down_) {
    done(absl::UnavailableError("the manager is shutting down"));
    return 0;
  }
  Slot* s = Find(model);
  if (s == nullptr) {
    done(absl::NotFoundError(absl::StrCat("unknown model '", model, "'")));
    return 0;
  }
  if (s->actor->status().state == State::kReady && !s->evicting) {
    done(View(*s));
    return 0;
  }
  if (queue_.size() >= options_.max_queue) {
    done(absl::ResourceExhaustedError("the queue is full"));
    return 0;
  }
  Demand d;
  d.seq = next_seq_++;
  d.priority = s->config->priority;
  d.model = s->config->id;
  d.since = env_.clock->Now();
  d.waiter = next_waiter_++;
  d.done = std::move(done);
  WaiterId id = d.waiter;
  auto pos = std::find_if(queue_.begin(), queue_.end(), [&](const Demand& q) {
    return q.priority < d.priority;
  });
  queue_.insert(pos, std::move(d));
  ++s->queued;
  Emit(*s);
  Pump();
  return id;
}

WaiterId Scheduler::WaitReady(const std::string& model, ModelDone done) {
  if (shutting_down_) {
    done(absl::UnavailableError("the manager is shutting down"));
    return 0;
  }
  Slot* s = Find(model);
  if (s == nullptr) {
    done(absl::NotFoundError(absl::StrCat("unknown model '", model, "'")));
    return 0;
  }
  const actor::ModelStatus& st = s->actor->status();
  if (st.state == State::kReady && !s->evicting) {
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
  if (!options_.abort_abandoned_starts) return;
  if (s.actor->status().state != State::kStarting || s.queued > 0 ||
      !s.ready_waiters.empty() || !s.holders.empty()) {
    return;
  }
  s.actor->Stop(nullptr);  // Our StartActor callback sees Aborted.
}

void Scheduler::Stop(const std::string& model, bool force, ModelDone done) {
  Slot* s = Find(model);
  if (s == nullptr) {
    done(absl::NotFoundError(absl::StrCat("unknown model '", model, "'")));
    return;
  }
  if (!Running(*s) && s->holders.empty()) {
    done(View(*s));
    return;
  }
  s->stop_waiters.push_back(std::move(done));
  s->admin_stop = true;
  if (s->actor->status().state == State::kStarting) {
    absl::Status aborted = absl::AbortedError(
        absl::StrCat("model ", s->config->id, ": start cancelled by a stop"));
    FailDemands(*s, aborted);
    AnswerReadyWaiters(*s, aborted);
  }
  BeginEviction(*s, "stopped by an operator");
  if (force) StopNow(*s);
}

void Scheduler::StopAll(bool force,
                        std::function<void(std::vector<ModelView>)> done) {
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
  if (s == nullptr) return;  // A retired model.
  s->revision = e.status.revision;
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
    ModelView v;
    v.config = s->config;
    v.status = e.status;
    v.queued = s->queued;
    v.revision = e.status.revision;
    for (const auto& [client, lease] : s->holders) {
      auto c = clients_.find(client);
      v.leases.push_back(LeaseView{client,
                                   c == clients_.end() ? "" : c->second.name,
                                   lease.id, lease.granted_at, lease.revoked});
    }
    on_change_(ModelChange{ModelChange::Kind::kModified, std::move(v)});
  }
  if (e.old_state != e.new_state) SchedulePump();
}

// --- Views ---

std::vector<ModelView> Scheduler::List() const {
  std::vector<ModelView> out;
  for (const auto& [id, s] : slots_) out.push_back(View(*s));
  return out;
}

absl::StatusOr<ModelView> Scheduler::Get(const std::string& model) const {
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

// --- Shutdown and reload ---

void Scheduler::Shutdown(std::function<void()> done) {
  shutting_down_ = true;
  queue_timer_.reset();
  for (auto& [id, s] : slots_) {
    FailDemands(*s, absl::UnavailableError("the manager is shutting down"));
    AnswerReadyWaiters(*s,
                       absl::UnavailableError("the manager is shutting down"));
    RevokeAll(*s, "the manager is shutting down");
  }
  auto remaining = std::make_shared<size_t>(slots_.size() + 1);
  auto finish = [remaining, done] {
    if (--*remaining == 0 && done) done();
  };
  for (auto& [id, s] : slots_) s->actor->Shutdown(finish);
  finish();
}

config::ConfigDiff Scheduler::Reload(
    std::shared_ptr<const config::Config> config) {
  config::ConfigDiff diff = config::DiffConfigs(*config_, *config);
  config_ = std::move(config);
  for (const std::string& id : diff.removed) {
    auto it = slots_.find(id);
    if (it == slots_.end()) continue;
    std::unique_ptr<Slot> s = std::move(it->second);
    slots_.erase(it);
    s->removed = true;
    absl::Status gone =
        absl::NotFoundError(absl::StrCat("model '", id, "' was removed"));
    AnswerReadyWaiters(*s, gone);
    // Its demands are in the queue under its id: fail them.
    std::list<Demand> failed;
    for (auto q = queue_.begin(); q != queue_.end();) {
      if (q->model == id) {
        failed.splice(failed.end(), queue_, q++);
      } else {
        ++q;
      }
    }
    for (Demand& d : failed) {
      if (d.client == 0 && d.done) d.done(gone);
      auto c = clients_.find(d.client);
      if (d.client != 0 && c != clients_.end()) {
        c->second.client->OnFailed(id, d.request_id, gone);
      }
    }
    if (on_change_)
      on_change_(ModelChange{ModelChange::Kind::kDeleted, View(*s)});
    Slot* raw = s.get();
    retired_.push_back(std::move(s));
    if (Running(*raw) || !raw->holders.empty()) {
      raw->admin_stop = true;
      BeginEviction(*raw, "removed from the config");
    } else {
      retired_.pop_back();
    }
  }
  for (const config::ModelConfig& m : config_->models) {
    auto it = slots_.find(m.id);
    if (it == slots_.end()) {
      auto slot = std::make_unique<Slot>();
      slot->config = ModelOf(config_, m);
      slot->log = std::make_shared<logs::LogBuffer>();
      slot->actor = MakeActor(m, slot->log);
      slot->revision = ++*revisions_;
      Slot& s = *slot;
      slots_[m.id] = std::move(slot);
      Emit(s, ModelChange::Kind::kAdded);
      continue;
    }
    Slot& s = *it->second;
    bool restart = std::find(diff.restart.begin(), diff.restart.end(), m.id) !=
                   diff.restart.end();
    if (restart && (Running(s) || !s.holders.empty())) {
      s.next_config = ModelOf(config_, m);
      BeginEviction(s, "its command changed in a config reload");
    } else if (restart) {
      s.config = ModelOf(config_, m);
      s.actor = MakeActor(m, s.log);
    } else {
      s.config = ModelOf(config_, m);
      s.actor->UpdateConfig(m);
    }
    if (restart || std::find(diff.update.begin(), diff.update.end(), m.id) !=
                       diff.update.end()) {
      Emit(s);
    }
  }
  Pump();
  return diff;
}

}  // namespace modelplane::scheduler
