#include "server/core/config/model_decoder.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "re2/re2.h"
#include "server/core/config/decode_util.h"
#include "server/core/config/macros.h"
#include "server/core/config/shell_split.h"

namespace modelplane::config {
namespace {

// A filter path that sets, strips or goes through the model name (sjson
// paths: "model", "model.x"); the proxy never applies one.
bool NamesTheModel(absl::string_view path) {
  return path == "model" || absl::StartsWith(path, "model.");
}

// A model's or a peer's `tls`: caFile (its certificates read now, so that
// they travel with the config to every data plane), insecureSkipVerify.
void DecodeUpstreamTls(const YamlNode& node, const std::string& at,
                       UpstreamTls* tls, DiagSink* sink) {
  if (node.is_null()) return;
  if (!node.is_map()) {
    sink->Error(node.pos, at,
                absl::StrCat("must be a mapping, not ", node.KindName()));
    return;
  }
  CheckKeys(node, at, KeySet{{"caFile", "insecureSkipVerify"}, {}}, sink);
  if (const YamlNode* v = node.Get("insecureSkipVerify"); v != nullptr) {
    ReadBool(*v, at + ".insecureSkipVerify", sink, &tls->insecure_skip_verify);
    if (tls->insecure_skip_verify) {
      sink->Warn(v->pos, at + ".insecureSkipVerify",
                 "the upstream's certificate is not checked: whoever is on "
                 "the way can read and change its traffic, keys included");
    }
  }
  if (const YamlNode* v = node.Get("caFile"); v != nullptr) {
    std::string path;
    if (!ReadString(*v, at + ".caFile", sink, &path)) return;
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) {
      sink->Error(v->pos, at + ".caFile", absl::StrCat("cannot read ", path));
      return;
    }
    if (text.str().find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      sink->Error(v->pos, at + ".caFile",
                  absl::StrCat(path, " holds no PEM certificate"));
      return;
    }
    tls->ca_file = path;
    tls->ca_pem = text.str();
  }
}

const KeySet& PeerKeys() {
  static const KeySet keys = {
      {"proxy", "apiKey", "models", "filters", "timeouts",
       // modelplane's extension (docs/config.md).
       "tls"},
      {}};
  return keys;
}

const KeySet& TimeoutKeys() {
  static const KeySet keys = {{"connect", "responseHeader", "idleConn",
                               "keepalive", "tlsHandshake", "expectContinue"},
                              {}};
  return keys;
}

const KeySet& ResourceKeys() {
  static const KeySet keys = {{"vramMiB", "gpus", "gpuCount"}, {}};
  return keys;
}

const KeySet& ReplicaKeys() {
  static const KeySet keys = {{"max", "spilloverAfterMs"}, {}};
  return keys;
}

const KeySet& FilterKeys() {
  static const KeySet keys = {
      {"stripParams", "strip_params", "setParams", "setParamsByID"},
      {"setParamsByMatch"}};
  return keys;
}

YamlNode Scalar(std::string text, bool quoted, SourcePos pos) {
  YamlNode n;
  n.kind = YamlNode::Kind::kScalar;
  n.text = std::move(text);
  n.quoted = quoted;
  n.pos = pos;
  return n;
}

bool IsUrl(const std::string& s) {
  static const LazyRE2 kUrl = {
      R"(http://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]+)(:[0-9]{1,5})?(/\S*)?)"};
  return RE2::FullMatch(s, *kUrl);
}

// Fills the keys of `node` into `m`, checking each. `path` is models.<id>.
class FieldDecoder {
 public:
  FieldDecoder(const std::string& path, DiagSink* sink)
      : path_(path), sink_(sink) {}

