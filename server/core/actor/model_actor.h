// One model's process and lifecycle: the C++ counterpart of llama-swap's
// process actor (docs/process-actors.md).
//
// Threading: an actor belongs to the actor loop's thread. Every method must
// be called there, and every callback (done callbacks, events) runs there.
// Other threads reach it by posting to that loop (the manager does).
//
//   ModelActor actor(model_config, env, &revisions, on_event);
//   actor.Start([](absl::Status s) { /* READY, or why not */ });
//   actor.Stop([] { /* stopped and reaped */ });
//
// States and transitions (anything else is a bug and is rejected, logged):
//
//   STOPPED  -> STARTING
//   FAILED   -> STARTING
//   STARTING -> READY | FAILED | STOPPING
//   READY    -> STOPPING | FAILED | SLEEPING (its sleep action succeeded)
//   SLEEPING -> STARTING (woken) | STOPPING | FAILED (it exited)
//   STOPPING -> STOPPED | FAILED
//   any      -> SHUTDOWN (only once the model has no process)
//
// Every transition out of STARTING answers every Start waiting on it, so no
// caller is ever stranded (llama-swap #946).
#ifndef MODELPLANE_SERVER_CORE_ACTOR_MODEL_ACTOR_H_
#define MODELPLANE_SERVER_CORE_ACTOR_MODEL_ACTOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "re2/re2.h"
#include "server/core/actor/env.h"
#include "server/core/config/config.h"
#include "server/core/logs/log_buffer.h"

namespace modelplane::actor {

// kSleeping (docs/gpu.md#sleep-and-wake): the process runs with its GPU
// memory freed by its `sleep` action; a Start wakes it (STARTING, then
// READY).
enum class State {
  kStopped,
  kStarting,
  kReady,
  kStopping,
  kFailed,
  kShutdown,
  kSleeping
};
const char* StateName(State s);

enum class FailureReason {
  kSpawnError,          // The command could not be started.
  kExitedDuringStart,   // It exited before it was ready.
  kHealthCheckTimeout,  // Not ready within healthCheckTimeout.
  kCrashed,             // It exited while ready (or asleep).
  kWakeFailed,          // Its wake action failed (it is stopped).
};
const char* FailureReasonName(FailureReason r);

// The payload FailStart puts on the FAILED_PRECONDITION it answers a start's
// waiters with: the FailureReasonName. A failed start whose process still
// has to be torn down (a health-check timeout) answers its waiters while the
// model is STOPPING, before ModelStatus::failure is set; this is how they
// learn why (the Acquire stream's FAILED carries it as `failure.reason`).
inline constexpr char kFailureReasonPayload[] =
    "type.modelplane.dev/actor.FailureReason";
// The reason in `status`'s kFailureReasonPayload, if it has one.
std::optional<FailureReason> FailureReasonOf(const absl::Status& status);

struct Failure {
  FailureReason reason;
  std::optional<ExitStatus> exit;  // Unset for kSpawnError (and a timeout).
  std::string message;
  std::vector<std::string> last_lines;  // The last lines it printed.
  absl::Time at;

  // "exited during start (exit code 1): CUDA out of memory".
  std::string Summary() const;
};

struct ModelStatus {
  State state = State::kStopped;
  absl::Time state_since;
  int pid = 0;                     // 0 without a process.
  std::optional<Failure> failure;  // Set while FAILED.
  int leases = 0;
  absl::Time last_used;   // Latest release, or when it last became READY.
  uint64_t revision = 0;  // Of the last change.
};

struct StateEvent {
  std::string model_id;
  State old_state;
  State new_state;
  ModelStatus status;  // After the change; status.revision is its revision.
};

class ModelActor : private ProcessObserver {
 public:
  using Done = std::function<void(absl::Status)>;
  using EventSink = std::function<void(const StateEvent&)>;

  // `revisions` is the manager-wide revision counter (shared by every actor
  // on this loop). `log` receives the model's output; it is shared with log
  // readers on other threads (it is internally synchronized).
  ModelActor(config::ModelConfig config, ActorEnv env, uint64_t* revisions,
             std::shared_ptr<logs::LogBuffer> log, EventSink on_event);
  ~ModelActor() override;
  ModelActor(const ModelActor&) = delete;
  ModelActor& operator=(const ModelActor&) = delete;

