#include "server/core/actor/model_actor.h"

#include <signal.h>

#include <algorithm>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace modelplane::actor {
namespace {

// A line longer than this is matched against readyPattern in pieces.
constexpr size_t kMaxLineBytes = 4096;

bool Legal(State from, State to, bool has_process) {
  switch (to) {
    case State::kStarting:
      return from == State::kStopped || from == State::kFailed ||
             (from == State::kSleeping && has_process);
    case State::kReady:
      return from == State::kStarting;
    case State::kStopping:
      return from == State::kStarting || from == State::kReady ||
             from == State::kSleeping;
    case State::kStopped:
      return from == State::kStopping;
    case State::kFailed:
      return from == State::kStarting || from == State::kReady ||
             from == State::kStopping || from == State::kSleeping;
    case State::kSleeping:
      return from == State::kReady && has_process;
    case State::kShutdown:
      return !has_process && from != State::kShutdown;
  }
  return false;
}

}  // namespace

const char* StateName(State s) {
  switch (s) {
    case State::kStopped:
      return "STOPPED";
    case State::kStarting:
      return "STARTING";
    case State::kReady:
      return "READY";
    case State::kStopping:
      return "STOPPING";
    case State::kFailed:
      return "FAILED";
    case State::kShutdown:
      return "SHUTDOWN";
    case State::kSleeping:
      return "SLEEPING";
  }
  return "?";
}

const char* FailureReasonName(FailureReason r) {
  switch (r) {
    case FailureReason::kSpawnError:
      return "SPAWN_ERROR";
    case FailureReason::kExitedDuringStart:
      return "EXITED_DURING_START";
    case FailureReason::kHealthCheckTimeout:
      return "HEALTH_CHECK_TIMEOUT";
    case FailureReason::kCrashed:
      return "CRASHED";
    case FailureReason::kWakeFailed:
      return "WAKE_FAILED";
  }
  return "?";
}

std::optional<FailureReason> FailureReasonOf(const absl::Status& status) {
  auto name = status.GetPayload(kFailureReasonPayload);  // absl::optional
  if (!name) return std::nullopt;
  for (FailureReason r :
       {FailureReason::kSpawnError, FailureReason::kExitedDuringStart,
        FailureReason::kHealthCheckTimeout, FailureReason::kCrashed,
        FailureReason::kWakeFailed}) {
    if (*name == FailureReasonName(r)) return r;
  }
  return std::nullopt;
}

std::string Failure::Summary() const {
  std::string out = message;
  if (exit) absl::StrAppend(&out, " (", exit->ToString(), ")");
  if (!last_lines.empty()) absl::StrAppend(&out, ": ", last_lines.back());
  return out;
}

// cmdStop runs as a process of its own; its output goes to the model's log.
class ModelActor::StopCommandObserver : public ProcessObserver {
 public:
  explicit StopCommandObserver(ModelActor* actor) : actor_(actor) {}
  void OnOutput(absl::string_view data) override { actor_->log_->Append(data); }
  void OnExit(ExitStatus status) override {
    if (status.exit_code != 0) {
      actor_->log_->Append(absl::StrCat("[modelplane] cmdStop ended with ",
                                        status.ToString(), "\n"));
    }
    actor_->stop_command_.reset();
    actor_->MaybeFinishStop();
  }

 private:
  ModelActor* actor_;
};

ModelActor::ModelActor(config::ModelConfig config, ActorEnv env,
                       uint64_t* revisions,
                       std::shared_ptr<logs::LogBuffer> log, EventSink on_event)
    : config_(std::move(config)),
      env_(env),
      revisions_(revisions),
      log_(std::move(log)),
      on_event_(std::move(on_event)),
      stop_command_observer_(std::make_unique<StopCommandObserver>(this)),
      action_observer_(MakeActionObserver()) {
  status_.state_since = env_.clock->Now();
  if (!config_.ready_pattern.empty()) {
    ready_pattern_ = std::make_unique<RE2>(config_.ready_pattern, RE2::Quiet);
  }
}

std::string ModelActor::Stamp(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%E3S UTC", t, absl::UTCTimeZone());
}

