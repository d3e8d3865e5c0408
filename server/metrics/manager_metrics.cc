#include "server/metrics/manager_metrics.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace modelplane::metrics {
namespace {

// A label value, escaped as the text format wants.
std::string Label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

// Bounds as written ("0.1", not 0.1's nearest double); sums exact enough.
std::string Bound(double v) { return absl::StrFormat("%g", v); }
std::string Num(double v) { return absl::StrFormat("%.9g", v); }

constexpr actor::State kStates[] = {
    actor::State::kStopped,  actor::State::kStarting, actor::State::kReady,
    actor::State::kStopping, actor::State::kFailed,   actor::State::kShutdown,
    actor::State::kSleeping};

}  // namespace

void ManagerMetrics::OnChange(const scheduler::ModelChange& change,
                              const std::function<std::string()>& stop_cause) {
  const std::string& id = change.view.config->id;
  const actor::ModelStatus& st = change.view.status;
  if (change.kind == scheduler::ModelChange::Kind::kDeleted) {
    // Its counters stay (they only grow); its state goes.
    state_.erase(id);
    starting_since_.erase(id);
    return;
  }
  auto [it, added] = state_.emplace(id, st.state);
  actor::State was = added ? actor::State::kStopped : it->second;
  it->second = st.state;
  if (st.state == was) return;
  switch (st.state) {
    case actor::State::kStarting:
      ++starts_[id];
      starting_since_[id] = st.state_since;
      break;
    case actor::State::kReady: {
      auto since = starting_since_.find(id);
      if (since != starting_since_.end()) {
        double s = absl::ToDoubleSeconds(st.state_since - since->second);
        StartDurations& d = start_durations_[id];
        for (size_t i = 0; i < kStartBuckets.size(); ++i) {
          if (s <= kStartBuckets[i]) ++d.buckets[i];
        }
        ++d.count;
        d.sum += s;
        starting_since_.erase(since);
      }
      break;
    }
    case actor::State::kStopping:
      ++stops_[{id, stop_cause()}];
      starting_since_.erase(id);
      break;
    case actor::State::kFailed:
      ++failures_[{id,
                   absl::AsciiStrToLower(
                       st.failure ? actor::FailureReasonName(st.failure->reason)
                                  : "unknown")}];
      starting_since_.erase(id);
      break;
    default:
      break;
  }
}

std::string ManagerMetrics::Render(
    const std::vector<scheduler::ModelView>& models,
    const scheduler::SchedulerCounters& counters, size_t watchers) const {
  std::string out;
  auto family = [&out](const char* name, const char* type, const char* help) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ",
                    type, "\n");
  };
  family("modelmanager_model_state", "gauge",
         "1 for the state each model is in, 0 for the others.");
  for (const scheduler::ModelView& m : models) {
    for (actor::State s : kStates) {
      absl::StrAppend(&out, "modelmanager_model_state{model=\"",
                      Label(m.config->id), "\",state=\"",
                      absl::AsciiStrToLower(actor::StateName(s)), "\"} ",
                      m.status.state == s ? 1 : 0, "\n");
    }
  }
  family("modelmanager_model_queued_requests", "gauge",
         "ACQUIREs and Starts waiting for the model.");
  for (const scheduler::ModelView& m : models) {
    absl::StrAppend(&out, "modelmanager_model_queued_requests{model=\"",
                    Label(m.config->id), "\"} ", m.queued, "\n");
  }
  family("modelmanager_model_lease_holders", "gauge",
         "Leases held on the model, revoked ones included.");
  for (const scheduler::ModelView& m : models) {
    absl::StrAppend(&out, "modelmanager_model_lease_holders{model=\"",
                    Label(m.config->id), "\"} ", m.leases.size(), "\n");
  }
  family("modelmanager_model_starts_total", "counter",
         "Starts of the model (each time it became STARTING).");
  for (const auto& [id, n] : starts_) {
    absl::StrAppend(&out, "modelmanager_model_starts_total{model=\"", Label(id),
                    "\"} ", n, "\n");
  }
  family("modelmanager_model_stops_total", "counter",
         "Stops of the model by cause: swap, requested, reload, shutdown, "
         "ttl.");
  for (const auto& [key, n] : stops_) {
    absl::StrAppend(&out, "modelmanager_model_stops_total{model=\"",
                    Label(key.first), "\",cause=\"", key.second, "\"} ", n,
                    "\n");
  }
  family("modelmanager_model_failures_total", "counter",
         "Failed starts and crashes of the model, by reason.");
  for (const auto& [key, n] : failures_) {
    absl::StrAppend(&out, "modelmanager_model_failures_total{model=\"",
                    Label(key.first), "\",reason=\"", key.second, "\"} ", n,
                    "\n");
  }
  family("modelmanager_model_start_duration_seconds", "histogram",
         "From STARTING to READY.");
  for (const auto& [id, d] : start_durations_) {
    std::string model = Label(id);
    for (size_t i = 0; i < kStartBuckets.size(); ++i) {
      absl::StrAppend(&out,
                      "modelmanager_model_start_duration_seconds_bucket{model="
                      "\"",
                      model, "\",le=\"", Bound(kStartBuckets[i]), "\"} ",
                      d.buckets[i], "\n");
    }
    absl::StrAppend(&out,
                    "modelmanager_model_start_duration_seconds_bucket{model=\"",
                    model, "\",le=\"+Inf\"} ", d.count, "\n",
                    "modelmanager_model_start_duration_seconds_sum{model=\"",
                    model, "\"} ", Num(d.sum), "\n",
                    "modelmanager_model_start_duration_seconds_count{model=\"",
                    model, "\"} ", d.count, "\n");
  }
  family("modelmanager_model_evictions_total", "counter",
         "Times the model was evicted to start another.");
  for (const auto& [id, n] : counters.evictions) {
    absl::StrAppend(&out, "modelmanager_model_evictions_total{model=\"",
                    Label(id), "\"} ", n, "\n");
  }
  family("modelmanager_model_swaps_total", "counter",
         "Evictions begun to start the model (one per model evicted).");
  for (const auto& [id, n] : counters.swaps) {
    absl::StrAppend(&out, "modelmanager_model_swaps_total{model=\"", Label(id),
                    "\"} ", n, "\n");
  }
  family("modelmanager_watch_clients", "gauge", "Watch streams open.");
  absl::StrAppend(&out, "modelmanager_watch_clients ", watchers, "\n");
  family("modelmanager_reloads_total", "counter",
         "Config reloads, applied (ok) or rejected (error).");
  absl::StrAppend(
      &out, "modelmanager_reloads_total{result=\"ok\"} ", reloads_ok_,
      "\nmodelmanager_reloads_total{result=\"error\"} ", reloads_failed_, "\n");
  return out;
}