  void Decode(const YamlNode& node, const ModelDefaults& d, ModelConfig* m) {
    m->send_loading_state = d.send_loading_state;
    for (const auto& [key, value] : node.entries) {
      std::string at = JoinPath(path_, key.text);
      const std::string& k = key.text;
      if (k == "cmd") Command(value, at, &m->argv, true);
      if (k == "cmdStop") Command(value, at, &m->cmd_stop, false);
      if (k == "proxy") Proxy(value, at, &m->proxy);
      if (k == "tls") DecodeUpstreamTls(value, at, &m->tls, sink_);
      if (k == "checkEndpoint") CheckEndpoint(value, at, m);
      if (k == "ttl") Ttl(value, at, d, m);
      if (k == "unloadTimeout")
        Timeout(value, at, d.unload_timeout, &m->unload_timeout);
      if (k == "healthCheckTimeout") {
        Timeout(value, at, d.health_check_timeout, &m->health_check_timeout);
      }
      if (k == "maxQueueWait")
        Timeout(value, at, absl::ZeroDuration(), &m->max_queue_wait);
      if (k == "aliases") Aliases(value, at, m);
      if (k == "env") Env(value, at, m);
      if (k == "name") ReadString(value, at, sink_, &m->name);
      if (k == "description") ReadString(value, at, sink_, &m->description);
      if (k == "unlisted") ReadBool(value, at, sink_, &m->unlisted);
      if (k == "metadata") Metadata(value, at, m);
      if (k == "useModelName") ReadString(value, at, sink_, &m->use_model_name);
      if (k == "concurrencyLimit") ConcurrencyLimit(value, at, m);
      if (k == "filters") Filters(value, at, m);
      if (k == "timeouts") Timeouts(value, at, m);
      if (k == "replicas") Replicas(value, at, m);
      if (k == "resources") Resources(value, at, m);
      if (k == "sleep") SleepAction(value, at, &m->sleep);
      if (k == "wake") SleepAction(value, at, &m->wake);
      if (k == "compat") Compat(value, at, m);
      if (k == "capabilities") Capabilities(value, at, m);
      if (k == "readyPattern") ReadyPattern(value, at, m);
      if (k == "sendLoadingState") {
        ReadBool(value, at, sink_, &m->send_loading_state);
      }
      if (k == "priority") {
        int64_t p = 0;
        if (ReadInt(value, at, sink_, &p)) m->priority = static_cast<int>(p);
      }
    }
    if (m->sleep.set() != m->wake.set()) {
      const YamlNode* one = node.Get(m->sleep.set() ? "sleep" : "wake");
      sink_->Error(one != nullptr ? one->pos : node.pos,
                   JoinPath(path_, m->sleep.set() ? "sleep" : "wake"),
                   m->sleep.set() ? "sleep needs wake too (how it wakes up)"
                                  : "wake needs sleep too (how it sleeps)");
    }
    // setParamsByID names are aliases too (whatever the order of the keys);
    // the loader checks them for clashes like the others.
    for (const auto& [name, params] : m->filters.set_params_by_id) {
      if (name != m->id && std::find(m->aliases.begin(), m->aliases.end(),
                                     name) == m->aliases.end()) {
        m->aliases.push_back(name);
      }
    }
  }

 public:
  // An http:// or https:// base URL (macros such as ${PORT} are expanded
  // later, and checked then).
  void Proxy(const YamlNode& value, const std::string& at, std::string* out) {
    if (!ReadString(value, at, sink_, out)) return;
    if (out->find("${") != std::string::npos) return;
    std::string as_http =
        absl::StartsWith(*out, "https://") ? "http://" + out->substr(8) : *out;
    if (!IsUrl(as_http)) {
      sink_->Error(value.pos, at,
                   absl::StrCat("must be an http:// or https:// URL, not \"",
                                *out, "\""));
    }
  }

 private:
  void Command(const YamlNode& value, const std::string& at,
               std::vector<std::string>* argv, bool required) {
    std::string text;
    if (!ReadString(value, at, sink_, &text)) return;
    absl::StatusOr<std::vector<std::string>> words = SplitCommand(text);
    if (!words.ok()) {
      sink_->Error(value.pos, at, std::string(words.status().message()));
    } else if (words->empty() && required) {
      sink_->Error(value.pos, at, "is empty after macro expansion");
    } else {
      *argv = *std::move(words);
    }
  }

  // `sleep` / `wake`: {endpoint: /path} (POSTed to the upstream), {cmd:
  // ...}, or a string (a path when it starts with '/', else a command).
  void SleepAction(const YamlNode& value, const std::string& at,
                   ModelConfig::Action* out) {
    const YamlNode* endpoint = nullptr;
    const YamlNode* cmd = nullptr;
    std::string endpoint_at = at, cmd_at = at;
    if (value.is_map()) {
      CheckKeys(value, at, KeySet{{"endpoint", "cmd"}, {}}, sink_);
      endpoint = value.Get("endpoint");
      cmd = value.Get("cmd");
      endpoint_at = JoinPath(at, "endpoint");
      cmd_at = JoinPath(at, "cmd");
      if ((endpoint == nullptr) == (cmd == nullptr)) {
        sink_->Error(value.pos, at, "needs one of endpoint or cmd");
        return;
      }
    } else if (value.is_scalar() && !value.text.empty() &&
               value.text[0] == '/') {
      endpoint = &value;
    } else if (value.is_scalar()) {
      cmd = &value;
    } else {
      sink_->Error(value.pos, at,
                   absl::StrCat("must be a path, a command or a mapping "
                                "({endpoint: /sleep?level=1} or {cmd: ...}), "
                                "not ",
                                value.KindName()));
      return;
    }
    if (endpoint != nullptr) {
      std::string path;
      if (!ReadString(*endpoint, endpoint_at, sink_, &path)) return;
      if (path.empty() || path[0] != '/' ||
          path.find_first_of(" \t\r\n") != std::string::npos) {
        sink_->Error(endpoint->pos, endpoint_at,
                     absl::StrCat("must be a path starting with '/', not \"",
                                  path, "\""));
        return;
      }
      out->endpoint = path;
    } else {
      Command(*cmd, cmd_at, &out->argv, true);
    }
  }

