// GPU memory as one more rule of the queue's pass (docs/gpu.md): a start
// whose footprint is known is admitted where it fits, idle models are
// evicted to make it fit, and it waits while memory comes free.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/core/scheduler/scheduler.h"
#include "server/core/scheduler/scheduler_internal.h"

namespace modelplane::scheduler {

using actor::State;

std::string FootprintKey(const config::ModelConfig& c) {
  std::string line = absl::StrJoin(c.argv, " ");
  if (c.port <= 0) return line;
  // The port as the macro it came from: ports are given in the order of
  // the models' ids, so a model added with an id before this one moves it,
  // and its footprint does not change with it. Whole numbers only (digits on
  // neither side).
  const std::string port = absl::StrCat(c.port);
  std::string out;
  size_t i = 0;
  while (i < line.size()) {
    size_t at = line.find(port, i);
    if (at == std::string::npos) break;
    bool whole = (at == 0 || !absl::ascii_isdigit(line[at - 1])) &&
                 (at + port.size() == line.size() ||
                  !absl::ascii_isdigit(line[at + port.size()]));
    out.append(line, i, at - i);
    out.append(whole ? "${PORT}" : port);
    i = at + port.size();
  }
  out.append(line, i, std::string::npos);
  return out;
}

namespace {

constexpr absl::Duration kMemoryRetry = absl::Milliseconds(100);

// What CUDA, PyTorch, llama.cpp and vLLM print when an allocation fails.
bool SaysOutOfMemory(const std::vector<std::string>& lines) {
  for (const std::string& l : lines) {
    std::string lower = absl::AsciiStrToLower(l);
    if (absl::StrContains(lower, "out of memory") ||
        absl::StrContains(lower, "cuda_error_out_of_memory") ||
        absl::StrContains(lower, "cudaerrormemoryallocation") ||
        absl::StrContains(lower, "outofmemoryerror") ||
        absl::StrContains(lower, "failed to allocate")) {
      return true;
    }
  }
  return false;
}

}  // namespace

uint64_t Scheduler::FootprintOf(const Slot& s) const {
  if (options_.gpu == nullptr) return 0;
  const config::ModelConfig& c = *s.config;
  if (c.resources.vram_mib > 0) {
    return static_cast<uint64_t>(c.resources.vram_mib) * gpu::kMiB;
  }
  uint64_t measured = options_.gpu->Measured(c.id, FootprintKey(c));
  // A measured peak larger than any GPU here (a state file from another
  // machine, a card swapped) is no footprint: it would refuse every start.
  uint64_t largest = 0;
  for (const gpu::GpuInfo& g : options_.gpu->snapshot().gpus) {
    largest = std::max(largest, g.total_bytes);
  }
  return measured <= largest ? measured : 0;
}

bool Scheduler::MemoryManaged(const Slot& s) const {
  return FootprintOf(s) > 0;
}

bool Scheduler::MemoryExempt(const Slot& target, const Slot& running) const {
  if (options_.gpu == nullptr || config_->matrix) return false;
  const config::ModelConfig& t = *target.config;
  const config::ModelConfig& r = *running.config;
  // Both footprints known: a first start of a model not yet measured goes
  // alone, as the implicit group says, and is measured.
  return t.resources.set && r.resources.set &&
         t.group == config::kDefaultGroup && r.group == config::kDefaultGroup &&
         FootprintOf(target) > 0 && FootprintOf(running) > 0;
}

gpu::Decision Scheduler::MemoryFor(const Slot& s,
                                   const std::set<std::string>& starting,
                                   const std::set<std::string>& busy,
                                   bool overdue) {
  gpu::Monitor& g = *options_.gpu;
  g.Refresh();
  std::vector<gpu::Resident> residents;
  for (auto& [id, v] : slots_) {
    if (v.get() == &s) continue;
    bool decided = starting.count(id) != 0;
    if (!Running(*v) && !decided) continue;
    const actor::ModelStatus& st = v->actor->status();
    gpu::Resident r;
    r.id = id;
    if (v->closed() || st.state == State::kStopping) {
      r.kind = gpu::Resident::Kind::kLeaving;
    } else if (st.state == State::kReady && v->holders.empty() && !decided &&
               busy.count(id) == 0) {
      r.kind = gpu::Resident::Kind::kIdle;
    } else {
      r.kind = gpu::Resident::Kind::kBusy;
      // Held by its lease holders alone: an overdue start revokes them.
      r.revocable = st.state == State::kReady && !decided &&
                    busy.count(id) == 0 && !v->holders.empty();
    }
    r.used = g.UsedBy(st.pid);
    r.gpus = g.Placed(id);
    if (r.gpus.empty()) r.gpus = g.MeasuredGpus(id, FootprintKey(*v->config));
    for (const auto& [index, bytes] : r.used) {
      if (std::find(r.gpus.begin(), r.gpus.end(), index) == r.gpus.end()) {
        r.gpus.push_back(index);
      }
    }
    // Asleep: charged what its processes still hold; evicted (stopped)
    // for memory like an idle model, when that is not enough.
    bool asleep = st.state == State::kSleeping;
    if (asleep) r.kind = gpu::Resident::Kind::kIdle;
    r.asleep = asleep;
    r.footprint = asleep ? 0 : FootprintOf(*v);
    r.last_used = st.last_used;
    r.start_time = g.StartTime(id);
    residents.push_back(std::move(r));
  }
  for (const auto& r : retired_) {
    if (!Running(*r)) continue;
    gpu::Resident leaving;
    leaving.id = r->config->id;
    leaving.kind = gpu::Resident::Kind::kLeaving;
    leaving.used = g.UsedBy(r->actor->status().pid);
    for (const auto& [index, bytes] : leaving.used) {
      leaving.gpus.push_back(index);
    }
    residents.push_back(std::move(leaving));
  }
  gpu::Request request;
  request.id = s.config->id;
  request.footprint = FootprintOf(s);
  request.allowed = s.config->resources.gpus;
  request.count = s.config->resources.gpu_count;
  request.overdue = overdue;
  if (s.actor->status().state == State::kSleeping &&
      !g.Placed(s.config->id).empty()) {
    // Waking: its process stays on its GPUs.
    request.allowed = g.Placed(s.config->id);
    request.count = static_cast<int>(request.allowed.size());
  } else if (!s.config->resources.set) {
    // Not told where to go: it runs where it ran when it was measured.
    request.allowed = g.MeasuredGpus(s.config->id, FootprintKey(*s.config));
    request.count = std::max<int>(1, static_cast<int>(request.allowed.size()));
  }
  return gpu::Decide(g.Gpus(), residents, request,
                     config_->gpu_reserve_percent / 100.0);
}

void Scheduler::RetryForMemory() {
  if (memory_timer_ != nullptr) return;
  memory_timer_ = env_.clock->After(kMemoryRetry, [this] {
    memory_timer_.reset();
    Pump();
  });
}

void Scheduler::OnGpuPoll() {
  for (auto& [id, s] : slots_) {
    const actor::ModelStatus& st = s->actor->status();
    if (st.state != State::kReady) continue;
    const std::string key = FootprintKey(*s->config);
    uint64_t used = options_.gpu->Sample(id, key, st.pid);
    // Its measured footprint reaches watchers as it grows (while a model
    // warms up, then seldom): told when it moved by 64 MiB or 1 %.
    uint64_t measured = options_.gpu->Measured(id, key);
    uint64_t told = s->measured_told;
    uint64_t step = std::max<uint64_t>(64 * gpu::kMiB, told / 100);
    if (measured != told &&
        (told == 0 ||
         (measured > told ? measured - told : told - measured) >= step)) {
      s->measured_told = measured;
      Emit(*s, ModelChange::Kind::kModified);
    }
    // A model with `resources` whose processes NVML never shows (another
    // PID namespace, a process that left the model's group): its footprint
    // is charged beside what NVML counts as used. Said once per start.
    if (used == 0 && s->config->resources.set && !s->memory_unseen_said &&
        !options_.gpu->snapshot().processes.empty()) {
      s->memory_unseen_said = true;
      options_.gpu->Log(
          "warn", absl::StrCat("model ", id, " (pid ", st.pid,
                               "): NVML shows no GPU memory for its "
                               "processes; its footprint is charged on top"));
    }
  }
}

bool Scheduler::RetryAfterOom(Slot& s) {
  gpu::Monitor* g = options_.gpu;
  if (g == nullptr || s.oom_retried || shutting_down_) return false;
  const std::optional<actor::Failure>& f = s.actor->status().failure;
  if (!f || f->reason != actor::FailureReason::kExitedDuringStart ||
      !SaysOutOfMemory(f->last_lines)) {
    return false;
  }
  s.oom_retried = true;
  s.oom_victims.clear();
  Apply(gate_.TakeOps());  // Grants taken off the loop count as holders.
  g->Refresh(absl::ZeroDuration());
  // Its GPUs: where it was placed, else every one.
  std::vector<int> gpus = g->Placed(s.config->id);
  if (gpus.empty()) {
    for (const gpu::GpuInfo& info : g->snapshot().gpus) {
      gpus.push_back(info.index);
    }
  }
  for (auto& [id, v] : slots_) {
    if (v.get() == &s || v->closed() || !v->holders.empty() ||
        v->actor->status().state != State::kReady) {
      continue;
    }
    std::map<int, uint64_t> used = g->UsedBy(v->actor->status().pid);
    std::vector<int> on = g->Placed(id);
    bool there = std::any_of(gpus.begin(), gpus.end(), [&](int k) {
      return used.count(k) != 0 ||
             std::find(on.begin(), on.end(), k) != on.end();
    });
    if (!there) continue;
    CloseGate(*v);  // What the gate granted meanwhile is absorbed.
    if (!v->holders.empty()) continue;
    BeginEviction(*v, SlotPhase::kDraining,
                  absl::StrCat("evicted: ", s.config->id,
                               " ran out of GPU memory at start"),
                  "swap");
    ++counters_.evictions[id];
    ++counters_.swaps[s.config->id];
    s.oom_victims.push_back(id);
  }
  g->Log("warn",
         absl::StrCat(
             "model ", s.config->id, " ran out of GPU memory at start; ",
             s.oom_victims.empty()
                 ? std::string("nothing idle to evict")
                 : absl::StrCat("evicted ", absl::StrJoin(s.oom_victims, ", ")),
             "; trying once more"));
  SchedulePump();
  return true;
}

bool Scheduler::TakeIdle(const std::vector<std::string>& victims) {
  bool idle = true;
  for (const std::string& id : victims) {
    Slot* v = Find(id);
    if (v == nullptr) continue;
    CloseGate(*v);
    idle = idle && v->holders.empty();
  }
  return idle;
}

bool Scheduler::OomVictimsRunning(Slot& s) {
  // Each leaves the list when its process is gone (OnMemoryEvent), so a
  // victim started again meanwhile does not hold the retry.
  return !s.oom_victims.empty();
}

void Scheduler::OnMemoryEvent(Slot& s, const actor::StateEvent& e) {
  gpu::Monitor* g = options_.gpu;
  if (g == nullptr) return;
  // The pid arrives with the spawn, after STARTING began.
  if (e.status.pid != 0) s.gpu_pid = e.status.pid;
  if (e.old_state == e.new_state) return;
  const config::ModelConfig& c = *s.config;
  if (e.new_state == State::kStarting) {
    s.starting_since = e.status.state_since;
    s.memory_unseen_said = false;
  }
  if (e.new_state == State::kSleeping) {
    g->Refresh(absl::ZeroDuration());             // Its memory was just freed:
    g->Sample(c.id, FootprintKey(c), s.gpu_pid);  // what it holds asleep.
    SchedulePump();
  }
  if (e.new_state == State::kReady) {
    g->Refresh(absl::ZeroDuration());
    const std::string key = FootprintKey(c);
    g->Sample(c.id, key, e.status.pid);
    g->OnStarted(c.id, key, e.status.state_since - s.starting_since);
    // The READY event carries this figure: OnGpuPoll tells what follows.
    s.measured_told = g->Measured(c.id, key);
  }
  bool had_process =
      e.old_state == State::kStarting || e.old_state == State::kReady ||
      e.old_state == State::kStopping || e.old_state == State::kSleeping;
  bool gone = e.new_state == State::kStopped || e.new_state == State::kFailed ||
              e.new_state == State::kShutdown;
  if (had_process && gone) {
    // Asleep, it held what it was sampled holding then, not its footprint.
    g->OnStopped(c.id, s.gpu_pid,
                 e.old_state == State::kSleeping ? 0 : FootprintOf(s),
                 config_->gpu_memory_wait);
    SchedulePump();
  }
  if ((had_process && gone) || e.new_state == State::kSleeping) {
    // An OOM retry waits for its victims to be gone, or asleep.
    for (auto& [id, other] : slots_) {
      auto& list = other->oom_victims;
      list.erase(std::remove(list.begin(), list.end(), c.id), list.end());
    }
  }
}

}  // namespace modelplane::scheduler
