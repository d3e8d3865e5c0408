// Sleep and wake (docs/gpu.md#sleep-and-wake): the actions that put a READY
// model to sleep and wake it, a POST to its upstream or a command. Part of
// ModelActor (model_actor.h); its states and the rest of its life are in
// model_actor.cc.
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "server/core/actor/model_actor.h"

namespace modelplane::actor {

// A sleep or wake command: its output goes to the model's log; its exit
// ends the action.
class ModelActor::ActionObserver : public ProcessObserver {
 public:
  explicit ActionObserver(ModelActor* actor) : actor_(actor) {}
  void OnOutput(absl::string_view data) override { actor_->log_->Append(data); }
  void OnExit(ExitStatus status) override {
    Done done = std::exchange(actor_->action_done_, nullptr);
    actor_->action_process_.reset();
    if (!done) return;
    done(status.exit_code == 0 ? absl::OkStatus()
                               : absl::UnavailableError(absl::StrCat(
                                     "ended with ", status.ToString())));
  }

 private:
  ModelActor* actor_;
};

std::unique_ptr<ProcessObserver> ModelActor::MakeActionObserver() {
  return std::make_unique<ActionObserver>(this);
}

void ModelActor::Sleep(Done done) {
  if (status_.state != State::kReady || !config_.can_sleep() ||
      sleep_done_ != nullptr) {
    done(absl::FailedPreconditionError(
        absl::StrCat("model ", config_.id, " cannot sleep now (",
                     StateName(status_.state), ")")));
    return;
  }
  ttl_timer_.reset();
  sleep_done_ = std::move(done);
  sleep_timer_ = env_.clock->After(config_.health_check_timeout, [this] {
    CancelAction();
    Mark(
        absl::StrCat("[modelplane] sleep did not finish within "
                     "healthCheckTimeout (",
                     absl::FormatDuration(config_.health_check_timeout), ")"));
    FinishSleep(absl::DeadlineExceededError("sleep did not finish in time"));
  });
  RunAction(config_.sleep, "sleep", [this](absl::Status status) {
    if (status.ok() && status_.state == State::kReady) {
      Transition(State::kSleeping);
      Mark(absl::StrCat("[modelplane] ---- ", config_.id, " asleep at ",
                        Stamp(env_.clock->Now()), " ----"));
    } else if (!status.ok()) {
      Mark(absl::StrCat("[modelplane] sleep failed: ", status.message()));
    }
    FinishSleep(status);
    // Its TTL runs on while it sleeps (armed once no sleep is in flight;
    // the scheduler may have stopped it meanwhile).
    if (status_.state == State::kSleeping) ArmTtl();
  });
}

void ModelActor::FinishSleep(const absl::Status& status) {
  sleep_timer_.reset();
  Done done = std::exchange(sleep_done_, nullptr);
  if (done) done(status);
}

void ModelActor::RunAction(const config::ModelConfig::Action& action,
                           const char* what, Done done) {
  CancelAction();
  if (!action.endpoint.empty()) {
    action_done_ = std::move(done);
    action_call_ = env_.prober->Post(
        config_.proxy + action.endpoint,
        ProbeTrust{config_.tls.ca_pem, config_.tls.insecure_skip_verify},
        config_.health_check_timeout,
        [this, what, path = action.endpoint](absl::StatusOr<int> r) {
          action_call_.reset();
          Done finish = std::exchange(action_done_, nullptr);
          if (!finish) return;
          if (r.ok() && *r >= 200 && *r < 300) {
            finish(absl::OkStatus());
          } else {
            finish(absl::UnavailableError(
                absl::StrCat(what, " POST ", path, ": ",
                             r.ok() ? absl::StrCat("HTTP ", *r)
                                    : std::string(r.status().message()))));
          }
        });
    return;
  }
  SpawnSpec spec{action.argv, config_.env, config_.id};
  for (std::string& arg : spec.argv) {
    arg = absl::StrReplaceAll(arg, {{"${PID}", std::to_string(status_.pid)}});
  }
  absl::StatusOr<std::unique_ptr<Process>> p =
      env_.launcher->Spawn(spec, action_observer_.get());
  if (!p.ok()) {
    done(absl::UnavailableError(
        absl::StrCat(what, " command: ", p.status().message())));
    return;
  }
  action_done_ = std::move(done);
  action_process_ = *std::move(p);
}

void ModelActor::CancelAction() {
  action_call_.reset();
  action_process_.reset();  // Kills its group.
  action_done_ = nullptr;
}

void ModelActor::BeginWake() {
  Transition(State::kStarting);
  reprobe_ = false;
  partial_line_.clear();
  started_at_ = env_.clock->Now();
  // The start's bound covers the wake action too.
  OpenRun("waking", FailureReason::kWakeFailed, "not awake");
  last_probe_.clear();
  RunAction(config_.wake, "wake", [this](absl::Status status) {
    if (status_.state != State::kStarting) return;
    if (!status.ok()) {
      FailStart(FailureReason::kWakeFailed, std::nullopt,
                std::string(status.message()));
      return;
    }
    AwaitReadiness();
  });
}

}  // namespace modelplane::actor
