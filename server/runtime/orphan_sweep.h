// Finds what a model left behind when its supervisor could not kill it.
//
// A supervisor kills its model's process group and every descendant that
// reparented to it when the model exits or the manager dies. What it cannot
// cover is its own death by SIGKILL (`pkill -9`, an OOM kill): the model
// dies with it (PR_SET_PDEATHSIG), but a grandchild that ignores SIGTERM, or
// one that called setsid() to hold a port, reparents to init and lives on.
// So every process a manager spawns carries, in its environment, a tag its
// descendants inherit wherever they move (another group, another session):
//
//   MODELPLANE_SPAWN=<manager pid>.<manager start time>.<spawn number>.<model>
//
// and a sweep reads /proc/<pid>/environ for it:
//
//   - SweepSpawn(tag): when the manager reaps a supervisor, whatever of that
//     spawn is still alive (nothing, unless the supervisor was killed);
//   - SweepOrphans(): at a manager's start, the tagged processes whose
//     manager is gone (it was killed together with its supervisors).
//
// Processes are matched through a pidfd (opened before the environment is
// read) and signalled through it, so a reused pid is never hit. A process
// that rewrites its environment memory, or runs as another user, escapes.
#ifndef MODELPLANE_SERVER_RUNTIME_ORPHAN_SWEEP_H_
#define MODELPLANE_SERVER_RUNTIME_ORPHAN_SWEEP_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace modelplane::runtime {

inline constexpr char kSpawnVariable[] = "MODELPLANE_SPAWN";

// "<pid>.<start time>" of this process: the first part of its spawns' tags.
const std::string& SelfTag();

// The environment entry for a spawn: "MODELPLANE_SPAWN=<SelfTag>.<n>.<model>".
std::string SpawnEntry(uint64_t spawn, absl::string_view model);

struct SweptProcess {
  pid_t pid;
  std::string model;
};

// Whether process `pid` is the one that started at `start` (clock ticks
// after boot, /proc/<pid>/stat field 22) and still runs.
bool ProcessRunning(pid_t pid, uint64_t start);

// SIGKILLs every process whose tag starts with "<SelfTag>.<spawn>."; the
// processes killed.
std::vector<SweptProcess> SweepSpawn(uint64_t spawn);

// SIGKILLs every tagged process whose manager is no longer running.
std::vector<SweptProcess> SweepOrphans();

// "pid 123 (model qwen), pid 456 (model qwen)".
std::string Describe(const std::vector<SweptProcess>& swept);

}  // namespace modelplane::runtime

#endif  // MODELPLANE_SERVER_RUNTIME_ORPHAN_SWEEP_H_