  void CheckEndpoint(const YamlNode& value, const std::string& at,
                     ModelConfig* m) {
    std::string s;
    if (!ReadString(value, at, sink_, &s)) return;
    if (s == "none") {
      m->check_endpoint.clear();
    } else if (s.empty()) {
      m->check_endpoint = "/health";
    } else if (s[0] != '/' || s.find_first_of(" \t\r\n") != std::string::npos) {
      sink_->Error(value.pos, at,
                   absl::StrCat("must be a path starting with '/', or 'none', "
                                "not \"",
                                s, "\""));
    } else {
      m->check_endpoint = s;
    }
  }

  void Ttl(const YamlNode& value, const std::string& at, const ModelDefaults& d,
           ModelConfig* m) {
    double s;
    if (!ReadSeconds(value, at, sink_, &s)) return;
    if (s == -1) {
      m->ttl = d.ttl;
    } else if (s < 0) {
      sink_->Error(value.pos, at,
                   "must be 0 (never unload), a positive number of seconds, "
                   "or -1 (use globalTTL)");
    } else {
      m->ttl = Seconds(s);
    }
  }

  // A non-negative number of seconds; 0 means `fallback`.
  void Timeout(const YamlNode& value, const std::string& at,
               absl::Duration fallback, absl::Duration* out) {
    double s;
    if (!ReadSeconds(value, at, sink_, &s)) return;
    if (s < 0) {
      sink_->Error(value.pos, at, "must not be negative");
      return;
    }
    *out = s == 0 ? fallback : Seconds(s);
  }

  // llama-swap's upstream transport timeouts, seconds; 0 disables one.
  void Timeouts(const YamlNode& value, const std::string& at, ModelConfig* m) {
    if (value.is_null()) return;
    if (!value.is_map()) {
      sink_->Error(value.pos, at,
                   absl::StrCat("must be a mapping, not ", value.KindName()));
      return;
    }
    CheckKeys(value, at, TimeoutKeys(), sink_);
    auto one = [&](const char* key, absl::Duration* out) {
      const YamlNode* v = value.Get(key);
      if (v == nullptr) return;
      std::string where = JoinPath(at, key);
      double s;
      if (!ReadSeconds(*v, where, sink_, &s)) return;
      if (s < 0) {
        sink_->Error(v->pos, where, "must not be negative (0 disables it)");
        return;
      }
      *out = Seconds(s);
    };
    one("connect", &m->timeouts.connect);
    one("responseHeader", &m->timeouts.response_header);
    one("idleConn", &m->timeouts.idle_connection);
    one("tlsHandshake", &m->timeouts.tls_handshake);
    one("keepalive", &m->timeouts.keepalive);
    one("expectContinue", &m->timeouts.expect_continue);
  }

  // llama-swap's rules: modalities text, audio or image; context >= 0.
  void Capabilities(const YamlNode& value, const std::string& at,
                    ModelConfig* m) {
    if (value.is_null()) return;
    if (!value.is_map()) {
      sink_->Error(value.pos, at,
                   absl::StrCat("must be a mapping, not ", value.KindName()));
      return;
    }
    CheckKeys(value, at,
              KeySet{{"in", "out", "tools", "reranker", "context"}, {}}, sink_);
    auto modalities = [&](const char* key, std::vector<std::string>* out) {
      const YamlNode* v = value.Get(key);
      std::string where = JoinPath(at, key);
      if (v == nullptr || !ReadStringList(*v, where, sink_, out)) return;
      for (size_t i = 0; i < out->size(); ++i) {
        const std::string& mod = (*out)[i];
        if (mod != "text" && mod != "audio" && mod != "image") {
          sink_->Error(v->is_seq() ? v->items[i].pos : v->pos,
                       absl::StrCat(where, "[", i, "]"),
                       absl::StrCat("invalid modality '", mod,
                                    "': text, audio or image"));
        }
      }
    };
    modalities("in", &m->capabilities.in);
    modalities("out", &m->capabilities.out);
    if (const YamlNode* v = value.Get("tools")) {
      ReadBool(*v, JoinPath(at, "tools"), sink_, &m->capabilities.tools);
    }
    if (const YamlNode* v = value.Get("reranker")) {
      ReadBool(*v, JoinPath(at, "reranker"), sink_, &m->capabilities.reranker);
    }
    if (const YamlNode* v = value.Get("context")) {
      int64_t n = 0;
      std::string where = JoinPath(at, "context");
      if (ReadInt(*v, where, sink_, &n)) {
        if (n < 0) {
          sink_->Error(v->pos, where, "must not be negative");
        } else {
          m->capabilities.context = n;
        }
      }
    }
  }

