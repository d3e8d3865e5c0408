// What a config reload changes, model by model: the manager applies it so
// that a reload restarts only what must restart (llama-swap restarts every
// model on reload; modelplane does not).
//
//   ConfigDiff d = DiffConfigs(*old_config, *new_config);
//   for (const std::string& id : d.restart) ...  // revoke, drain, restart
#ifndef MODELPLANE_SERVER_CORE_CONFIG_DIFF_H_
#define MODELPLANE_SERVER_CORE_CONFIG_DIFF_H_

#include <map>
#include <string>
#include <vector>

#include "server/core/config/config.h"

namespace modelplane::config {

struct ConfigDiff {
  // Model ids, each sorted.
  std::vector<std::string> added;
  std::vector<std::string> removed;
  // The process settings changed (cmd, env, proxy): a running process must
  // be restarted to apply them.
  std::vector<std::string> restart;
  // Why each of `restart` restarts: "cmd changed", "env changed" (joined).
  std::map<std::string, std::string> restart_reasons;
  // Only settings the manager or proxy apply without a restart changed
  // (aliases, ttl, name, description, filters, limits, timeouts, group...).
  std::vector<std::string> update;
  std::vector<std::string> unchanged;
  // Group ids whose existence, flags or members changed.
  std::vector<std::string> groups_changed;
  // Global settings other than models and groups changed (timeouts, TTL,
  // log level, API keys, preload, peers, selectors, profiles, the swap
  // matrix).
  bool globals_changed = false;

  bool empty() const {
    return added.empty() && removed.empty() && restart.empty() &&
           update.empty() && groups_changed.empty() && !globals_changed;
  }
};

// True when a running model's process must restart to apply `b` over `a`.
bool NeedsRestart(const ModelConfig& a, const ModelConfig& b);
// What NeedsRestart saw, for people: "cmd changed (${PORT} 5801 -> 5802)".
std::string RestartReason(const ModelConfig& a, const ModelConfig& b);
// True when `a` and `b` differ in any setting (positions in the file aside).
bool ModelsDiffer(const ModelConfig& a, const ModelConfig& b);

ConfigDiff DiffConfigs(const Config& before, const Config& after);

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_DIFF_H_
