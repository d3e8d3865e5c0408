// What modelmanager's /metrics says (--metrics-listen): per model its
// state, starts, stops by cause, failures by reason, a start-duration
// histogram, evictions and swaps, its queue and lease holders; the Watch
// clients and the reloads. Fed by every model change the scheduler emits
// (Manager::OnChange: each one, in order; not the Watch stream, which a
// slow watcher sees coalesced) and the scheduler's counters. Loop thread.
#ifndef MODELPLANE_SERVER_METRICS_MANAGER_METRICS_H_
#define MODELPLANE_SERVER_METRICS_MANAGER_METRICS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "server/core/scheduler/scheduler.h"

namespace modelplane::metrics {

class ManagerMetrics {
 public:
  // A model's change; `stop_cause`, for a stop that began with it
  // (Scheduler::TakeStopCause), asked for only then.
  void OnChange(const scheduler::ModelChange& change,
                const std::function<std::string()>& stop_cause);
  // A config reload, applied or rejected.
  void OnReload(bool ok) { ++(ok ? reloads_ok_ : reloads_failed_); }

  // Prometheus text: the counters, and what `models` (the scheduler's list
  // now), `counters` and `watchers` say.
  std::string Render(const std::vector<scheduler::ModelView>& models,
                     const scheduler::SchedulerCounters& counters,
                     size_t watchers) const;

  // The GPU memory families (docs/gpu.md), when the manager has NVML: each
  // GPU's total and used memory, whether it is trusted, the driver waits
  // past their bound; each model's footprint and use.
  static std::string RenderGpu(const std::vector<gpu::GpuState>& gpus,
                               const std::map<int, uint64_t>& wait_timeouts,
                               const std::vector<scheduler::ModelView>& models);

  // Start durations' buckets, in seconds.
  static constexpr std::array<double, 12> kStartBuckets = {
      0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600};

 private:
  struct StartDurations {
    std::array<uint64_t, kStartBuckets.size()> buckets{};
    uint64_t count = 0;
    double sum = 0;
  };
  std::map<std::string, actor::State> state_;
  std::map<std::string, absl::Time> starting_since_;
  std::map<std::string, uint64_t> starts_;
  std::map<std::pair<std::string, std::string>, uint64_t> stops_;
  std::map<std::pair<std::string, std::string>, uint64_t> failures_;
  std::map<std::string, StartDurations> start_durations_;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
};

}  // namespace modelplane::metrics

#endif  // MODELPLANE_SERVER_METRICS_MANAGER_METRICS_H_
