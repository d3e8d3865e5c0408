// The manager's view of GPU memory between NVML and the scheduler
// (docs/gpu.md): the latest snapshot, what each model's processes use
// (attributed by process group: a model's processes are alone in the group
// its pid leads), each model's measured footprint (the peak while READY,
// kept per model and command in a small state file so the next start knows
// it), where each model was placed, and the wait for the driver to give a
// stopped model's memory back.
//
// Loop thread only (the actor loop); the snapshot is read there, on a timer
// and when the scheduler decides.
#ifndef MODELPLANE_SERVER_CORE_GPU_MONITOR_H_
#define MODELPLANE_SERVER_CORE_GPU_MONITOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "server/core/actor/env.h"
#include "server/core/gpu/admission.h"
#include "server/core/gpu/gpu.h"

namespace modelplane::gpu {

struct MonitorOptions {
  // Where measured footprints are kept ("": in memory only).
  std::string state_file;
  // How often NVML is read while models run; the scheduler reads it more
  // often while a start waits for memory.
  absl::Duration poll = absl::Seconds(1);
  // Log lines: the GPUs found, a driver wait that timed out, memory back.
  std::function<void(const std::string& level, const std::string& line)> log;
  // The process group of a pid (null: /proc/<pid>/stat's; tests give
  // their fake processes' own).
  std::function<int(int pid)> group_of;
};

// A model's GPU memory as the API shows it (bytes per GPU).
struct ModelMemory {
  std::vector<int> gpus;  // Placed on (or, unplaced, where it uses memory).
  uint64_t measured = 0;  // Peak while READY, of this command.
  uint64_t used = 0;      // Now, on its busiest GPU.
};

class Monitor {
 public:
  Monitor(std::unique_ptr<GpuSource> source, actor::Clock* clock,
          MonitorOptions options);
  ~Monitor();
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Called after each poll's read (the scheduler samples its models and
  // retries the starts waiting for memory).
  void set_on_poll(std::function<void()> fn) { on_poll_ = std::move(fn); }
  // Called after on_poll (the manager tells its watchers of the GPUs).
  void set_after_poll(std::function<void()> fn) { after_poll_ = std::move(fn); }

  // Reads NVML unless the snapshot is younger than `max_age`.
  void Refresh(absl::Duration max_age = absl::Milliseconds(50));
  const GpuSnapshot& snapshot() const { return snapshot_; }
  // The GPUs as admission sees them: the driver waits applied.
  std::vector<GpuState> Gpus();

  // What the process group led by `pid` uses, per GPU (last snapshot).
  std::map<int, uint64_t> UsedBy(int pid);

  // The measured footprint of `id` running `command` (0: none yet).
  uint64_t Measured(const std::string& id, const std::string& command) const;
  // The GPUs its measured footprint was taken on ({}: none).
  std::vector<int> MeasuredGpus(const std::string& id,
                                const std::string& command) const;
  // Where `id` was placed at its start ({} when never, or once stopped).
  std::vector<int> Placed(const std::string& id) const;
  void Place(const std::string& id, std::vector<int> gpus);
  // Its last measured start time (zero: unknown).
  absl::Duration StartTime(const std::string& id) const;

  // A READY model's processes, sampled each poll: the peak is its measured
  // footprint (persisted when it grows by 1 % or more). Returns what they
  // use now (busiest GPU; 0: nothing attributed).
  uint64_t Sample(const std::string& id, const std::string& command, int pid);
  void OnStarted(const std::string& id, const std::string& command,
                 absl::Duration took);
  // A model's process group (led by `group`) is gone: its memory on each
  // GPU (what it used at the last snapshot, at least its placed footprint)
  // should come back. Until NVML lists none of the group's processes and
  // shows 90 % of it back, or `wait` is over, starts on that GPU wait; past
  // the bound the GPU is untrusted until the memory reappears, or for 30 s
  // more, after which it is taken as lost (counted as used).
  void OnStopped(const std::string& id, int group, uint64_t footprint,
                 absl::Duration wait);

  // The API's view of `id`.
  ModelMemory MemoryOf(const std::string& id, const std::string& command,
                       int pid);
  // Times a driver wait ran past its bound, per GPU (metrics).
  const std::map<int, uint64_t>& wait_timeouts() const {
    return wait_timeouts_;
  }
  bool Trusted(int gpu) const;
  void Log(const std::string& level, const std::string& line);

 private:
  struct Record {
    std::string command;
    uint64_t peak = 0;
    std::vector<int> gpus;
    absl::Duration start_time;
    uint64_t saved_peak = 0;
  };
  struct Release {
    int gpu;
    int group;  // The stopped model's process group.
    uint64_t bytes;
    uint64_t other_before;  // Unattributed memory before the stop.
    absl::Time since;       // The stop.
    absl::Time deadline;
    absl::Time give_up;
    bool timed_out = false;
  };
  // The driver waits, after a read (`fresh`) or a failed one.
  void CheckReleases(absl::Time now, bool fresh);
  // A process of `group` is listed on `gpu` (last snapshot).
  bool GroupListed(int group, int gpu) const;
  void Arm();
  void Load();
  void Save();
  // NVML's used less what the processes it lists use: memory of processes
  // gone (the driver's lag) and the driver's own.
  uint64_t Other(int gpu) const;

  std::unique_ptr<GpuSource> source_;
  actor::Clock* clock_;
  MonitorOptions options_;
  std::function<void()> on_poll_;
  std::function<void()> after_poll_;
  GpuSnapshot snapshot_;
  absl::Time read_at_ = absl::InfinitePast();
  std::unique_ptr<actor::Timer> timer_;
  std::map<std::string, Record> records_;
  std::map<std::string, std::vector<int>> placed_;
  // Process group of each process NVML lists (pid -> pgid), this snapshot.
  std::map<int, int> groups_;
  // What each model's processes used per GPU when last seen (for the
  // driver wait after its stop).
  std::map<std::string, std::map<int, uint64_t>> last_used_;
  // Memory no listed process holds, per GPU, in the previous snapshot.
  std::map<int, uint64_t> other_before_;
  std::vector<Release> releases_;
  std::map<int, uint64_t> wait_timeouts_;
  std::string read_error_;
};

}  // namespace modelplane::gpu

#endif  // MODELPLANE_SERVER_CORE_GPU_MONITOR_H_
