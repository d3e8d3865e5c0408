#include "server/core/scheduler/swap_rules.h"

#include <algorithm>
#include <cstdint>

namespace modelplane::scheduler {

bool Evicts(const config::Config& config, const config::ModelConfig& target,
            const config::ModelConfig& running) {
  if (target.id == running.id) return false;
  const config::GroupConfig* g = config.FindGroup(target.group);
  const config::GroupConfig* h = config.FindGroup(running.group);
  // Every model has a group after loading; be safe with a missing one by
  // treating it as the default group's rules (swap, exclusive).
  bool swap = g == nullptr || g->swap;
  bool exclusive = g == nullptr || g->exclusive;
  bool persistent = h != nullptr && h->persistent;
  if (target.group == running.group) return swap;
  return exclusive && !persistent;
}

std::set<std::string> Victims(
    const config::Config& config, const config::ModelConfig& target,
    const std::vector<const config::ModelConfig*>& running,
    const std::set<std::string>& leaving) {
  std::set<std::string> victims;
  if (!config.matrix) {
    for (const config::ModelConfig* r : running) {
      if (Evicts(config, target, *r)) victims.insert(r->id);
    }
    return victims;
  }
  // The matrix: a set's cost is what evicting the running models outside it
  // costs. Sets are small and few (the loader caps their expansion).
  const std::vector<std::string>* best = nullptr;
  int64_t best_cost = 0;
  for (const std::vector<std::string>& set : config.matrix->allowed) {
    if (!std::binary_search(set.begin(), set.end(), target.id)) continue;
    int64_t cost = 0;
    for (const config::ModelConfig* r : running) {
      if (!std::binary_search(set.begin(), set.end(), r->id) &&
          leaving.count(r->id) == 0) {
        cost += config.matrix->CostOf(r->id);
      }
    }
    if (best == nullptr || cost < best_cost) {  // Ties: the first defined.
      best = &set;
      best_cost = cost;
    }
  }
  for (const config::ModelConfig* r : running) {
    if (r->id == target.id) continue;
    if (best == nullptr ||
        !std::binary_search(best->begin(), best->end(), r->id)) {
      victims.insert(r->id);  // In no set with the target: it runs alone.
    }
  }
  return victims;
}

}  // namespace modelplane::scheduler
