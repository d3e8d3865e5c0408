#include "server/core/config/diff.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace modelplane::config {
namespace {

bool GroupsEqual(const GroupConfig& a, const GroupConfig& b) {
  return std::tie(a.swap, a.exclusive, a.persistent, a.members) ==
         std::tie(b.swap, b.exclusive, b.persistent, b.members);
}

auto PeerFields(const PeerConfig& p) {
  return std::tie(p.id, p.proxy, p.api_key, p.models, p.filters.strip_params,
                  p.filters.set_params, p.filters.set_params_by_id,
                  p.timeouts.connect, p.timeouts.response_header,
                  p.timeouts.idle_connection, p.timeouts.tls_handshake,
                  p.timeouts.keepalive, p.timeouts.expect_continue,
                  p.tls.ca_file, p.tls.ca_pem, p.tls.insecure_skip_verify);
}

bool PeersEqual(const std::vector<PeerConfig>& a,
                const std::vector<PeerConfig>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (PeerFields(a[i]) != PeerFields(b[i])) return false;
  }
  return true;
}

bool SelectorsEqual(const std::vector<SelectorConfig>& a,
                    const std::vector<SelectorConfig>& b) {
  auto fields = [](const SelectorConfig& s) {
    return std::tie(s.id, s.strategy, s.targets, s.spillover, s.name,
                    s.description, s.unlisted, s.metadata);
  };
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (fields(a[i]) != fields(b[i])) return false;
  }
  return true;
}

bool ProfilesEqual(const std::vector<ProfileConfig>& a,
                   const std::vector<ProfileConfig>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tie(a[i].name, a[i].description, a[i].pins) !=
        std::tie(b[i].name, b[i].description, b[i].pins)) {
      return false;
    }
  }
  return true;
}

bool MatricesEqual(const std::optional<MatrixConfig>& a,
                   const std::optional<MatrixConfig>& b) {
  if (a.has_value() != b.has_value()) return false;
  return !a || std::tie(a->allowed, a->evict_costs) ==
                   std::tie(b->allowed, b->evict_costs);
}

}  // namespace

bool NeedsRestart(const ModelConfig& a, const ModelConfig& b) {
  return std::tie(a.argv, a.env, a.proxy) != std::tie(b.argv, b.env, b.proxy);
}

std::string RestartReason(const ModelConfig& a, const ModelConfig& b) {
  std::vector<std::string> what;
  if (a.argv != b.argv) {
    what.push_back(a.port != b.port ? absl::StrCat("cmd changed (${PORT} ",
                                                   a.port, " -> ", b.port, ")")
                                    : "cmd changed");
  }
  if (a.env != b.env) what.push_back("env changed");
  if (a.proxy != b.proxy) what.push_back("proxy changed");
  return absl::StrJoin(what, ", ");
}

bool ModelsDiffer(const ModelConfig& a, const ModelConfig& b) {
  if (NeedsRestart(a, b)) return true;
  return std::tie(a.cmd_stop, a.check_endpoint, a.health_check_timeout, a.ttl,
                  a.unload_timeout, a.aliases, a.name, a.description,
                  a.unlisted, a.metadata, a.use_model_name, a.concurrency_limit,
                  a.filters.strip_params, a.filters.set_params,
                  a.filters.set_params_by_id, a.send_loading_state,
                  a.timeouts.connect, a.timeouts.response_header,
                  a.timeouts.idle_connection, a.timeouts.tls_handshake,
                  a.timeouts.keepalive, a.timeouts.expect_continue,
                  a.ready_pattern, a.max_queue_wait, a.priority, a.port,
                  a.group, a.replicas.max, a.replicas.spillover_after,
                  a.ignore_websockets, a.capabilities, a.tls.ca_file,
                  a.tls.ca_pem, a.tls.insecure_skip_verify, a.resources,
                  a.sleep, a.wake) !=
         std::tie(b.cmd_stop, b.check_endpoint, b.health_check_timeout, b.ttl,
                  b.unload_timeout, b.aliases, b.name, b.description,
                  b.unlisted, b.metadata, b.use_model_name, b.concurrency_limit,
                  b.filters.strip_params, b.filters.set_params,
                  b.filters.set_params_by_id, b.send_loading_state,
                  b.timeouts.connect, b.timeouts.response_header,
                  b.timeouts.idle_connection, b.timeouts.tls_handshake,
                  b.timeouts.keepalive, b.timeouts.expect_continue,
                  b.ready_pattern, b.max_queue_wait, b.priority, b.port,
                  b.group, b.replicas.max, b.replicas.spillover_after,
                  b.ignore_websockets, b.capabilities, b.tls.ca_file,
                  b.tls.ca_pem, b.tls.insecure_skip_verify, b.resources,
                  b.sleep, b.wake);
}

ConfigDiff DiffConfigs(const Config& before, const Config& after) {
  ConfigDiff d;
  for (const ModelConfig& a : before.models) {
    const ModelConfig* b = nullptr;
    for (const ModelConfig& m : after.models) {
      if (m.id == a.id) b = &m;
    }
    if (b == nullptr) {
      d.removed.push_back(a.id);
    } else if (NeedsRestart(a, *b)) {
      d.restart.push_back(a.id);
      d.restart_reasons[a.id] = RestartReason(a, *b);
    } else if (ModelsDiffer(a, *b)) {
      d.update.push_back(a.id);
    } else {
      d.unchanged.push_back(a.id);
    }
  }
  for (const ModelConfig& b : after.models) {
    bool existed =
        std::any_of(before.models.begin(), before.models.end(),
                    [&](const ModelConfig& m) { return m.id == b.id; });
    if (!existed) d.added.push_back(b.id);
  }
  for (const GroupConfig& a : before.groups) {
    const GroupConfig* b = after.FindGroup(a.id);
    if (b == nullptr || !GroupsEqual(a, *b)) d.groups_changed.push_back(a.id);
  }
  for (const GroupConfig& b : after.groups) {
    if (before.FindGroup(b.id) == nullptr) d.groups_changed.push_back(b.id);
  }
  std::sort(d.groups_changed.begin(), d.groups_changed.end());
  d.globals_changed =
      std::tie(before.health_check_timeout, before.global_ttl,
               before.unload_timeout, before.start_port, before.log_level,
               before.api_keys, before.preload, before.include_aliases_in_list,
               before.upstream_ignore_paths, before.metrics_max_in_memory,
               before.store_path, before.store_max_rows, before.startup_profile,
               before.gpu_reserve_percent, before.gpu_memory_wait) !=
          std::tie(after.health_check_timeout, after.global_ttl,
                   after.unload_timeout, after.start_port, after.log_level,
                   after.api_keys, after.preload, after.include_aliases_in_list,
                   after.upstream_ignore_paths, after.metrics_max_in_memory,
                   after.store_path, after.store_max_rows,
                   after.startup_profile, after.gpu_reserve_percent,
                   after.gpu_memory_wait) ||
      !PeersEqual(before.peers, after.peers) ||
      !SelectorsEqual(before.selectors, after.selectors) ||
      !ProfilesEqual(before.profiles, after.profiles) ||
      !MatricesEqual(before.matrix, after.matrix);
  return d;
}

}  // namespace modelplane::config