  void Compat(const YamlNode& value, const std::string& at, ModelConfig* m) {
    if (value.is_null()) return;
    if (!value.is_map()) {
      sink_->Error(value.pos, at,
                   absl::StrCat("must be a mapping, not ", value.KindName()));
      return;
    }
    CheckKeys(value, at, KeySet{{"ignoreWebsockets"}, {}}, sink_);
    if (const YamlNode* v = value.Get("ignoreWebsockets")) {
      ReadBool(*v, JoinPath(at, "ignoreWebsockets"), sink_,
               &m->ignore_websockets);
    }
  }

  void Resources(const YamlNode& value, const std::string& at, ModelConfig* m) {
    if (value.is_null()) {  // `resources:` alone: measured, any GPU.
      m->resources.set = true;
      return;
    }
    if (!value.is_map()) {
      sink_->Error(value.pos, at,
                   absl::StrCat("must be a mapping ({vramMiB: N, gpus: [0], "
                                "gpuCount: 1}), not ",
                                value.KindName()));
      return;
    }
    CheckKeys(value, at, ResourceKeys(), sink_);
    m->resources.set = true;
    int64_t n;
    if (const YamlNode* v = value.Get("vramMiB")) {
      std::string where = JoinPath(at, "vramMiB");
      if (ReadInt(*v, where, sink_, &n)) {
        if (n < 0 || n > (int64_t{1} << 30)) {
          sink_->Error(v->pos, where,
                       "must be between 0 (measured) and 2^30 MiB");
        } else {
          m->resources.vram_mib = n;
        }
      }
    }
    if (const YamlNode* v = value.Get("gpus")) {
      std::string where = JoinPath(at, "gpus");
      if (!v->is_seq()) {
        sink_->Error(
            v->pos, where,
            absl::StrCat("must be a list of GPU indexes, not ", v->KindName()));
      } else {
        for (size_t i = 0; i < v->items.size(); ++i) {
          std::string item = absl::StrCat(where, "[", i, "]");
          if (!ReadInt(v->items[i], item, sink_, &n)) continue;
          if (n < 0 || n > 1023) {
            sink_->Error(v->items[i].pos, item,
                         "must be a GPU index (0 to 1023)");
          } else if (std::find(m->resources.gpus.begin(),
                               m->resources.gpus.end(),
                               n) != m->resources.gpus.end()) {
            sink_->Error(v->items[i].pos, item,
                         absl::StrCat("GPU ", n, " is listed twice"));
          } else {
            m->resources.gpus.push_back(static_cast<int>(n));
          }
        }
      }
    }
    if (const YamlNode* v = value.Get("gpuCount")) {
      std::string where = JoinPath(at, "gpuCount");
      if (ReadInt(*v, where, sink_, &n)) {
        if (n < 1 || n > 1024) {
          sink_->Error(v->pos, where, "must be between 1 and 1024");
        } else if (!m->resources.gpus.empty() &&
                   n > static_cast<int64_t>(m->resources.gpus.size())) {
          sink_->Error(
              v->pos, where,
              absl::StrCat("is more than the ", m->resources.gpus.size(),
                           " GPU(s) `gpus` allows"));
        } else {
          m->resources.gpu_count = static_cast<int>(n);
        }
      }
    }
  }

  void Replicas(const YamlNode& value, const std::string& at, ModelConfig* m) {
    if (value.is_null()) return;
    if (!value.is_map()) {
      sink_->Error(value.pos, at,
                   absl::StrCat("must be a mapping ({max: N, "
                                "spilloverAfterMs: T}), not ",
                                value.KindName()));
      return;
    }
    CheckKeys(value, at, ReplicaKeys(), sink_);
    if (const YamlNode* v = value.Get("max")) {
      int64_t n;
      std::string where = JoinPath(at, "max");
      if (ReadInt(*v, where, sink_, &n)) {
        if (n < 1 || n > 1000) {
          sink_->Error(v->pos, where, "must be between 1 and 1000");
        } else {
          m->replicas.max = static_cast<int>(n);
        }
      }
    }
    if (const YamlNode* v = value.Get("spilloverAfterMs")) {
      int64_t ms;
      std::string where = JoinPath(at, "spilloverAfterMs");
      if (ReadInt(*v, where, sink_, &ms)) {
        if (ms < 0) {
          sink_->Error(v->pos, where, "must not be negative");
        } else {
          m->replicas.spillover_after = absl::Milliseconds(ms);
        }
      }
    }
  }