// Destroying process_ and stop_command_ kills their groups.
ModelActor::~ModelActor() = default;

bool ModelActor::Transition(State to, std::optional<Failure> failure) {
  State from = status_.state;
  if (!Legal(from, to, process_ != nullptr || stop_command_ != nullptr)) {
    ABSL_RAW_LOG(ERROR, "model %s: illegal transition %s -> %s",
                 config_.id.c_str(), StateName(from), StateName(to));
    return false;
  }
  status_.state = to;
  status_.state_since = env_.clock->Now();
  status_.failure = to == State::kFailed ? std::move(failure) : std::nullopt;
  Touch(from);
  return true;
}

void ModelActor::Touch(std::optional<State> from) {
  status_.revision = ++*revisions_;
  if (on_event_) {
    on_event_(StateEvent{config_.id, from.value_or(status_.state),
                         status_.state, status_});
  }
}

void ModelActor::Start(Done done) {
  switch (status_.state) {
    case State::kReady:
      done(absl::OkStatus());
      return;
    case State::kShutdown:
      done(absl::UnavailableError(
          absl::StrCat("model ", config_.id, ": shutting down")));
      return;
    case State::kStarting:
      start_waiters_.push_back(std::move(done));
      return;
    case State::kStopping:
      start_waiters_.push_back(std::move(done));
      start_after_stop_ = true;
      return;
    case State::kStopped:
    case State::kFailed:
      start_waiters_.push_back(std::move(done));
      BeginStart();
      return;
    case State::kSleeping:
      start_waiters_.push_back(std::move(done));
      BeginWake();
      return;
  }
}

void ModelActor::RefuseStart(Done done, const absl::Status& why) {
  if (status_.state != State::kStopped && status_.state != State::kFailed) {
    Start(std::move(done));
    return;
  }
  start_waiters_.push_back(std::move(done));
  Transition(State::kStarting);
  FailStart(FailureReason::kSpawnError, std::nullopt,
            absl::StrCat("spawn error: ", why.message()));
}

absl::Status ModelActor::CheckCommand() const {
  return env_.launcher->Check(Spec());
}

SpawnSpec ModelActor::Spec() const {
  SpawnSpec spec{config_.argv, config_.env, config_.id};
  if (!config_.resources.set) return spec;
  // Unplaced (no NVML): the first GPU it may use, and no
  // CUDA_VISIBLE_DEVICES of ours.
  const std::vector<int>& allowed = config_.resources.gpus;
  std::string list = !gpus_.empty()    ? absl::StrJoin(gpus_, ",")
                     : allowed.empty() ? std::string("0")
                                       : absl::StrCat(allowed[0]);
  for (std::string& a : spec.argv) {
    a = absl::StrReplaceAll(a, {{"${GPU}", list}});
  }
  for (std::string& e : spec.env) {
    e = absl::StrReplaceAll(e, {{"${GPU}", list}});
  }
  if (!gpus_.empty()) {
    // NVML's indexes are in PCI bus order; CUDA's default order is fastest
    // first.
    spec.env.push_back("CUDA_DEVICE_ORDER=PCI_BUS_ID");
    spec.env.push_back("CUDA_VISIBLE_DEVICES=" + list);
  }
  return spec;
}

void ModelActor::Mark(const std::string& line) {
  // On a line of its own, after a last line the model did not end.
  log_->Append(absl::StrCat(log_->AtLineStart() ? "" : "\n", line, "\n"));
}

void ModelActor::BeginStart() {
  Transition(State::kStarting);
  reprobe_ = false;
  partial_line_.clear();
  run_offset_ = log_->end_offset();  // A spawn error has no lines of its own.
  absl::StatusOr<std::unique_ptr<Process>> p =
      env_.launcher->Spawn(Spec(), this);
  if (!p.ok()) {
    FailStart(FailureReason::kSpawnError, std::nullopt,
              absl::StrCat("spawn error: ", p.status().message()));
    return;
  }
  process_ = *std::move(p);
  status_.pid = process_->pid();
  started_at_ = env_.clock->Now();
  OpenRun("started", FailureReason::kHealthCheckTimeout, "not ready");
  Touch();
  AwaitReadiness();
}

