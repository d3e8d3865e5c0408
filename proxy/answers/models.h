// GET /v1/models (and /models) and GET /running: what the routing snapshot
// lists, as JSON. Pure functions of the snapshot.
#ifndef MODELPLANE_PROXY_ANSWERS_MODELS_H_
#define MODELPLANE_PROXY_ANSWERS_MODELS_H_

#include <cstdint>
#include <string>

#include "proxy/router/snapshot.h"

namespace modelplane::proxy::answers {

// OpenAI's list shape, as llama-swap answers it: every model (and, with
// includeAliasesInList, each alias), every selector and every peer's model
// (as <peer>/<model>), sorted by id; the active profile's pinned names are
// entries too and the names it disables are gone. Unlisted ones are not.
// `created` (every entry's, as llama-swap: the time of the answer) in Unix
// seconds. A model with `capabilities` has llama-swap's OpenRouter-style
// fields (architecture, capabilities, supported_parameters,
// context_length) and meta.n_ctx.
std::string ModelList(const router::Snapshot& snapshot, int64_t created = 0);

// llama-swap's /running: the models starting, ready or stopping, one entry
// per node with llama-swap's fields (model, state, cmd, proxy, ttl, name,
// description) and the node.
std::string RunningList(const router::Snapshot& snapshot);

// The UI's model status (the /api/events `modelStatus` data): a JSON
// array, sorted by id, of llama-swap's fields (id, name, description,
// state, unlisted, aliases; peers' models with peerID) and, per node that
// has the model, what its manager says: state, group, pid, since, ttl,
// last use, leases, queued requests and the last failure with its output
// (model_status.cc; docs/ui.md).
std::string ModelStatusJson(const router::Snapshot& snapshot);

}  // namespace modelplane::proxy::answers

#endif  // MODELPLANE_PROXY_ANSWERS_MODELS_H_