  void Aliases(const YamlNode& value, const std::string& at, ModelConfig* m) {
    if (!ReadStringList(value, at, sink_, &m->aliases)) return;
    for (size_t i = 0; i < m->aliases.size(); ++i) {
      if (m->aliases[i].empty()) {
        sink_->Error(value.items[i].pos, absl::StrCat(at, "[", i, "]"),
                     "an alias must not be empty");
      }
    }
  }

  void Env(const YamlNode& value, const std::string& at, ModelConfig* m) {
    static const LazyRE2 kEntry = {R"([A-Za-z_][A-Za-z0-9_]*=(?s:.*))"};
    if (!ReadStringList(value, at, sink_, &m->env)) return;
    for (size_t i = 0; i < m->env.size(); ++i) {
      if (!RE2::FullMatch(m->env[i], *kEntry)) {
        sink_->Error(
            value.items[i].pos, absl::StrCat(at, "[", i, "]"),
            absl::StrCat("must be KEY=value, not \"", m->env[i], "\""));
      }
    }
  }

  void ConcurrencyLimit(const YamlNode& value, const std::string& at,
                        ModelConfig* m) {
    int64_t n;
    if (!ReadInt(value, at, sink_, &n)) return;
    if (n < 0 || n > 1000000) {
      sink_->Error(value.pos, at,
                   "must be between 0 (default, 10) and 1000000");
      return;
    }
    m->concurrency_limit =
        n == 0 ? kDefaultConcurrencyLimit : static_cast<int>(n);
  }

  void Filters(const YamlNode& value, const std::string& at, ModelConfig* m) {
    if (value.is_null()) return;
    if (!value.is_map()) {
      sink_->Error(value.pos, at,
                   absl::StrCat("must be a mapping, not ", value.KindName()));
      return;
    }
    CheckKeys(value, at, FilterKeys(), sink_);
    const YamlNode* strip = value.Get("stripParams");
    if (strip == nullptr || (strip->is_scalar() && strip->text.empty())) {
      strip = value.Get("strip_params");  // llama-swap's legacy spelling.
    }
    if (strip != nullptr) StripParams(*strip, at + ".stripParams", m);
    if (const YamlNode* set = value.Get("setParams"); set != nullptr) {
      std::string set_at = at + ".setParams";
      if (!set->is_map() && !set->is_null()) {
        sink_->Error(set->pos, set_at,
                     absl::StrCat("must be a mapping, not ", set->KindName()));
        return;
      }
      m->filters.set_params = Value::Object();
      for (const auto& [k, v] : set->entries) {
        if (NamesTheModel(k.text)) {
          sink_->Warn(k.pos, JoinPath(set_at, k.text),
                      "the model cannot be set by a filter; ignored (use "
                      "useModelName)");
          continue;
        }
        m->filters.set_params.Set(k.text, ToValue(v));
      }
    }
    if (const YamlNode* by_id = value.Get("setParamsByID"); by_id != nullptr) {
      SetParamsByID(*by_id, at + ".setParamsByID", m);
    }
  }

  // Any mapping (llama-swap's map[string]any refuses anything else).
  void Metadata(const YamlNode& value, const std::string& at, ModelConfig* m) {
    if (!value.is_null() && !value.is_map()) {
      sink_->Error(value.pos, at,
                   absl::StrCat("must be a mapping, not ", value.KindName()));
      return;
    }
    m->metadata = ToValue(value);
  }

