// Decodes one `models.<id>` entry of config.yaml into a ModelConfig:
// comment lines stripped from `cmd` and `cmdStop`, the default `proxy`
// (http://localhost:${PORT}) filled in, macros expanded, ${PORT} assigned,
// leftover macros rejected, every field type- and range-checked.
#ifndef MODELPLANE_SERVER_CORE_CONFIG_MODEL_DECODER_H_
#define MODELPLANE_SERVER_CORE_CONFIG_MODEL_DECODER_H_

#include <map>
#include <optional>
#include <set>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/core/config/config.h"
#include "server/core/config/decode_util.h"
#include "server/core/config/diag_sink.h"
#include "server/core/config/macros.h"
#include "server/core/config/yaml_tree.h"

namespace modelplane::config {

// The keys a `models.<id>` entry takes (docs/config.md); `unsupported`
// are llama-swap's not built, loaded with a warning. A new one is held to
// the diff, the JSON print-out and the API by config_fields_test.
const KeySet& ModelKeys();
// The keys of a model's `timeouts` and `filters` maps.
const KeySet& ModelTimeoutKeys();
const KeySet& ModelFilterKeys();

// Global settings a model inherits.
struct ModelDefaults {
  absl::Duration health_check_timeout;
  absl::Duration ttl;
  absl::Duration unload_timeout;
  bool send_loading_state = false;
};

// Default bound on how long demand for one model waits behind others before
// the scheduler revokes what blocks it (extension `maxQueueWait`).
inline constexpr absl::Duration kDefaultMaxQueueWait = absl::Seconds(30);
inline constexpr int kDefaultConcurrencyLimit = 10;

// Hands out ${PORT}s: in sorted model order from startPort (llama-swap's
// rule), except that a model with a port of its own (`kept`: the port a
// running config gave it) keeps it, and no one else gets one of those.
class PortAllocator {
 public:
  // `literal`: ports models name in their own `proxy`, never handed out.
  explicit PortAllocator(int start_port, std::map<std::string, int> kept = {},
                         std::set<int> literal = {});
  int Take(const std::string& id);

 private:
  int next_;
  std::map<std::string, int> kept_;
  std::set<int> reserved_;
};

// The port of an http:// URL ("http://127.0.0.1:5801/x" -> 5801), or 80
// with none; nullopt for what is no such URL.
std::optional<int> UrlPort(absl::string_view url);

// Decodes the model `id` whose mapping is `node` (at `key_pos`). Models must
// be decoded in sorted id order: a model whose `cmd` uses ${PORT} takes one
// from `ports`. Returns nullopt after reporting errors.
std::optional<ModelConfig> DecodeModel(const std::string& id, SourcePos key_pos,
                                       const YamlNode& node,
                                       const MacroSet& globals,
                                       const ModelDefaults& defaults,
                                       PortAllocator* ports, DiagSink* sink);

// Decodes `peers.<id>` (macros already expanded): `proxy` and `models`
// required, `apiKey`, and `filters` and `timeouts` as a model's. Returns
// nullopt after reporting errors.
std::optional<PeerConfig> DecodePeer(const std::string& id, SourcePos key_pos,
                                     const YamlNode& node, DiagSink* sink);

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_MODEL_DECODER_H_
