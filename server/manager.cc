#include "server/manager.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace modelplane {

Manager::Manager(std::shared_ptr<const config::Config> config,
                 std::string config_path, ManagerOptions options)
    : config_path_(std::move(config_path)),
      options_(std::move(options)),
      log_(std::make_shared<logs::LogBuffer>()) {
  if (options_.on_log && options_.forward_model_output) {
    options_.scheduler.on_model_line = [this](const std::string& model,
                                              absl::string_view line) {
      options_.on_log(options_.model_output_level,
                      absl::StrCat("[", model, "] ", line));
    };
  }
  loop().RunSync([&] {
    host_.set_warn([this](const std::string& line) { Log("warn", line); });
    // Revisions start above any earlier manager's on this host (the proto's
    // promise that a stale revision is always detected).
    *host_.revisions() = static_cast<uint64_t>(absl::ToUnixMicros(absl::Now()));
    if (options_.gpu) {
      absl::StatusOr<std::unique_ptr<gpu::GpuSource>> nvml =
          gpu::OpenNvml(options_.nvml_library);
      // NVML that loads but cannot be read, or sees no GPU, schedules
      // nothing: every footprint would be refused.
      absl::StatusOr<gpu::GpuSnapshot> first =
          nvml.ok() ? (*nvml)->Read() : nvml.status();
      if (first.ok() && first->gpus.empty()) {
        first = absl::NotFoundError("NVML found no GPU");
      }
      if (nvml.ok() && !first.ok()) {
        Log(absl::StrCat("GPU memory scheduling off (",
                         first.status().message(), ")"));
      } else if (nvml.ok()) {
        gpu::MonitorOptions go;
        go.state_file = options_.gpu_state_file;
        go.log = [this](const std::string& level, const std::string& line) {
          Log(level, line);
        };
        gpu_ = std::make_unique<gpu::Monitor>(*std::move(nvml),
                                              host_.env().clock, go);
        options_.scheduler.gpu = gpu_.get();
      } else {
        Log(absl::StrCat("GPU memory scheduling off (no NVML: ",
                         nvml.status().message(), ")"));
      }
    }
    scheduler_ = std::make_unique<scheduler::Scheduler>(
        std::move(config), host_.env(), host_.revisions(),
        [this](const scheduler::ModelChange& c) { OnChange(c); },
        options_.scheduler);
    // Leases the gate took on gRPC threads reach the scheduler's tables on
    // the loop: every kAbsorbEvery, and at once for a release a swap may be
    // waiting for.
    scheduler_->gate().set_wake([this] {
      loop().Post([this] {
        if (scheduler_ != nullptr) scheduler_->Absorb();
      });
    });
    ArmAbsorb();
    for (const scheduler::ModelView& v : scheduler_->List()) {
      hub_.Publish(
          scheduler::ModelChange{scheduler::ModelChange::Kind::kAdded, v});
    }
    hub_.PublishSettings(scheduler_->config());
    if (gpu_ != nullptr) {
      gpu_->set_after_poll([this] { PublishGpus(false); });
      PublishGpus(true);
    }
  });
}

std::vector<watch::GpuReport> Manager::GpuReports() {
  std::vector<watch::GpuReport> out;
  if (gpu_ == nullptr) return out;
  for (const gpu::GpuState& s : gpu_->Gpus()) {
    watch::GpuReport r;
    r.index = s.index;
    for (const gpu::GpuInfo& info : gpu_->snapshot().gpus) {
      if (info.index != s.index) continue;
      r.name = info.name;
      r.uuid = info.uuid;
    }
    r.total_bytes = s.total;
    r.used_bytes = s.used;
    r.trusted = s.trusted;
    out.push_back(std::move(r));
  }
  return out;
}

void Manager::PublishGpus(bool always) {
  std::vector<watch::GpuReport> now = GpuReports();
  bool moved = always || now.size() != gpus_told_.size();
  for (size_t i = 0; !moved && i < now.size(); ++i) {
    const watch::GpuReport& a = now[i];
    const watch::GpuReport& b = gpus_told_[i];
    // Used memory moves a little all the time: told when it moved by
    // 64 MiB or 1 % of the total, whichever is more.
    uint64_t step = std::max<uint64_t>(64 * gpu::kMiB, a.total_bytes / 100);
    uint64_t delta = a.used_bytes > b.used_bytes ? a.used_bytes - b.used_bytes
                                                 : b.used_bytes - a.used_bytes;
    moved = a.index != b.index || a.uuid != b.uuid ||
            a.total_bytes != b.total_bytes || a.trusted != b.trusted ||
            delta >= step;
  }
  if (!moved) return;
  gpus_told_ = now;
  hub_.PublishGpus(std::move(now));
}

Manager::~Manager() {
  Shutdown(absl::Seconds(10));
  loop().RunSync([&] {
    absorb_timer_.reset();
    scheduler_.reset();
    gpu_.reset();
    host_.set_warn(nullptr);  // The log goes before the host.
  });
}

void Manager::ArmAbsorb() {
  // Lease counts in Watch and ListModels lag the gate's grants by at most
  // this; nothing that decides (evictions, TTLs) waits for it.
  constexpr absl::Duration kAbsorbEvery = absl::Milliseconds(20);
  absorb_timer_ = host_.env().clock->After(kAbsorbEvery, [this] {
    scheduler_->Absorb();
    ArmAbsorb();
  });
}