  // Requested name -> params. `${MODEL_ID}` in a name is the model's id
  // (llama-swap expands macros in the raw text, keys too; the usual use is
  // "${MODEL_ID}:variant"). Each name becomes an alias of the model.
  void SetParamsByID(const YamlNode& value, const std::string& at,
                     ModelConfig* m) {
    if (value.is_null()) return;
    if (!value.is_map()) {
      sink_->Error(value.pos, at,
                   absl::StrCat("must be a mapping of model name to "
                                "parameters, not ",
                                value.KindName()));
      return;
    }
    for (const auto& [k, v] : value.entries) {
      std::string name = absl::StrReplaceAll(k.text, {{"${MODEL_ID}", m->id}});
      std::string name_at = JoinPath(at, k.text);
      if (!MacroRefs(name).empty()) {
        sink_->Warn(k.pos, name_at,
                    "only ${MODEL_ID} is expanded in a setParamsByID name; "
                    "this one stays as written");
      }
      if (name.empty()) {
        sink_->Error(k.pos, name_at, "a model name must not be empty");
        continue;
      }
      if (m->filters.set_params_by_id.count(name) != 0) {
        // Two keys, one name once expanded (llama-swap's rule).
        sink_->Error(k.pos, name_at,
                     absl::StrCat("'", k.text, "' is '", name,
                                  "', a name another key already gives"));
        continue;
      }
      if (!v.is_map() && !v.is_null()) {
        sink_->Error(v.pos, name_at,
                     absl::StrCat("must be a mapping, not ", v.KindName()));
        continue;
      }
      Value params = Value::Object();
      for (const auto& [pk, pv] : v.entries) {
        if (NamesTheModel(pk.text)) {
          sink_->Warn(pk.pos, JoinPath(name_at, pk.text),
                      "the model cannot be set by a filter; ignored (use "
                      "useModelName)");
          continue;
        }
        params.Set(pk.text, ToValue(pv));
      }
      m->filters.set_params_by_id[name] = std::move(params);
    }
  }

  void StripParams(const YamlNode& value, const std::string& at,
                   ModelConfig* m) {
    std::string list;
    if (!ReadString(value, at, sink_, &list)) return;
    std::vector<std::string>& out = m->filters.strip_params;
    for (absl::string_view p : absl::StrSplit(list, ',')) {
      std::string param(absl::StripAsciiWhitespace(p));
      if (param.empty()) continue;
      if (NamesTheModel(param)) {
        sink_->Warn(
            value.pos, at,
            absl::StrCat("'", param, "' can never be stripped; ignored"));
        continue;
      }
      // In the order written (paths into one array depend on it), once.
      if (std::find(out.begin(), out.end(), param) == out.end()) {
        out.push_back(param);
      }
    }
  }

  void ReadyPattern(const YamlNode& value, const std::string& at,
                    ModelConfig* m) {
    std::string pattern;
    if (!ReadString(value, at, sink_, &pattern)) return;
    RE2 re(pattern, RE2::Quiet);
    if (!re.ok()) {
      sink_->Error(value.pos, at,
                   absl::StrCat("invalid regular expression: ", re.error()));
      return;
    }
    m->ready_pattern = pattern;
  }

  std::string path_;
  DiagSink* sink_;
};

// ${PORT} in a model whose cmd does not use it, and macros nobody defined.
void CheckLeftovers(const YamlNode& body, const std::string& path,
                    bool proxy_defaulted, DiagSink* sink) {
  ForEachScalar(&body, path, [&](const YamlNode* s, const std::string& at) {
    for (const std::string& ref : MacroRefs(s->text)) {
      if (ref.rfind("env.", 0) == 0) continue;  // Reported by ExpandEnv.
      if (ref == "PID" && (at == path + ".cmdStop" || at == path + ".sleep" ||
                           at == path + ".wake" || at == path + ".sleep.cmd" ||
                           at == path + ".wake.cmd")) {
        continue;
      }
      // The GPUs the scheduler places it on (docs/gpu.md), at spawn time.
      if (ref == "GPU" && body.Get("resources") != nullptr &&
          (at == path + ".cmd" || at.rfind(path + ".env", 0) == 0)) {
        continue;
      }
      if (ref == "PORT") {
        bool is_default = proxy_defaulted && at == path + ".proxy";
        sink->Error(s->pos, at,
                    is_default
                        ? "cmd does not use ${PORT}, so proxy must be set "
                          "(the default, http://localhost:${PORT}, needs it)"
                        : "uses ${PORT} but cmd does not (${PORT} is "
                          "assigned only to models whose cmd uses it)");
      } else if (ref == "PID") {
        sink->Error(s->pos, at,
                    "${PID} is only available in cmdStop and the sleep and "
                    "wake commands");
      } else if (ref == "GPU") {
        sink->Error(s->pos, at,
                    "${GPU} is only available in cmd and env of a model with "
                    "`resources`");
      } else {
        sink->Error(s->pos, at, absl::StrCat("unknown macro '${", ref, "}'"));
      }
    }
  });
}

// A `setParamsByID` name is not expanded but for ${MODEL_ID} (the
// decoder warns about a defined macro left as written); a macro defined
// nowhere is an error there, as llama-swap's expansion of the raw text
// refuses it.
void UnknownMacrosInSetParamsByIdNames(const YamlNode& body,
                                       const std::string& path,
                                       const MacroSet& macros, DiagSink* sink) {
  const YamlNode* filters = body.Get("filters");
  if (filters == nullptr || !filters->is_map()) return;
  const YamlNode* names = filters->Get("setParamsByID");
  if (names == nullptr || !names->is_map()) return;
  for (const auto& [key, value] : names->entries) {
    for (const std::string& ref : MacroRefs(key.text)) {
      // MODEL_ID is among a model's macros.
      if (ref == "PORT" || ref == "PID" || ref == "GPU" ||
          macros.Defines(ref)) {
        continue;
      }
      sink->Error(key.pos, JoinPath(path + ".filters.setParamsByID", key.text),
                  absl::StrCat("unknown macro '${", ref, "}'"));
    }
  }
}

}  // namespace

