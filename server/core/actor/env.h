// The seams between a model actor and the world: time, processes and health
// probes. The real implementations run on one libuv loop (uv_env.h); the
// unit tests drive the actor through fakes (fake_env.h) with no sleeps.
//
// Every call and callback happens on the actor loop's thread.
#ifndef MODELPLANE_SERVER_CORE_ACTOR_ENV_H_
#define MODELPLANE_SERVER_CORE_ACTOR_ENV_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace modelplane::actor {

// A pending callback; destroying it cancels the callback if it has not run.
// It may be destroyed from inside its own callback.
class Timer {
 public:
  virtual ~Timer() = default;
};

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  // Calls `fn` once, `delay` from now.
  virtual std::unique_ptr<Timer> After(absl::Duration delay,
                                       std::function<void()> fn) = 0;
};

// How a process ended, as waitpid reported it.
struct ExitStatus {
  int exit_code = -1;  // >= 0 when it exited.
  int signal = 0;      // > 0 when a signal killed it.

  static ExitStatus Code(int code) { return ExitStatus{code, 0}; }
  static ExitStatus Signaled(int sig) { return ExitStatus{-1, sig}; }
  // "exit code 3" or "signal 9 (Killed)".
  std::string ToString() const;
};

struct SpawnSpec {
  std::vector<std::string> argv;      // argv[0] is looked up in PATH.
  std::vector<std::string> env = {};  // KEY=value, over the inherited env.
  std::string name = {};  // The model's id: its supervisor's title, its tag.
};

class ProcessObserver {
 public:
  virtual ~ProcessObserver() = default;
  // Bytes the process (or its group) wrote to stdout or stderr.
  virtual void OnOutput(absl::string_view data) = 0;
  // The process exited, the rest of its process group was killed and reaped,
  // and its output is drained (or the drain backstop expired). The last call;
  // the observer may destroy the Process from inside it.
  virtual void OnExit(ExitStatus status) = 0;
};

// A spawned process, alone in its own process group. Destroying it before
// OnExit kills the group.
class Process {
 public:
  virtual ~Process() = default;
  virtual int pid() const = 0;
  // Sends `sig` to the whole process group.
  virtual void SignalGroup(int sig) = 0;
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  // Starts `spec`. Errors (binary not found, not executable, fork failure)
  // are returned here, with the OS error text.
  virtual absl::StatusOr<std::unique_ptr<Process>> Spawn(
      const SpawnSpec& spec, ProcessObserver* observer) = 0;
  // What Spawn would say of the executable alone, without starting
  // anything: OK, or why it cannot run (not found, not executable). The
  // scheduler asks before it evicts a model for a start.
  virtual absl::Status Check(const SpawnSpec& spec) = 0;
};

// A health probe in flight; destroying it cancels it (no callback).
class Probe {
 public:
  virtual ~Probe() = default;
};

// How an https:// health check trusts the server (the model's `tls`): the
// system's roots, `ca_pem`'s certificates, or nothing checked.
struct ProbeTrust {
  std::string ca_pem;
  bool insecure = false;
};

class HealthProber {
 public:
  virtual ~HealthProber() = default;
  // GETs `url` once (https:// trusting as `trust` says). `done` gets the
  // HTTP status code, or an error for a refused connection, a failed TLS
  // handshake, a timeout or a malformed answer.
  virtual std::unique_ptr<Probe> Get(
      const std::string& url, const ProbeTrust& trust, absl::Duration timeout,
      std::function<void(absl::StatusOr<int>)> done) = 0;
  // POSTs an empty body to `url` once (a model's sleep or wake endpoint);
  // `done` as for Get.
  virtual std::unique_ptr<Probe> Post(
      const std::string& url, const ProbeTrust& trust, absl::Duration timeout,
      std::function<void(absl::StatusOr<int>)> done) = 0;
};

struct ActorEnv {
  Clock* clock;
  Launcher* launcher;
  HealthProber* prober;
};

}  // namespace modelplane::actor

#endif  // MODELPLANE_SERVER_CORE_ACTOR_ENV_H_
