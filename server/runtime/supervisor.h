// The per-model supervisor: a small process between the manager and each
// model process, so that no model process or descendant outlives the
// manager, even when the manager is killed with SIGKILL.
//
//   manager ──fork──> supervisor S ──fork/exec──> model M (own process group)
//   (S shows as "mp-supervisor <model>": `pkill modelmanager` spares it)
//      │ lifeline pipe (write end)      │ read end      └─ grandchildren (same
//      │                                                   group, or reparented
//      └─ waits for S (pidfd)                              to S: subreaper)
//
// S ignores terminal signals, becomes a child subreaper (orphaned
// descendants of M reparent to S), forks M into a new process group with
// stdout and stderr on the output pipe, reports M's pid (or M's exec error)
// on the report pipe, then waits for either:
//   * M to exit: S SIGKILLs M's group and every remaining descendant, reaps
//     them all, and exits with M's exact status (the same code, or dying by
//     the same signal), so the manager's waitpid(S) reads M's status; or
//   * the lifeline to close (the manager died, however): S SIGKILLs M's group
//     and every descendant, reaps them, and exits.
// M also has PR_SET_PDEATHSIG(SIGKILL), so it dies if S is killed; what M
// spawned then is found by its MODELPLANE_SPAWN tag (orphan_sweep.h).
//
// RunSupervisor runs in the child of fork() in a multithreaded process, so
// it uses only async-signal-safe system calls: no allocation, no locks, no
// stdio. Everything it needs is prepared by the parent before fork().
#ifndef MODELPLANE_SERVER_RUNTIME_SUPERVISOR_H_
#define MODELPLANE_SERVER_RUNTIME_SUPERVISOR_H_

#include <cstdint>

namespace modelplane::runtime {

struct SupervisorArgs {
  const char* path;   // Absolute path of the executable.
  char* const* argv;  // Null-terminated.
  char* const* envp;  // Null-terminated.
  int output_fd;      // Write end: M's stdout and stderr.
  int report_fd;      // Write end: ReportMessages to the manager.
  int lifeline_fd;    // Read end: EOF when the manager is gone.
  const char* title;  // "mp-supervisor <model>": S's command line.
  // The model's cgroup directory: M writes its pid into its cgroup.procs
  // before it execs, so that it and all it spawns live there
  // (cgroup_jail.h); S, orphaned, kills the cgroup and removes it and the
  // manager's jail once empty. Null: no cgroup.
  const char* cgroup;
};

// The manager's command-line memory, which a supervisor (a fork of it, not
// an exec) overwrites with its title so that `ps` and `pkill` tell the two
// apart. Call once from main(); without it S keeps the manager's argv but
// still gets its own process name (comm).
void SetProcessTitleArea(int argc, char** argv);

// The process name (comm, at most 15 bytes) of every supervisor.
inline constexpr char kSupervisorName[] = "mp-supervisor";

// Messages on the report pipe, written whole (8 bytes is atomic on a pipe).
struct ReportMessage {
  enum Kind : int32_t { kPid = 1, kExecErrno = 2, kForkErrno = 3 };
  int32_t kind;
  int32_t value;
};

// How long S keeps killing and reaping descendants after M exits (or the
// lifeline closes) before it exits anyway.
inline constexpr int kReapRounds = 200;
inline constexpr int kReapRoundMillis = 10;

// Never returns. Call only in the child of fork().
[[noreturn]] void RunSupervisor(const SupervisorArgs& args);

}  // namespace modelplane::runtime

#endif  // MODELPLANE_SERVER_RUNTIME_SUPERVISOR_H_
