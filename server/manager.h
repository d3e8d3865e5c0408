// The running control plane, without its gRPC skin: the actor loop, the
// scheduler on it, the change feed, and config reloads. The gRPC service
// (server/rpc) and the modelmanager binary are thin layers over it.
//
//   Manager m(config, "config.yaml", {});
//   m.loop().Post([&] { m.scheduler().Start("qwen", done); });
//   m.Shutdown(absl::Seconds(30));  // Stops every model.
//
// Thread-safety: scheduler() only on the loop thread; hub(), Reload(),
// Shutdown() and the accessors from any thread.
#ifndef MODELPLANE_SERVER_MANAGER_H_
#define MODELPLANE_SERVER_MANAGER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/config/config.h"
#include "server/core/config/diff.h"
#include "server/core/config/loader.h"
#include "server/core/gpu/monitor.h"
#include "server/core/gpu/nvml.h"
#include "server/core/scheduler/scheduler.h"
#include "server/core/watch/watch_hub.h"
#include "server/metrics/manager_metrics.h"
#include "server/runtime/actor_host.h"

namespace modelplane {

struct ManagerOptions {
  scheduler::SchedulerOptions scheduler;
  // Called on the loop thread when a model becomes READY or stops being so
  // (the health service's `model/<id>`).
  std::function<void(const std::string& model, bool ready)> on_readiness;
  // Where the manager's own log lines go, with their level ("debug" for
  // the lines models print, "info" for events).
  std::function<void(const std::string& level, const std::string& line)> on_log;
  // Send each line models print to on_log, at this level. Off unless the
  // log level or the config's logToStdout wants them: a chatty model should
  // cost nothing.
  bool forward_model_output = false;
  std::string model_output_level = "debug";
  // Reloads read the config path given to the Manager and the *.yml/*.yaml
  // files of this directory (config::LoadConfigSources); may be empty.
  std::string config_dir;
  // GPU memory scheduling (docs/gpu.md): NVML is looked for (by this
  // library name) unless `gpu` is false; measured footprints are kept in
  // `gpu_state_file` ("": in memory only).
  bool gpu = true;
  std::string nvml_library = gpu::kNvmlLibrary;
  std::string gpu_state_file;
};

struct ReloadResult {
  config::ConfigDiff diff;
  std::vector<config::Diagnostic> warnings;
  uint64_t revision = 0;
};

class Manager {
 public:
  Manager(std::shared_ptr<const config::Config> config, std::string config_path,
          ManagerOptions options);
  // Shuts down (if not done yet) and stops the loop.
  ~Manager();
  Manager(const Manager&) = delete;
  Manager& operator=(const Manager&) = delete;

  LoopThread& loop() { return host_.loop(); }
  // Whether models run in cgroups of their own (ProcessLauncher).
  const std::string& isolation() const { return host_.isolation(); }
  scheduler::Scheduler& scheduler() { return *scheduler_; }
  watch::WatchHub& hub() { return hub_; }
  // Every GPU's memory as admission sees it ({} without NVML). Loop thread.
  std::vector<watch::GpuReport> GpuReports();

  // Starts hooks.on_startup.preload models through the scheduler.
  void Preload();

  // Re-reads the config file and applies it, on the loop thread (so
  // reloads are serialized); an invalid file changes nothing (the status
  // holds its errors). `done` runs on the loop thread.
  void Reload(std::function<void(absl::StatusOr<ReloadResult>)> done);

  // Drains (no model starts here) or ends the drain: the scheduler's, a
  // settings event to the watchers that asked, a log line. Loop thread.
  void SetDraining(bool draining);

  // modelmanager's /metrics (--metrics-listen), rendered on the loop;
  // any thread but the loop's (it waits for the loop).
  std::string RenderMetrics();

  // The manager's own log (StreamLogs "manager"): one line per event.
  const std::shared_ptr<logs::LogBuffer>& log() const { return log_; }
  // Any thread.
  // A line in the manager's log (StreamLogs "manager") and on_log: at info,
  // or at `level` ("warn" for a rejected reload, "error" for a failure).
  void Log(const std::string& line);
  void Log(const std::string& level, const std::string& line);

  // Health goes NOT_SERVING first (the caller's job); this refuses new work,
  // stops every model in parallel and waits for them, at most `budget`
  // (then the supervisors kill what is left when the launcher goes).
  void Shutdown(absl::Duration budget);
  bool shutting_down() const;

 private:
  void OnChange(const scheduler::ModelChange& change);
  // Absorbs the gate's grants every kAbsorbEvery (loop thread).
  void ArmAbsorb();

  std::string config_path_;
  ManagerOptions options_;
  runtime::ActorHost host_;
  std::unique_ptr<gpu::Monitor> gpu_;  // Null: no NVML. Loop thread.
  // What Watch's TYPE_GPUS said last; a poll that moved memory enough tells
  // it again (PublishGpus). Loop thread.
  std::vector<watch::GpuReport> gpus_told_;
  void PublishGpus(bool always);
  std::unique_ptr<scheduler::Scheduler> scheduler_;
  std::unique_ptr<actor::Timer> absorb_timer_;  // Loop thread.
  watch::WatchHub hub_;
  std::shared_ptr<logs::LogBuffer> log_;
  std::map<std::string, actor::State> last_state_;  // Loop thread: for logs.
  metrics::ManagerMetrics metrics_;                 // Loop thread.
  mutable absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace modelplane

#endif  // MODELPLANE_SERVER_MANAGER_H_
