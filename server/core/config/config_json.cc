#include "server/core/config/config_json.h"

#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <vector>

namespace modelplane::config {
namespace {

using Writer = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

void Str(Writer& w, const char* key, const std::string& value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

void Strings(Writer& w, const char* key, const std::vector<std::string>& v) {
  w.Key(key);
  w.StartArray();
  for (const std::string& s : v) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  }
  w.EndArray();
}

void Secs(Writer& w, const char* key, absl::Duration d) {
  w.Key(key);
  w.Double(absl::ToDoubleSeconds(d));
}

// Splices a Value's own JSON into the document.
void Raw(Writer& w, const char* key, const Value& v) {
  w.Key(key);
  std::string json = v.ToJson();
  w.RawValue(json.data(), json.size(), rapidjson::kObjectType);
}

void Tls(Writer& w, const UpstreamTls& tls) {
  w.Key("tls");
  w.StartObject();
  Str(w, "caFile", tls.ca_file);
  w.Key("insecureSkipVerify");
  w.Bool(tls.insecure_skip_verify);
  w.EndObject();
}

void Peer(Writer& w, const PeerConfig& p) {
  w.StartObject();
  Str(w, "id", p.id);
  Str(w, "proxy", p.proxy);
  Str(w, "apiKey", p.api_key.empty() ? "" : "<redacted>");
  Strings(w, "models", p.models);
  w.Key("filters");
  w.StartObject();
  Strings(w, "stripParams", p.filters.strip_params);
  Raw(w, "setParams", p.filters.set_params);
  w.EndObject();
  Secs(w, "connectTimeout", p.timeouts.connect);
  Secs(w, "responseHeaderTimeout", p.timeouts.response_header);
  Secs(w, "idleConnTimeout", p.timeouts.idle_connection);
  Secs(w, "tlsHandshakeTimeout", p.timeouts.tls_handshake);
  Secs(w, "keepalive", p.timeouts.keepalive);
  Secs(w, "expectContinueTimeout", p.timeouts.expect_continue);
  Tls(w, p.tls);
  w.EndObject();
}

void Selector(Writer& w, const SelectorConfig& s) {
  w.StartObject();
  Str(w, "id", s.id);
  Str(w, "strategy", s.strategy);
  Strings(w, "targets", s.targets);
  w.Key("spillover");
  w.Int(s.spillover);
  Str(w, "name", s.name);
  Str(w, "description", s.description);
  w.Key("unlisted");
  w.Bool(s.unlisted);
  Raw(w, "metadata", s.metadata);
  w.EndObject();
}

void Model(Writer& w, const ModelConfig& m) {
  w.StartObject();
  Str(w, "id", m.id);
  Strings(w, "cmd", m.argv);
  Strings(w, "cmdStop", m.cmd_stop);
  Str(w, "proxy", m.proxy);
  w.Key("port");
  w.Int(m.port);
  Str(w, "checkEndpoint", m.check_endpoint.empty() ? "none" : m.check_endpoint);
  Secs(w, "healthCheckTimeout", m.health_check_timeout);
  Secs(w, "ttl", m.ttl);
  Secs(w, "unloadTimeout", m.unload_timeout);
  Strings(w, "aliases", m.aliases);
  Strings(w, "env", m.env);
  Str(w, "name", m.name);
  Str(w, "description", m.description);
  w.Key("unlisted");
  w.Bool(m.unlisted);
  Raw(w, "metadata", m.metadata);
  Str(w, "useModelName", m.use_model_name);
  w.Key("concurrencyLimit");
  w.Int(m.concurrency_limit);
  w.Key("filters");
  w.StartObject();
  Strings(w, "stripParams", m.filters.strip_params);
  Raw(w, "setParams", m.filters.set_params);
  w.Key("setParamsByID");
  w.StartObject();
  for (const auto& [name, params] : m.filters.set_params_by_id) {
    Raw(w, name.c_str(), params);
  }
  w.EndObject();
  w.EndObject();
  w.Key("timeouts");
  w.StartObject();
  Secs(w, "connect", m.timeouts.connect);
  Secs(w, "responseHeader", m.timeouts.response_header);
  Secs(w, "idleConn", m.timeouts.idle_connection);
  Secs(w, "tlsHandshake", m.timeouts.tls_handshake);
  Secs(w, "keepalive", m.timeouts.keepalive);
  Secs(w, "expectContinue", m.timeouts.expect_continue);
  w.EndObject();
  w.Key("sendLoadingState");
  w.Bool(m.send_loading_state);
  w.Key("capabilities");
  w.StartObject();
  Strings(w, "in", m.capabilities.in);
  Strings(w, "out", m.capabilities.out);
  w.Key("tools");
  w.Bool(m.capabilities.tools);
  w.Key("reranker");
  w.Bool(m.capabilities.reranker);
  w.Key("context");
  w.Int64(m.capabilities.context);
  w.EndObject();
  w.Key("compat");
  w.StartObject();
  w.Key("ignoreWebsockets");
  w.Bool(m.ignore_websockets);
  w.EndObject();
  Tls(w, m.tls);
  w.Key("replicas");
  w.StartObject();
  w.Key("max");
  w.Int(m.replicas.max);
  w.Key("spilloverAfterMs");
  w.Int64(absl::ToInt64Milliseconds(m.replicas.spillover_after));
  w.EndObject();
  if (m.resources.set) {
    w.Key("resources");
    w.StartObject();
    w.Key("vramMiB");
    w.Int64(m.resources.vram_mib);
    w.Key("gpus");
    w.StartArray();
    for (int g : m.resources.gpus) w.Int(g);
    w.EndArray();
    w.Key("gpuCount");
    w.Int(m.resources.gpu_count);
    w.EndObject();
  }
  for (const auto& [key, action] :
       {std::pair<const char*, const ModelConfig::Action*>{"sleep", &m.sleep},
        std::pair<const char*, const ModelConfig::Action*>{"wake", &m.wake}}) {
    if (!action->set()) continue;
    w.Key(key);
    w.StartObject();
    if (!action->endpoint.empty()) {
      Str(w, "endpoint", action->endpoint);
    } else {
      Strings(w, "cmd", action->argv);
    }
    w.EndObject();
  }
  Str(w, "readyPattern", m.ready_pattern);
  Secs(w, "maxQueueWait", m.max_queue_wait);
  w.Key("priority");
  w.Int(m.priority);
  Str(w, "group", m.group);
  w.EndObject();
}

}  // namespace

std::string ConfigToJson(const Config& c) {
  rapidjson::StringBuffer out;
  Writer w(out);
  w.SetIndent(' ', 2);
  w.StartObject();
  Str(w, "file", c.file);
  w.Key("startPort");
  w.Int(c.start_port);
  Secs(w, "healthCheckTimeout", c.health_check_timeout);
  Secs(w, "globalTTL", c.global_ttl);
  Secs(w, "unloadTimeout", c.unload_timeout);
  Str(w, "logLevel", c.log_level);
  Str(w, "logToStdout", c.log_to_stdout);
  w.Key("apiKeys");
  w.StartArray();
  for (size_t i = 0; i < c.api_keys.size(); ++i) w.String("<redacted>");
  w.EndArray();
  Strings(w, "preload", c.preload);
  Str(w, "startupProfile", c.startup_profile);
  w.Key("includeAliasesInList");
  w.Bool(c.include_aliases_in_list);
  w.Key("metricsMaxInMemory");
  w.Int(c.metrics_max_in_memory);
  w.Key("store");
  w.StartObject();
  Str(w, "path", c.store_path);
  w.Key("maxRows");
  w.Int64(c.store_max_rows);
  w.EndObject();
  w.Key("gpu");
  w.StartObject();
  w.Key("reservePercent");
  w.Double(c.gpu_reserve_percent);
  Secs(w, "memoryWaitTimeout", c.gpu_memory_wait);
  w.EndObject();
  w.Key("upstream");
  w.StartObject();
  Strings(w, "ignorePaths", c.upstream_ignore_paths);
  w.EndObject();
  w.Key("peers");
  w.StartArray();
  for (const PeerConfig& p : c.peers) Peer(w, p);
  w.EndArray();
  w.Key("selectors");
  w.StartArray();
  for (const SelectorConfig& s : c.selectors) Selector(w, s);
  w.EndArray();
  w.Key("matrix");
  if (!c.matrix) {
    w.Null();
  } else {
    w.StartObject();
    w.Key("allowed");
    w.StartArray();
    for (const auto& set : c.matrix->allowed) {
      w.StartArray();
      for (const std::string& id : set) w.String(id.c_str());
      w.EndArray();
    }
    w.EndArray();
    w.Key("evictCosts");
    w.StartObject();
    for (const auto& [id, cost] : c.matrix->evict_costs) {
      w.Key(id.c_str());
      w.Int(cost);
    }
    w.EndObject();
    w.EndObject();
  }
  w.Key("profiles");
  w.StartArray();
  for (const ProfileConfig& p : c.profiles) {
    w.StartObject();
    Str(w, "name", p.name);
    Str(w, "description", p.description);
    w.Key("pins");
    w.StartObject();
    for (const auto& [from, to] : p.pins) {
      w.Key(from.c_str());
      if (to.empty()) {
        w.Null();
      } else {
        w.String(to.c_str());
      }
    }
    w.EndObject();
    w.EndObject();
  }
  w.EndArray();
  w.Key("groups");
  w.StartArray();
  for (const GroupConfig& g : c.groups) {
    w.StartObject();
    Str(w, "id", g.id);
    w.Key("swap");
    w.Bool(g.swap);
    w.Key("exclusive");
    w.Bool(g.exclusive);
    w.Key("persistent");
    w.Bool(g.persistent);
    Strings(w, "members", g.members);
    w.EndObject();
  }
  w.EndArray();
  w.Key("models");
  w.StartArray();
  for (const ModelConfig& m : c.models) Model(w, m);
  w.EndArray();
  w.EndObject();
  return std::string(out.GetString()) + "\n";
}

}  // namespace modelplane::config