void Manager::OnChange(const scheduler::ModelChange& change) {
  hub_.Publish(change);
  metrics_.OnChange(change, [this, &change] {
    return scheduler_->TakeStopCause(change.view.config->id);
  });
  if (options_.on_readiness) {
    bool ready = change.kind != scheduler::ModelChange::Kind::kDeleted &&
                 change.view.status.state == actor::State::kReady;
    options_.on_readiness(change.view.config->id, ready);
  }
  const actor::ModelStatus& st = change.view.status;
  if (change.kind != scheduler::ModelChange::Kind::kModified) {
    Log(absl::StrCat("model ", change.view.config->id, " ",
                     change.kind == scheduler::ModelChange::Kind::kAdded
                         ? "added"
                         : "removed"));
  } else if (st.state != last_state_[change.view.config->id]) {
    last_state_[change.view.config->id] = st.state;
    // A failure is where an operator looks first: at error, not info.
    Log(st.state == actor::State::kFailed ? "error" : "info",
        absl::StrCat(
            "model ", change.view.config->id, " ", actor::StateName(st.state),
            st.pid != 0 ? absl::StrCat(" pid ", st.pid) : "",
            st.failure ? absl::StrCat(
                             " ", actor::FailureReasonName(st.failure->reason),
                             ": ", st.failure->Summary())
                       : ""));
  }
}

std::string Manager::RenderMetrics() {
  std::string out;
  loop().RunSync([this, &out] {
    std::vector<scheduler::ModelView> models = scheduler_->List();
    out = metrics_.Render(models, scheduler_->counters(), hub_.watchers());
    if (gpu_ != nullptr) {
      gpu_->Refresh();
      out += metrics::ManagerMetrics::RenderGpu(gpu_->Gpus(),
                                                gpu_->wait_timeouts(), models);
    }
  });
  return out;
}

void Manager::Preload() {
  loop().Post([this] {
    for (const std::string& id : scheduler_->config()->preload) {
      scheduler_->Start(id, [this, id](absl::StatusOr<scheduler::ModelView> v) {
        Log(v.ok() ? "info" : "error",
            v.ok() ? absl::StrCat("preloaded ", id)
                   : absl::StrCat("preload of ", id,
                                  " failed: ", v.status().message()));
      });
    }
  });
}

void Manager::Reload(std::function<void(absl::StatusOr<ReloadResult>)> done) {
  loop().Post([this, done = std::move(done)] {
    if (scheduler_->shutting_down()) {
      done(absl::UnavailableError("the manager is shutting down"));
      return;
    }
    // A config file is small: reading it here keeps reloads in order.
    config::PortHints ports = config::PortHints::Of(*scheduler_->config());
    config::LoadResult loaded = config::LoadConfigSources(
        config_path_, options_.config_dir, config::ProcessEnv(), &ports);
    for (const config::Diagnostic& w : loaded.warnings) {
      Log("warn", "config warning: " + w.ToString());
    }
    if (!loaded.ok()) {
      Log("error", "reload rejected, the old config stays in force: " +
                       std::string(loaded.status().message()));
      // The warnings too: the caller sees everything the file has wrong.
      std::string message(loaded.status().message());
      for (const config::Diagnostic& w : loaded.warnings) {
        absl::StrAppend(&message, "\nwarning: ", w.ToString());
      }
      metrics_.OnReload(false);
      done(absl::InvalidArgumentError(message));
      return;
    }
    metrics_.OnReload(true);
    ReloadResult result;
    result.warnings = loaded.warnings;
    result.diff = scheduler_->Reload(loaded.config);
    // Settings outside the models (API keys...): a SETTINGS event to the
    // watchers that asked (after the reload's model events), and a bookmark
    // for all, which tells the others to list again.
    if (result.diff.globals_changed) {
      hub_.PublishSettings(scheduler_->config());
      hub_.PublishBookmark();
    }
    result.revision = hub_.revision();
    Log(absl::StrCat(
        "reloaded ", config_path_.empty() ? options_.config_dir : config_path_,
        ": ", result.diff.added.size(), " added, ", result.diff.removed.size(),
        " removed, ", result.diff.restart.size(), " to restart, ",
        result.diff.update.size(), " updated"));
    for (const auto& [id, why] : result.diff.restart_reasons) {
      Log(absl::StrCat("model ", id, " restarts: ", why));
    }
    done(std::move(result));
  });
}

void Manager::Log(const std::string& line) { Log("info", line); }

void Manager::Log(const std::string& level, const std::string& line) {
  std::string stamped =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ ", absl::Now(),
                                    absl::UTCTimeZone()),
                   level == "info" ? "" : absl::StrCat(level, " "), line, "\n");
  log_->Append(stamped);
  if (options_.on_log) options_.on_log(level, line);
}

void Manager::SetDraining(bool draining) {
  if (scheduler_->draining() == draining) return;
  scheduler_->SetDraining(draining);
  hub_.PublishDraining(draining);
  Log(draining ? "draining: no model starts here until the drain ends"
               : "the drain ended: models start here again");
}

void Manager::Shutdown(absl::Duration budget) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  auto done = std::make_shared<absl::Notification>();
  loop().Post([this, done] {
    SetDraining(true);  // Data planes see it before the models go.
    scheduler_->Shutdown([done] { done->Notify(); });
  });
  if (!done->WaitForNotificationWithTimeout(budget)) {
    Log("warn", "shutdown budget spent; the supervisors kill what is left");
  }
  // Followers of the manager's own log end too (UNAVAILABLE).
  log()->Close(absl::UnavailableError("the manager is shutting down"));
}

bool Manager::shutting_down() const {
  absl::MutexLock lock(&mu_);
  return shut_down_;
}

}  // namespace modelplane
