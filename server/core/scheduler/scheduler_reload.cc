// The scheduler and its config: a reload (models added, removed,
// restarted, updated; groups and settings changed) and the shutdown.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/core/scheduler/scheduler.h"
#include "server/core/scheduler/scheduler_internal.h"

namespace modelplane::scheduler {

using actor::State;

// --- Shutdown and reload ---

void Scheduler::Shutdown(std::function<void()> done) {
  Activity activity(this);
  shutting_down_ = true;
  Apply(gate_.CloseAll());
  queue_timer_.reset();
  for (auto& [id, s] : slots_) {
    FailDemands(*s, absl::UnavailableError("the manager is shutting down"));
    AnswerReadyWaiters(*s,
                       absl::UnavailableError("the manager is shutting down"));
    RevokeAll(*s, "the manager is shutting down");
    s->stop_cause = "shutdown";
  }
  auto remaining = std::make_shared<size_t>(slots_.size() + 1);
  auto finish = [remaining, done] {
    if (--*remaining == 0 && done) done();
  };
  for (auto& [id, s] : slots_) {
    // Followers of its output get what it printed up to its end, then
    // UNAVAILABLE.
    s->actor->Shutdown([finish, log = s->log] {
      log->Close(absl::UnavailableError("the manager is shutting down"));
      finish();
    });
  }
  finish();
}

config::ConfigDiff Scheduler::Reload(
    std::shared_ptr<const config::Config> config) {
  Activity activity(this);
  config::ConfigDiff diff = config::DiffConfigs(*config_, *config);
  Apply(
      gate_.CloseAll());  // Reopened by the Pump below, as the new config says.
  config_ = std::move(config);
  for (const std::string& id : diff.removed) {
    auto it = slots_.find(id);
    if (it == slots_.end()) continue;
    std::unique_ptr<Slot> s = std::move(it->second);
    slots_.erase(it);
    s->removed = true;
    // ABORTED, as for a Stop: the call was valid, the config changed under
    // it (the proto's code for Start, WaitReady and ACQUIRE).
    absl::Status gone = absl::AbortedError(
        absl::StrCat("model '", id, "' was removed by a config reload"));
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
        c->second.client->OnFailed(id, d.request_id, gone, nullptr);
      }
    }
    if (on_change_)
      on_change_(ModelChange{ModelChange::Kind::kDeleted, View(*s)});
    Slot* raw = s.get();
    retired_.push_back(std::move(s));
    if (Running(*raw) || !raw->holders.empty()) {
      // Its log is closed once it is down.
      BeginEviction(*raw, SlotPhase::kStopDraining, "removed from the config",
                    "reload");
    } else {
      raw->log->Close(
          absl::NotFoundError(absl::StrCat("model '", id, "' was removed")));
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
    bool changed = restart || std::find(diff.update.begin(), diff.update.end(),
                                        m.id) != diff.update.end();
    // A failure seen for the old settings says nothing of the new ones.
    if (changed) ClearBackoff(s);
    if (restart && (Running(s) || !s.holders.empty())) {
      s.next_config = ModelOf(config_, m);
      s.restart_after_stop = s.actor->status().state != State::kSleeping;
      BeginEviction(s, SlotPhase::kDraining,
                    "its command changed in a config reload", "reload");
    } else if (restart) {
      // No process to restart: for the caller it is an update.
      s.config = ModelOf(config_, m);
      s.actor = MakeActor(m, s.log);
      diff.restart.erase(
          std::find(diff.restart.begin(), diff.restart.end(), m.id));
      diff.restart_reasons.erase(m.id);
      diff.update.insert(
          std::lower_bound(diff.update.begin(), diff.update.end(), m.id), m.id);
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