  // Makes the model READY: returns at once if READY, joins a start in
  // progress, waits out a stop in progress, starts it if STOPPED or FAILED.
  // `done` gets OK once READY, FailedPrecondition when the start failed
  // (the message is the failure's summary), Aborted when a Stop cancelled the
  // start, Unavailable after Shutdown.
  void Start(Done done);

  // A start known to fail (its command cannot run: `why`): from STOPPED or
  // FAILED the model goes STARTING and at once FAILED (SPAWN_ERROR) without
  // spawning anything, and `done` gets the failure as from Start. In any
  // other state it is Start.
  void RefuseStart(Done done, const absl::Status& why);
  // Whether the command can run, as the launcher sees it (Launcher::Check).
  absl::Status CheckCommand() const;

  // Puts a READY model with `sleep` and `wake` to sleep: its sleep action
  // (a POST to its upstream, or a command) and SLEEPING once it succeeded.
  // `done` gets OK then, or the error (the model stays READY: the caller
  // stops it instead), DeadlineExceeded past healthCheckTimeout, or Aborted
  // when a stop or its exit came first. Asleep, its TTL still runs (from
  // its last use): past it the process is stopped.
  void Sleep(Done done);

  // Stops the process: cmdStop (with ${PID}) or SIGTERM to its group, up to
  // unloadTimeout for it to exit, then SIGKILL to the group, then the reap.
  // Idempotent; joins a stop in progress; cancels a start in progress (its
  // waiters get Aborted). `done` runs once no process is left.
  void Stop(std::function<void()> done);

  // Stops (as Stop) and then stays in SHUTDOWN for good: later Starts get
  // Unavailable.
  void Shutdown(std::function<void()> done);

  // Applies settings that need no restart (TTL, timeouts, names, filters,
  // readyPattern...). The process settings (argv, env, proxy) must be
  // unchanged: a changed command needs a new actor.
  void UpdateConfig(config::ModelConfig config);

  // Lease bookkeeping for the TTL: the model is never unloaded by its TTL
  // while a lease is held, and idle time counts from the latest `last_used`
  // reported by a release.
  void AddLease();
  void ReleaseLease(absl::Time last_used);

  // Receives each complete line the model prints (without the newline),
  // tagged with the model id: the manager forwards them to its own log at
  // debug level. Lines over 4 KiB arrive in pieces.
  using LineSink =
      std::function<void(const std::string& model, absl::string_view line)>;
  void set_line_sink(LineSink sink) { line_sink_ = std::move(sink); }
  // Runs when the TTL timer fires, before the actor decides to unload: the
  // owner may add or release leases in it (the scheduler absorbs grants
  // taken on other threads). The lease count and last use are read after.
  void set_before_idle_stop(std::function<void()> fn) {
    before_idle_stop_ = std::move(fn);
  }

  // The GPUs its next start runs on (the scheduler's placement,
  // docs/gpu.md): the process gets CUDA_VISIBLE_DEVICES set to them and
  // `${GPU}` in its command and env replaced by them ("0" or "0,1").
  // Empty: neither.
  void set_gpus(std::vector<int> gpus) { gpus_ = std::move(gpus); }

  const std::string& id() const { return config_.id; }
  const config::ModelConfig& config() const { return config_; }
  const ModelStatus& status() const { return status_; }
  const std::shared_ptr<logs::LogBuffer>& log() const { return log_; }

  // The health probe schedule after spawn: first at kFirstProbeDelay, each
  // next one kProbeBackoff times later, at most kMaxProbeInterval apart.
  static constexpr absl::Duration kFirstProbeDelay = absl::Milliseconds(2);
  static constexpr double kProbeBackoff = 1.5;
  static constexpr absl::Duration kMaxProbeInterval = absl::Milliseconds(50);
  static constexpr absl::Duration kMaxProbeTimeout = absl::Seconds(1);
  static constexpr size_t kFailureLines = 20;

 private:
  // ProcessObserver.
  void OnOutput(absl::string_view data) override;
  void OnExit(ExitStatus status) override;

