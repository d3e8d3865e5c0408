// actor::Launcher over libuv, with a supervisor process per model
// (supervisor.h) so that nothing a model started survives the manager.
//
// Spawn resolves argv[0] in PATH (of the model's environment) before
// forking, so a missing or non-executable binary is a clear error, not an
// exit code. The model's environment is the manager's with the model's
// `env` entries replacing variables of the same name. stdout and stderr
// share one pipe (so their lines stay in the order the model wrote them);
// stdin is /dev/null.
//
// Exit: the supervisor reports the model's status once the model's whole
// group is dead and reaped; OnExit follows once the output pipe is drained,
// or kDrainBackstop after the exit if some process that escaped the group
// and the supervisor still holds the pipe.
//
// Loop thread only.
#ifndef MODELPLANE_SERVER_RUNTIME_PROCESS_LAUNCHER_H_
#define MODELPLANE_SERVER_RUNTIME_PROCESS_LAUNCHER_H_

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/core/actor/env.h"
#include "server/runtime/cgroup_jail.h"

namespace modelplane::runtime {

class ProcessLauncher : public actor::Launcher {
 public:
  static constexpr absl::Duration kDrainBackstop = absl::Seconds(2);

  // `loop` must outlive the launcher and its processes.
  explicit ProcessLauncher(uv_loop_t* loop);
  // Closes the lifeline: every supervisor still running kills its model.
  ~ProcessLauncher() override;

  absl::StatusOr<std::unique_ptr<actor::Process>> Spawn(
      const actor::SpawnSpec& spec, actor::ProcessObserver* observer) override;
  absl::Status Check(const actor::SpawnSpec& spec) override;

  // Told (on the loop thread) when a reaped supervisor left processes of
  // its spawn alive and they were killed: it died by SIGKILL (orphan_sweep.h).
  using Warn = std::function<void(const std::string&)>;
  // The spawns still being served (their state, opaque here).
  using Live = absl::flat_hash_set<void*>;
  void set_warn(Warn warn) { *warn_ = std::move(warn); }
  // Where models run: "in cgroups under <dir>", or why not (then only the
  // environment tag finds what a killed supervisor left). Any thread.
  const std::string& isolation() const { return isolation_; }

 private:
  uv_loop_t* loop_;
  int lifeline_read_ = -1;
  int lifeline_write_ = -1;
  std::unique_ptr<char[]> read_buffer_;  // Shared by every output pipe.
  uint64_t spawns_ = 0;  // The number in each spawn's MODELPLANE_SPAWN tag.
  // A cgroup per model when this process may make them (cgroup_jail.h);
  // shared with the spawns being reaped.
  std::shared_ptr<CgroupJail> jail_;
  // Every spawn still being served (ProcState*, which frees itself): the
  // destructor abandons those whose Process handle is gone.
  std::shared_ptr<Live> live_ = std::make_shared<Live>();
  std::string isolation_;
  // Shared with the spawns, which may outlive the launcher: emptied when
  // it goes.
  std::shared_ptr<Warn> warn_ = std::make_shared<Warn>();
};

// The manager's environment with `overrides` (KEY=value) replacing or
// adding variables.
std::vector<std::string> MergeEnvironment(
    const std::vector<std::string>& overrides);

// Whether `spec`'s executable can run, as Spawn finds it (the model's PATH,
// else the manager's): OK, or NotFound / PermissionDenied naming the path,
// or FailedPrecondition when exec would fail (CheckExecFormat).
absl::Status CheckExecutable(const actor::SpawnSpec& spec);

// Whether the kernel would exec the file at `path`: an ELF executable for
// this machine whose loader is there, or a #! script whose interpreter is
// an executable file (itself checked, a few levels deep). Anything else
// fails with FailedPrecondition saying why (what execve would answer
// ENOENT or ENOEXEC for).
// `search` is the PATH a `#!/usr/bin/env python3` line's command is looked
// up in.
absl::Status CheckExecFormat(const std::string& path, int depth = 0,
                             const std::string& search =
                                 "/usr/local/bin:"
                                 "/usr/bin:/bin");

// argv0 as an executable path: as is when it has a '/', else searched in
// `path_var` (PATH's value). NotFound or PermissionDenied with a message
// naming what was searched.
absl::StatusOr<std::string> ResolveExecutable(const std::string& argv0,
                                              const std::string& path_var);

}  // namespace modelplane::runtime

#endif  // MODELPLANE_SERVER_RUNTIME_PROCESS_LAUNCHER_H_