const KeySet& ModelTimeoutKeys() { return TimeoutKeys(); }
const KeySet& ModelFilterKeys() { return FilterKeys(); }

const KeySet& ModelKeys() {
  static const KeySet keys = {
      {"cmd", "cmdStop", "proxy", "checkEndpoint", "ttl", "unloadTimeout",
       "aliases", "env", "name", "description", "unlisted", "metadata",
       "useModelName", "concurrencyLimit", "filters", "macros", "timeouts",
       "sendLoadingState",
       // modelplane extensions (docs/config.md).
       "healthCheckTimeout", "readyPattern", "maxQueueWait", "priority",
       "replicas", "compat", "capabilities", "tls", "resources", "sleep",
       "wake"},
      {}};
  return keys;
}

std::optional<PeerConfig> DecodePeer(const std::string& id, SourcePos key_pos,
                                     const YamlNode& node, DiagSink* sink) {
  std::string path = absl::StrCat("peers.", id);
  size_t errors_before = sink->error_count();
  if (id.empty() || id.find('/') != std::string::npos) {
    sink->Error(key_pos, path,
                "a peer id must be non-empty and without '/' (its models are "
                "named <peer>/<model>)");
    return std::nullopt;
  }
  if (!node.is_map()) {
    sink->Error(node.pos, path,
                absl::StrCat("must be a mapping with 'proxy' and 'models', "
                             "not ",
                             node.KindName()));
    return std::nullopt;
  }
  CheckKeys(node, path, PeerKeys(), sink);
  PeerConfig p;
  p.id = id;
  p.pos = key_pos;
  FieldDecoder fields(path, sink);
  if (const YamlNode* proxy = node.Get("proxy"); proxy == nullptr) {
    sink->Error(key_pos, path, "missing required key 'proxy'");
  } else {
    // A path after the host is the peer's base: requests go under it
    // (`http://host/api`: /v1/chat/completions to /api/v1/chat/completions),
    // as llama-swap forwards them.
    fields.Proxy(*proxy, path + ".proxy", &p.proxy);
  }
  if (const YamlNode* tls = node.Get("tls"); tls != nullptr) {
    DecodeUpstreamTls(*tls, path + ".tls", &p.tls, sink);
  }
  std::vector<std::string> models;
  if (const YamlNode* list = node.Get("models"); list == nullptr) {
    sink->Error(key_pos, path, "missing required key 'models'");
  } else if (ReadStringList(*list, path + ".models", sink, &models)) {
    for (size_t i = 0; i < models.size(); ++i) {
      if (models[i].empty()) {
        sink->Error(list->items[i].pos, absl::StrCat(path, ".models[", i, "]"),
                    "a model name must not be empty");
      } else if (std::find(p.models.begin(), p.models.end(), models[i]) ==
                 p.models.end()) {
        p.models.push_back(models[i]);
      }
    }
    if (models.empty()) {
      sink->Error(list->pos, path + ".models", "must name at least one model");
    }
  }
  if (const YamlNode* key = node.Get("apiKey");
      key != nullptr && ReadString(*key, path + ".apiKey", sink, &p.api_key)) {
    if (std::any_of(p.api_key.begin(), p.api_key.end(), [](char c) {
          return static_cast<unsigned char>(c) < 0x20 || c == ' ' || c == 0x7f;
        })) {
      // It goes into a header line as it is.
      sink->Error(key->pos, path + ".apiKey",
                  "must not contain spaces or control characters (a trailing "
                  "newline from a file?)");
    }
  }
  // filters and timeouts read as a model's.
  YamlNode rest;
  rest.kind = YamlNode::Kind::kMapping;
  for (const auto& entry : node.entries) {
    if (entry.first.text == "filters" || entry.first.text == "timeouts") {
      rest.entries.push_back(entry);
    }
  }
  ModelConfig m;
  fields.Decode(rest, ModelDefaults{}, &m);
  if (!m.filters.set_params_by_id.empty()) {
    const YamlNode* by_id = node.Get("filters")->Get("setParamsByID");
    sink->Warn(by_id != nullptr ? by_id->pos : key_pos,
               path + ".filters.setParamsByID",
               "not applied to a peer's models; ignored");
    m.filters.set_params_by_id.clear();
  }
  p.filters = std::move(m.filters);
  p.timeouts = m.timeouts;
  if (node.Get("tls") != nullptr && !absl::StartsWith(p.proxy, "https://")) {
    sink->Warn(node.Get("tls")->pos, path + ".tls",
               "ignored: the proxy is not https://");
  }
  if (sink->error_count() > errors_before) return std::nullopt;
  return p;
}

