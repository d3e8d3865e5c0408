// The parts of a llama-swap config that route requests rather than run
// models: `peers`, `selectors`, `profiles` and the swap `matrix`. Decoded
// after the models (their names are what these refer to); every problem is
// reported to the sink at its position, and what is valid goes into Config.
#ifndef MODELPLANE_SERVER_CORE_CONFIG_ROUTING_DECODER_H_
#define MODELPLANE_SERVER_CORE_CONFIG_ROUTING_DECODER_H_

#include <string>

#include "server/core/config/config.h"
#include "server/core/config/diag_sink.h"
#include "server/core/config/yaml_tree.h"

namespace modelplane::config {

// `peers` (each through DecodePeer), sorted by id.
void DecodePeers(const YamlNode* peers, Config* c, DiagSink* sink);
// A model's name or a selector that would hide a peer's <peer>/<model>.
void CheckPeerNames(const Config& c, DiagSink* sink);
// `selectors`, after the models and their aliases.
void DecodeSelectors(const YamlNode* selectors, Config* c, DiagSink* sink);
// llama-swap's rule: a spillover selector's local targets can run together
// (one group with swap: false, or one matrix set). After groups or the
// matrix, and selectors.
void CheckSpilloverTargetsCoexist(const Config& c, DiagSink* sink);
// `profiles`, after models, selectors and peers (a pin names one of them).
void DecodeProfiles(const YamlNode* profiles, Config* c, DiagSink* sink);
// The swap matrix at `path` (`matrix` or routing.router.settings.matrix).
void DecodeMatrix(const YamlNode& node, const std::string& path, Config* c,
                  DiagSink* sink);

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_ROUTING_DECODER_H_