void ModelActor::OpenRun(const char* verb, FailureReason late,
                         const char* late_what) {
  // Where this run's output begins (`mpctl logs` shows one run after
  // another in the same buffer).
  Mark(absl::StrCat("[modelplane] ---- ", config_.id, " ", verb, ", pid ",
                    status_.pid, ", at ", Stamp(started_at_), " ----"));
  run_offset_ = log_->end_offset();
  start_deadline_ = started_at_ + config_.health_check_timeout;
  deadline_timer_ =
      env_.clock->After(config_.health_check_timeout, [this, late, late_what] {
        // The last check's answer says why (a refused connection, a failed
        // TLS handshake, a 503).
        FailStart(
            late, std::nullopt,
            absl::StrCat(
                late_what, " within healthCheckTimeout (",
                absl::FormatDuration(config_.health_check_timeout), ")",
                last_probe_.empty() ? "" : "; last check: ", last_probe_));
      });
}

void ModelActor::AwaitReadiness() {
  if (config_.check_endpoint.empty()) {
    BecomeReady();
    return;
  }
  next_probe_delay_ = kFirstProbeDelay;
  last_probe_.clear();
  ScheduleProbe(kFirstProbeDelay);
}

void ModelActor::ScheduleProbe(absl::Duration delay) {
  probe_timer_ = env_.clock->After(delay, [this] { RunProbe(); });
}

void ModelActor::RunProbe() {
  if (status_.state != State::kStarting || probe_ != nullptr) return;
  absl::Duration left = start_deadline_ - env_.clock->Now();
  if (left <= absl::ZeroDuration()) return;  // The deadline timer fires.
  probe_ = env_.prober->Get(
      config_.proxy + config_.check_endpoint,
      ProbeTrust{config_.tls.ca_pem, config_.tls.insecure_skip_verify},
      std::min(left, kMaxProbeTimeout),
      [this](absl::StatusOr<int> result) { OnProbe(std::move(result)); });
}

void ModelActor::OnProbe(absl::StatusOr<int> result) {
  probe_.reset();
  if (status_.state != State::kStarting) return;
  if (result.ok() && *result == 200) {
    BecomeReady();
    return;
  }
  last_probe_ = result.ok() ? absl::StrCat("HTTP ", *result)
                            : std::string(result.status().message());
  if (reprobe_) {
    reprobe_ = false;
    RunProbe();
    return;
  }
  next_probe_delay_ =
      std::min(next_probe_delay_ * kProbeBackoff, kMaxProbeInterval);
  ScheduleProbe(next_probe_delay_);
}

void ModelActor::OnOutput(absl::string_view data) {
  log_->Append(data);
  bool want_pattern =
      ready_pattern_ != nullptr && status_.state == State::kStarting;
  if (!want_pattern && !line_sink_) return;
  partial_line_.append(data.data(), data.size());
  bool matched = false;
  auto on_line = [&](absl::string_view line) {
    if (line_sink_) line_sink_(config_.id, line);
    if (want_pattern && !matched) {
      matched = RE2::PartialMatch(re2::StringPiece(line.data(), line.size()),
                                  *ready_pattern_);
    }
  };
  size_t start = 0;
  for (size_t nl; (nl = partial_line_.find('\n', start)) != std::string::npos;
       start = nl + 1) {
    on_line(absl::string_view(partial_line_).substr(start, nl - start));
  }
  partial_line_.erase(0, start);
  if (partial_line_.size() > kMaxLineBytes) {
    on_line(partial_line_);
    partial_line_.clear();
  }
  if (!matched) return;
  // Probe now rather than at the next scheduled probe.
  if (probe_ != nullptr) {
    reprobe_ = true;
  } else {
    probe_timer_.reset();
    RunProbe();
  }
}

void ModelActor::BecomeReady() {
  deadline_timer_.reset();
  probe_timer_.reset();
  probe_.reset();
  status_.last_used = env_.clock->Now();
  Transition(State::kReady);
  AnswerStartWaiters(absl::OkStatus());
  ArmTtl();
}

