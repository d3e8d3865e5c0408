// llama-swap's group rules: which running models starting a model evicts.
//
// Starting T (in group G) evicts a running model M != T when
//   * M is in G and G.swap, or
//   * M is in another group H, G.exclusive, and not H.persistent.
// So a non-exclusive target never evicts other groups (the one-way
// exclusivity llama-swap keeps on purpose, #215), `persistent` protects a
// group only from other groups, and models in no group form the implicit
// group "(default)" (swap, exclusive): without groups, one model at a time.
#ifndef MODELPLANE_SERVER_CORE_SCHEDULER_SWAP_RULES_H_
#define MODELPLANE_SERVER_CORE_SCHEDULER_SWAP_RULES_H_

#include <set>
#include <string>
#include <vector>

#include "server/core/config/config.h"

namespace modelplane::scheduler {

// True when starting `target` evicts `running` under `config`'s groups.
bool Evicts(const config::Config& config, const config::ModelConfig& target,
            const config::ModelConfig& running);

// The running models (ids; `target` not among them) that starting `target`
// evicts: under the config's swap matrix when it has one (the allowed set
// with `target` whose running non-members cost least to evict, ties to the
// first defined; every other model when no set has `target`), else by
// Evicts for each. Models in `leaving` (stopping, or being evicted already)
// cost nothing to evict: they go anyway.
std::set<std::string> Victims(
    const config::Config& config, const config::ModelConfig& target,
    const std::vector<const config::ModelConfig*>& running,
    const std::set<std::string>& leaving = {});

}  // namespace modelplane::scheduler

#endif  // MODELPLANE_SERVER_CORE_SCHEDULER_SWAP_RULES_H_