PortAllocator::PortAllocator(int start_port, std::map<std::string, int> kept,
                             std::set<int> literal)
    : next_(start_port), kept_(std::move(kept)), reserved_(std::move(literal)) {
  for (const auto& [id, port] : kept_) reserved_.insert(port);
}

namespace {

// "host:port" of an http:// URL, or "" when it is no such URL.
absl::string_view Authority(absl::string_view url) {
  if (!absl::ConsumePrefix(&url, "http://")) return "";
  return url.substr(0, url.find_first_of("/?#"));
}

}  // namespace

std::optional<int> UrlPort(absl::string_view url) {
  absl::string_view a = Authority(url);
  if (a.empty()) return std::nullopt;
  size_t colon = a.rfind(':');
  if (colon == absl::string_view::npos || a.find(']', colon) != a.npos) {
    return 80;
  }
  int port = 0;
  if (!absl::SimpleAtoi(a.substr(colon + 1), &port)) return std::nullopt;
  return port;
}

int PortAllocator::Take(const std::string& id) {
  if (auto it = kept_.find(id); it != kept_.end()) return it->second;
  while (reserved_.count(next_) != 0) ++next_;
  return next_++;
}

std::optional<ModelConfig> DecodeModel(const std::string& id, SourcePos key_pos,
                                       const YamlNode& node,
                                       const MacroSet& globals,
                                       const ModelDefaults& defaults,
                                       PortAllocator* ports, DiagSink* sink) {
  std::string path = absl::StrCat("models.", id);
  size_t errors_before = sink->error_count();
  if (!node.is_map()) {
    sink->Error(node.pos, path,
                absl::StrCat("must be a mapping with at least 'cmd', not ",
                             node.KindName()));
    return std::nullopt;
  }
  CheckKeys(node, path, ModelKeys(), sink);
  MacroSet macros = globals.ForModel(id, node.Get("macros"), sink);
  YamlNode body = node;
  body.entries.erase(
      std::remove_if(body.entries.begin(), body.entries.end(),
                     [](const auto& e) { return e.first.text == "macros"; }),
      body.entries.end());
  bool has_cmd = false;
  bool proxy_defaulted = true;
  for (auto& [key, value] : body.entries) {
    // Comment lines go before macros expand, so a commented-out flag may
    // name a macro that does not exist.
    if ((key.text == "cmd" || key.text == "cmdStop") && value.is_scalar()) {
      value.text = SanitizeCommand(value.text);
    }
    if (key.text == "cmd") has_cmd = true;
    if (key.text == "proxy" && !value.is_null()) proxy_defaulted = false;
  }
  if (!has_cmd) {
    sink->Error(key_pos, path, "missing required key 'cmd'");
    return std::nullopt;
  }
  if (proxy_defaulted) {
    body.entries.erase(
        std::remove_if(body.entries.begin(), body.entries.end(),
                       [](const auto& e) { return e.first.text == "proxy"; }),
        body.entries.end());
    body.entries.emplace_back(
        Scalar("proxy", true, key_pos),
        Scalar("http://localhost:${PORT}", true, key_pos));
  }
  macros.Expand(&body);
  UnknownMacrosInSetParamsByIdNames(body, path, macros, sink);
  ModelConfig m;
  m.id = id;
  m.pos = key_pos;
  m.proxy = "";
  m.check_endpoint = "/health";
  m.health_check_timeout = defaults.health_check_timeout;
  m.ttl = defaults.ttl;
  m.unload_timeout = defaults.unload_timeout;
  m.max_queue_wait = kDefaultMaxQueueWait;
  const YamlNode* expanded_cmd = body.Get("cmd");
  if (expanded_cmd->is_scalar() && UsesMacro(expanded_cmd->text, "PORT")) {
    m.port = ports->Take(id);
    MacroSet::Substitute(&body, "PORT",
                         Scalar(std::to_string(m.port), false, key_pos));
  }
  CheckLeftovers(body, path, proxy_defaulted, sink);
  FieldDecoder(path, sink).Decode(body, defaults, &m);
  if (sink->error_count() > errors_before) return std::nullopt;
  return m;
}

}  // namespace modelplane::config
