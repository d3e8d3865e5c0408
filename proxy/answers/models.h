// GET /v1/models (and /models) and GET /running: what the routing snapshot
// lists, as JSON. Pure functions of the snapshot.
#ifndef MODELPLANE_PROXY_ANSWERS_MODELS_H_
#define MODELPLANE_PROXY_ANSWERS_MODELS_H_

#include <string>

#include "proxy/router/snapshot.h"

namespace modelplane::proxy::answers {

// OpenAI's list shape, as llama-swap answers it: every model (and, with
// includeAliasesInList, each alias), every selector and every peer's model
// (as <peer>/<model>), sorted by id; the active profile's pinned names are
// entries too and the names it disables are gone. Unlisted ones are not.
std::string ModelList(const router::Snapshot& snapshot);

// llama-swap's /running: the models starting, ready or stopping.
std::string RunningList(const router::Snapshot& snapshot);

}  // namespace modelplane::proxy::answers

#endif  // MODELPLANE_PROXY_ANSWERS_MODELS_H_