Failure ModelActor::MakeFailure(FailureReason reason,
                                std::optional<ExitStatus> exit,
                                std::string message) const {
  return Failure{reason, exit, std::move(message),
                 log_->LastLines(kFailureLines, 1024, run_offset_),
                 env_.clock->Now()};
}

void ModelActor::FailStart(FailureReason reason, std::optional<ExitStatus> exit,
                           std::string message) {
  CancelAction();
  deadline_timer_.reset();
  probe_timer_.reset();
  probe_.reset();
  Failure failure = MakeFailure(reason, exit, std::move(message));
  absl::Status status = absl::FailedPreconditionError(
      absl::StrCat("model ", config_.id, ": ", failure.Summary()));
  status.SetPayload(kFailureReasonPayload,
                    absl::Cord(FailureReasonName(reason)));
  if (process_ != nullptr) {
    // Tear the process down first: the model is FAILED once it is reaped,
    // and a new start waits for that.
    pending_failure_ = std::move(failure);
    Transition(State::kStopping);
    AnswerStartWaiters(status);
    BeginStop();
    return;
  }
  Transition(State::kFailed, std::move(failure));
  AnswerStartWaiters(status);
}

void ModelActor::AnswerStartWaiters(const absl::Status& status) {
  std::vector<Done> waiters;
  waiters.swap(start_waiters_);
  for (Done& done : waiters) done(status);
}

void ModelActor::Stop(std::function<void()> done) {
  if (done) stop_waiters_.push_back(std::move(done));
  switch (status_.state) {
    case State::kStopped:
    case State::kFailed:
    case State::kShutdown:
      MaybeFinishStop();
      return;
    case State::kStopping:
      if (start_after_stop_) {
        start_after_stop_ = false;
        AnswerStartWaiters(absl::AbortedError(
            absl::StrCat("model ", config_.id, ": start cancelled by a stop")));
      }
      return;
    case State::kStarting:
      deadline_timer_.reset();
      probe_timer_.reset();
      probe_.reset();
      CancelAction();  // A wake in flight.
      Transition(State::kStopping);
      AnswerStartWaiters(absl::AbortedError(
          absl::StrCat("model ", config_.id, ": start cancelled by a stop")));
      BeginStop();
      return;
    case State::kReady:
      CancelAction();  // A sleep in flight: it is stopped instead.
      Transition(State::kStopping);
      FinishSleep(absl::AbortedError("stopped while going to sleep"));
      BeginStop();
      return;
    case State::kSleeping:
      Transition(State::kStopping);
      BeginStop();
      return;
  }
}

void ModelActor::Shutdown(std::function<void()> done) {
  shutting_down_ = true;
  start_after_stop_ = false;
  AnswerStartWaiters(absl::UnavailableError(
      absl::StrCat("model ", config_.id, ": shutting down")));
  Stop(std::move(done));
}

void ModelActor::BeginStop() {
  ttl_timer_.reset();
  if (process_ == nullptr) {
    MaybeFinishStop();
    return;
  }
  SendStopSignal();
  kill_timer_ = env_.clock->After(config_.unload_timeout, [this] {
    // Still alive after the grace period: kill the whole group (and a
    // cmdStop that hangs).
    if (process_ != nullptr) process_->SignalGroup(SIGKILL);
    if (stop_command_ != nullptr) stop_command_->SignalGroup(SIGKILL);
  });
}

void ModelActor::SendStopSignal() {
  if (!config_.cmd_stop.empty()) {
    SpawnSpec spec{config_.cmd_stop, config_.env};
    for (std::string& arg : spec.argv) {
      arg = absl::StrReplaceAll(arg,
                                {{"${PID}", std::to_string(process_->pid())}});
    }
    absl::StatusOr<std::unique_ptr<Process>> p =
        env_.launcher->Spawn(spec, stop_command_observer_.get());
    if (p.ok()) {
      stop_command_ = *std::move(p);
      return;
    }
    log_->Append(absl::StrCat("[modelplane] cmdStop failed to start (",
                              p.status().message(), "); sending SIGTERM\n"));
  }
  process_->SignalGroup(SIGTERM);
}

