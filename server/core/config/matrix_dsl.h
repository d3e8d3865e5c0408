// llama-swap's swap-matrix set expressions: which models may run together.
//
//   sets:
//     coding: "q & e"              q and e together (and so each alone)
//     chat:   "(l | q) & w"        l with w, or q with w
//     all:    "+coding | +chat"    either of the sets above
//
// `&` joins (binds tighter), `|` offers alternatives, `( )` groups, `+name`
// includes an earlier set. An expression expands into the list of sets it
// allows (a disjunction of conjunctions); a subset of an allowed set is
// allowed too, which the solver (scheduler) uses by asking only which allowed
// sets contain the model it starts.
#ifndef MODELPLANE_SERVER_CORE_CONFIG_MATRIX_DSL_H_
#define MODELPLANE_SERVER_CORE_CONFIG_MATRIX_DSL_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modelplane::config {

// A set of model ids, sorted, each once.
using ModelSet = std::vector<std::string>;

// Expands `expr`. `name` maps a name in it (a var, a model id or alias) to a
// model id, or nullopt when it is none; `set` maps +ref to an earlier set's
// expansion, or nullptr. More than `max_sets` alternatives is an error (an
// expression can multiply out: the config must stay small to read).
absl::StatusOr<std::vector<ModelSet>> ExpandSetExpression(
    absl::string_view expr,
    const std::function<std::optional<std::string>(const std::string&)>& name,
    const std::function<const std::vector<ModelSet>*(const std::string&)>& set,
    size_t max_sets = 4096);

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_MATRIX_DSL_H_