  // The one place the state changes; rejects (and logs) illegal moves.
  bool Transition(State to, std::optional<Failure> failure = std::nullopt);
  // Stamps a change with a new revision and emits it; `from` is the old
  // state when the state changed.
  void Touch(std::optional<State> from = std::nullopt);
  void BeginStart();
  // From SLEEPING: the wake action, then the readiness checks of a start.
  void BeginWake();
  // A start or a wake from started_at_ on: its mark in the log ("started",
  // "waking"), and its bound (healthCheckTimeout), past which it fails
  // with `late` ("not ready ...", "not awake ...").
  void OpenRun(const char* verb, FailureReason late, const char* late_what);
  // The readiness checks (none: READY at once).
  void AwaitReadiness();
  // Runs `action` (POST its endpoint to the upstream, or its command with
  // ${PID}); `done` gets OK for a 2xx or exit 0. Replaces one in flight.
  void RunAction(const config::ModelConfig::Action& action, const char* what,
                 Done done);
  void CancelAction();
  void FinishSleep(const absl::Status& status);
  // A line of the manager's own in the model's log (a run's start or end).
  void Mark(const std::string& line);
  // "2026-12-06 21:05:12.345 UTC", for those lines.
  static std::string Stamp(absl::Time t);
  void ScheduleProbe(absl::Duration delay);
  void RunProbe();
  void OnProbe(absl::StatusOr<int> result);
  void BecomeReady();
  // A start that failed: answers the waiters, tears the process down if it
  // still runs (STOPPING), and ends FAILED.
  void FailStart(FailureReason reason, std::optional<ExitStatus> exit,
                 std::string message);
  void AnswerStartWaiters(const absl::Status& status);
  void BeginStop();
  void SendStopSignal();
  // Once neither the process nor cmdStop runs: STOPPED (or FAILED, or
  // SHUTDOWN), answers the stop waiters, starts again if asked meanwhile.
  void MaybeFinishStop();
  void ArmTtl();
  Failure MakeFailure(FailureReason reason, std::optional<ExitStatus> exit,
                      std::string message) const;

  config::ModelConfig config_;
  ActorEnv env_;
  uint64_t* revisions_;
  std::shared_ptr<logs::LogBuffer> log_;
  EventSink on_event_;
  LineSink line_sink_;
  std::vector<int> gpus_;
  // The spawn of this start: the config's command and env, placed.
  SpawnSpec Spec() const;
  std::function<void()> before_idle_stop_;
  std::unique_ptr<RE2> ready_pattern_;

  ModelStatus status_;
  std::unique_ptr<Process> process_;
  std::vector<Done> start_waiters_;
  std::vector<std::function<void()>> stop_waiters_;
  bool start_after_stop_ = false;  // A Start arrived while STOPPING.
  bool shutting_down_ = false;
  // Set when a failed start is being torn down; becomes status_.failure.
  std::optional<Failure> pending_failure_;

  absl::Time started_at_;    // When the process was spawned.
  uint64_t run_offset_ = 0;  // Its log's end then: this run's output after.

  // Readiness.
  absl::Time start_deadline_;
  absl::Duration next_probe_delay_;
  std::string last_probe_;  // The last failed check's answer, this start.
  std::unique_ptr<Timer> probe_timer_;
  std::unique_ptr<Timer> deadline_timer_;
  std::unique_ptr<Probe> probe_;
  bool reprobe_ = false;  // readyPattern matched while a probe was running.
  std::string partial_line_;

  // Stopping.
  std::unique_ptr<Timer> kill_timer_;
  std::unique_ptr<Process> stop_command_;
  class StopCommandObserver;
  std::unique_ptr<StopCommandObserver> stop_command_observer_;
  // A sleep or wake action in flight: its HTTP call, or its command.
  // (model_actor_sleep.cc)
  class ActionObserver;
  std::unique_ptr<ProcessObserver> MakeActionObserver();
  std::unique_ptr<ProcessObserver> action_observer_;
  std::unique_ptr<Probe> action_call_;
  std::unique_ptr<Process> action_process_;
  Done action_done_;
  Done sleep_done_;                     // A Sleep in flight.
  std::unique_ptr<Timer> sleep_timer_;  // Its bound (healthCheckTimeout).

  std::unique_ptr<Timer> ttl_timer_;
};

}  // namespace modelplane::actor

#endif  // MODELPLANE_SERVER_CORE_ACTOR_MODEL_ACTOR_H_
