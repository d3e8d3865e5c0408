// The resolved config as JSON, for `modelmanager --print-config`: what each
// model will really run (argv after macros and ${PORT}), where it is served,
// and every default filled in. API keys are redacted.
#ifndef MODELPLANE_SERVER_CORE_CONFIG_CONFIG_JSON_H_
#define MODELPLANE_SERVER_CORE_CONFIG_CONFIG_JSON_H_

#include <string>

#include "server/core/config/config.h"

namespace modelplane::config {

// Pretty-printed JSON (two-space indent). Durations are in seconds.
std::string ConfigToJson(const Config& config);

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_CONFIG_JSON_H_
