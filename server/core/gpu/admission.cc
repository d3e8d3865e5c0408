#include "server/core/gpu/admission.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace modelplane::gpu {
namespace {

bool On(const Resident& r, int gpu) {
  return std::find(r.gpus.begin(), r.gpus.end(), gpu) != r.gpus.end();
}

uint64_t UsedOn(const Resident& r, int gpu) {
  auto it = r.used.find(gpu);
  return it == r.used.end() ? 0 : it->second;
}

// What `r` holds on `gpu`, or will once it has allocated.
uint64_t Charge(const Resident& r, int gpu) {
  return std::max(On(r, gpu) ? r.footprint : 0, UsedOn(r, gpu));
}

int64_t Usable(const GpuState& g, double reserve) {
  return static_cast<int64_t>(static_cast<double>(g.total) * (1.0 - reserve));
}

std::string Mib(int64_t bytes) {
  return absl::StrCat(bytes / static_cast<int64_t>(1024 * 1024), " MiB");
}

// Where one GPU stands for the request, best first.
enum class Fit { kNow, kComing, kEvicting, kHeld };

struct Option {
  const GpuState* gpu;
  Fit fit = Fit::kHeld;
  int64_t available = 0;
  std::vector<const Resident*> victims;  // For kEvicting.
  std::vector<std::string> busy;         // Who holds it, for kHeld.
};

Option Consider(const GpuState& g, const std::vector<Resident>& residents,
                const Request& request, double reserve) {
  Option o;
  o.gpu = &g;
  o.available = Available(g, residents, reserve);
  int64_t need = static_cast<int64_t>(request.footprint);
  int64_t coming = static_cast<int64_t>(g.releasing);
  std::vector<const Resident*> idle;
  std::vector<const Resident*> held;  // Revocable, for an overdue request.
  for (const Resident& r : residents) {
    int64_t charge = static_cast<int64_t>(Charge(r, g.index));
    if (charge == 0) continue;
    if (r.kind == Resident::Kind::kLeaving) coming += charge;
    if (r.kind == Resident::Kind::kIdle) idle.push_back(&r);
    if (r.kind == Resident::Kind::kBusy) {
      o.busy.push_back(r.id);
      if (request.overdue && r.revocable) held.push_back(&r);
    }
  }
  if (o.available >= need && g.trusted && g.releasing == 0) {
    o.fit = Fit::kNow;
    return o;
  }
  if (!g.trusted) return o;  // Held until its memory reappears.
  if (o.available + coming >= need) {
    o.fit = Fit::kComing;
    return o;
  }
  // Cheapest first: awake before asleep (a sleeping model frees little and
  // wakes fast), least recently used, then the quickest to start again.
  auto cheaper = [](const Resident* a, const Resident* b) {
    return std::tie(a->asleep, a->last_used, a->start_time, a->id) <
           std::tie(b->asleep, b->last_used, b->start_time, b->id);
  };
  std::sort(idle.begin(), idle.end(), cheaper);
  // Overdue: the busy ones after every idle one, in the same order.
  std::sort(held.begin(), held.end(), cheaper);
  idle.insert(idle.end(), held.begin(), held.end());
  int64_t freed = 0;
  for (const Resident* r : idle) {
    freed += static_cast<int64_t>(Charge(*r, g.index));
    o.victims.push_back(r);
    if (o.available + coming + freed >= need) {
      o.fit = Fit::kEvicting;
      return o;
    }
  }
  o.victims.clear();
  return o;
}

}  // namespace

int64_t Available(const GpuState& gpu, const std::vector<Resident>& residents,
                  double reserve) {
  uint64_t attributed = 0;
  int64_t charged = 0;
  for (const Resident& r : residents) {
    attributed += UsedOn(r, gpu.index);
    charged += static_cast<int64_t>(Charge(r, gpu.index));
  }
  int64_t other =
      gpu.used > attributed ? static_cast<int64_t>(gpu.used - attributed) : 0;
  return Usable(gpu, reserve) - other - charged;
}

Decision Decide(const std::vector<GpuState>& gpus,
                const std::vector<Resident>& residents, const Request& request,
                double reserve) {
  Decision d;
  std::vector<const GpuState*> candidates;
  for (const GpuState& g : gpus) {
    bool allowed = request.allowed.empty() ||
                   std::find(request.allowed.begin(), request.allowed.end(),
                             g.index) != request.allowed.end();
    if (allowed) candidates.push_back(&g);
  }
  int64_t need = static_cast<int64_t>(request.footprint);
  std::vector<const GpuState*> large;  // Large enough when empty.
  for (const GpuState* g : candidates) {
    if (Usable(*g, reserve) >= need) large.push_back(g);
  }
  int count = std::max(1, request.count);
  if (static_cast<int>(large.size()) < count) {
    d.kind = Decision::Kind::kNever;
    if (static_cast<int>(candidates.size()) < count) {
      d.why = absl::StrCat("needs ", count, " GPU(s), and ", candidates.size(),
                           " of its GPUs are here");
    } else {
      std::vector<std::string> sizes;
      for (const GpuState* g : candidates) {
        sizes.push_back(
            absl::StrCat("GPU ", g->index, " ", Mib(Usable(*g, reserve))));
      }
      d.why = absl::StrCat("needs ", Mib(need), " on each of ", count,
                           " GPU(s); usable less the ",
                           static_cast<int>(reserve * 100 + 0.5),
                           "% reserve: ", absl::StrJoin(sizes, ", "));
    }
    return d;
  }
  std::vector<Option> options;
  for (const GpuState* g : large) {
    options.push_back(Consider(*g, residents, request, reserve));
  }
  std::stable_sort(options.begin(), options.end(),
                   [](const Option& a, const Option& b) {
                     if (a.fit != b.fit) return a.fit < b.fit;
                     if (a.victims.size() != b.victims.size()) {
                       return a.victims.size() < b.victims.size();
                     }
                     return a.available > b.available;
                   });
  options.resize(count);
  Fit worst = Fit::kNow;
  for (const Option& o : options) worst = std::max(worst, o.fit);
  for (const Option& o : options) d.gpus.push_back(o.gpu->index);
  std::sort(d.gpus.begin(), d.gpus.end());
  if (worst == Fit::kNow) {
    d.kind = Decision::Kind::kAdmit;
    return d;
  }
  if (worst == Fit::kHeld) {
    d.kind = Decision::Kind::kWait;
    std::vector<std::string> why;
    for (const Option& o : options) {
      if (o.fit != Fit::kHeld) continue;
      if (!o.gpu->trusted) {
        why.push_back(absl::StrCat("GPU ", o.gpu->index,
                                   " waits for a stopped model's memory"));
      } else {
        why.push_back(absl::StrCat("GPU ", o.gpu->index, " has ",
                                   Mib(std::max<int64_t>(0, o.available)),
                                   " free",
                                   o.busy.empty() ? "" : ", held by busy ",
                                   absl::StrJoin(o.busy, ", ")));
      }
    }
    d.why = absl::StrCat("needs ", Mib(need), ": ", absl::StrJoin(why, "; "));
    return d;
  }
  std::set<std::string> victims;
  for (const Option& o : options) {
    for (const Resident* r : o.victims) victims.insert(r->id);
  }
  if (!victims.empty()) {
    d.kind = Decision::Kind::kEvict;
    d.victims.assign(victims.begin(), victims.end());
    return d;
  }
  d.kind = Decision::Kind::kWait;
  d.coming = true;
  d.why = absl::StrCat("needs ", Mib(need),
                       ": waits for memory coming free (a stop, the driver)");
  return d;
}

}  // namespace modelplane::gpu