std::string ManagerMetrics::RenderGpu(
    const std::vector<gpu::GpuState>& gpus,
    const std::map<int, uint64_t>& wait_timeouts,
    const std::vector<scheduler::ModelView>& models) {
  std::string out;
  auto family = [&out](const char* name, const char* type, const char* help) {
    absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ",
                    type, "\n");
  };
  family("modelmanager_gpu_memory_total_bytes", "gauge",
         "Each GPU's memory, as NVML reports it.");
  for (const gpu::GpuState& g : gpus) {
    absl::StrAppend(&out, "modelmanager_gpu_memory_total_bytes{gpu=\"", g.index,
                    "\"} ", g.total, "\n");
  }
  family("modelmanager_gpu_memory_used_bytes", "gauge",
         "Each GPU's memory in use (every process), as NVML reports it.");
  for (const gpu::GpuState& g : gpus) {
    absl::StrAppend(&out, "modelmanager_gpu_memory_used_bytes{gpu=\"", g.index,
                    "\"} ", g.used, "\n");
  }
  family("modelmanager_gpu_trusted", "gauge",
         "0 while a stopped model's memory has not come back past "
         "gpu.memoryWaitTimeout (no start is admitted there), else 1.");
  for (const gpu::GpuState& g : gpus) {
    absl::StrAppend(&out, "modelmanager_gpu_trusted{gpu=\"", g.index, "\"} ",
                    g.trusted ? 1 : 0, "\n");
  }
  family("modelmanager_gpu_memory_wait_timeouts_total", "counter",
         "Waits for the driver to give a stopped model's memory back that "
         "ran past gpu.memoryWaitTimeout.");
  for (const gpu::GpuState& g : gpus) {
    auto it = wait_timeouts.find(g.index);
    absl::StrAppend(&out, "modelmanager_gpu_memory_wait_timeouts_total{gpu=\"",
                    g.index, "\"} ", it == wait_timeouts.end() ? 0 : it->second,
                    "\n");
  }
  family("modelmanager_model_vram_footprint_bytes", "gauge",
         "The GPU memory the scheduler charges the model per GPU: declared "
         "or measured (0: neither).");
  for (const scheduler::ModelView& m : models) {
    absl::StrAppend(&out, "modelmanager_model_vram_footprint_bytes{model=\"",
                    Label(m.config->id), "\"} ", m.footprint, "\n");
  }
  family("modelmanager_model_vram_used_bytes", "gauge",
         "The GPU memory the model's processes use now (busiest GPU).");
  for (const scheduler::ModelView& m : models) {
    absl::StrAppend(&out, "modelmanager_model_vram_used_bytes{model=\"",
                    Label(m.config->id), "\"} ", m.memory.used, "\n");
  }
  return out;
}

}  // namespace modelplane::metrics
