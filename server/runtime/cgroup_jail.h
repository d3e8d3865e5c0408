// Each model in a cgroup of its own (cgroup v2), when the manager may make
// them: what a model spawned is then found whatever it did to escape (a new
// session, a cleared environment, a double fork), and killed at once with
// cgroup.kill. The environment tag (orphan_sweep.h) stays the fallback on a
// host where the manager's cgroup is not writable (a systemd unit without
// Delegate=yes, a container that mounts cgroups read-only).
//
//   <the manager's cgroup>/modelplane-<pid>.<start time>/   the manager's
//       spawn-1/   one model process and everything it spawns
//       spawn-2/
//
//   std::unique_ptr<CgroupJail> jail = CgroupJail::ForThisProcess();
//   std::string cgroup = jail->Prepare(spawn);  // Before fork.
//   ... the model writes its pid into cgroup/cgroup.procs before it execs ...
//   jail->Kill(spawn);                          // Its supervisor was reaped.
//
// Loop thread, except SweepOrphans (startup). Paths only: what runs in the
// forked child (writing its pid) is the supervisor's business.
#ifndef MODELPLANE_SERVER_RUNTIME_CGROUP_JAIL_H_
#define MODELPLANE_SERVER_RUNTIME_CGROUP_JAIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace modelplane::runtime {

class CgroupJail {
 public:
  // The jail under this process's cgroup v2 directory, or null when there
  // is none or it cannot be written (`why` says which).
  static std::unique_ptr<CgroupJail> ForThisProcess(std::string* why);
  // Kills, and removes, the jails of managers that are no longer running
  // (killed together with their supervisors); the spawns' processes killed
  // are counted into `killed`. Returns the jails removed.
  static std::vector<std::string> SweepOrphans(int* killed);

  ~CgroupJail();  // Kills what is left in every spawn, removes the jail.
  CgroupJail(const CgroupJail&) = delete;
  CgroupJail& operator=(const CgroupJail&) = delete;

  // Makes spawn-<n>; returns its directory ("" if it could not).
  std::string Prepare(uint64_t spawn);
  // Kills every process in spawn-<n> (cgroup.kill) and removes it once
  // empty. Returns how many processes it held.
  int Kill(uint64_t spawn);
  const std::string& dir() const { return dir_; }

 private:
  explicit CgroupJail(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace modelplane::runtime

#endif  // MODELPLANE_SERVER_RUNTIME_CGROUP_JAIL_H_
