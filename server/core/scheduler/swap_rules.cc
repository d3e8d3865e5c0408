#include "server/core/scheduler/swap_rules.h"

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

}  // namespace modelplane::scheduler