void ModelActor::OnExit(ExitStatus status) {
  process_.reset();
  int pid = std::exchange(status_.pid, 0);
  absl::Time now = env_.clock->Now();
  // Where the run ends; after what follows, which reads the run's last
  // lines for its failure.
  std::string end = absl::StrCat("[modelplane] ---- ", config_.id, " (pid ",
                                 pid, ") exited (", status.ToString(), ") at ",
                                 Stamp(now), " after ",
                                 absl::FormatDuration(absl::Trunc(
                                     now - started_at_, absl::Milliseconds(1))),
                                 " ----");
  absl::Cleanup mark = [this, &end] { Mark(end); };
  switch (status_.state) {
    case State::kStarting:
      FailStart(FailureReason::kExitedDuringStart, status,
                "exited before it was ready");
      return;
    case State::kReady:
      ttl_timer_.reset();
      CancelAction();
      Transition(State::kFailed, MakeFailure(FailureReason::kCrashed, status,
                                             "exited while ready"));
      FinishSleep(absl::AbortedError("exited while going to sleep"));
      return;
    case State::kSleeping:
      Transition(State::kFailed, MakeFailure(FailureReason::kCrashed, status,
                                             "exited while asleep"));
      return;
    case State::kStopping:
      MaybeFinishStop();
      return;
    default:
      ABSL_RAW_LOG(ERROR, "model %s: process exit in state %s",
                   config_.id.c_str(), StateName(status_.state));
      Touch();
  }
}

void ModelActor::MaybeFinishStop() {
  if (process_ != nullptr || stop_command_ != nullptr) return;
  kill_timer_.reset();
  if (status_.state == State::kStopping) {
    if (pending_failure_) {
      Transition(State::kFailed, std::exchange(pending_failure_, std::nullopt));
    } else {
      Transition(State::kStopped);
    }
  }
  if (shutting_down_ && status_.state != State::kShutdown) {
    Transition(State::kShutdown);
  }
  std::vector<std::function<void()>> waiters;
  waiters.swap(stop_waiters_);
  for (auto& done : waiters) done();
  if (start_after_stop_ && status_.state != State::kStopping) {
    start_after_stop_ = false;
    if (!start_waiters_.empty() && !shutting_down_) BeginStart();
  }
}

void ModelActor::UpdateConfig(config::ModelConfig config) {
  config_ = std::move(config);
  if (status_.state == State::kSleeping && !config_.can_sleep()) {
    // It could not be woken any more: it is stopped (a request starts it).
    Mark("[modelplane] sleep and wake removed by a reload; stopping");
    Stop(nullptr);
    return;
  }
  ready_pattern_.reset();
  if (!config_.ready_pattern.empty()) {
    ready_pattern_ = std::make_unique<RE2>(config_.ready_pattern, RE2::Quiet);
  }
  ArmTtl();
}

void ModelActor::AddLease() {
  ++status_.leases;
  ttl_timer_.reset();
  Touch();
}

void ModelActor::ReleaseLease(absl::Time last_used) {
  if (status_.leases > 0) --status_.leases;
  status_.last_used = std::max(status_.last_used, last_used);
  Touch();
  ArmTtl();
}

void ModelActor::ArmTtl() {
  ttl_timer_.reset();
  bool up = status_.state == State::kReady || status_.state == State::kSleeping;
  if (!up || status_.leases > 0 || sleep_done_ != nullptr ||
      config_.ttl <= absl::ZeroDuration()) {
    return;
  }
  absl::Duration wait = status_.last_used + config_.ttl - env_.clock->Now();
  ttl_timer_ = env_.clock->After(std::max(wait, absl::ZeroDuration()), [this] {
    if (before_idle_stop_) before_idle_stop_();
    bool up =
        status_.state == State::kReady || status_.state == State::kSleeping;
    if (!up || status_.leases > 0) return;
    if (env_.clock->Now() < status_.last_used + config_.ttl) {
      ArmTtl();
      return;
    }
    log_->Append(absl::StrCat("[modelplane] unloading ", config_.id,
                              ": idle for its ttl (",
                              absl::FormatDuration(config_.ttl), ")\n"));
    Stop(nullptr);
  });
}

}  // namespace modelplane::actor
