#include "server/core/config/loader.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "re2/re2.h"
#include "server/core/config/decode_util.h"
#include "server/core/config/diag_sink.h"
#include "server/core/config/model_decoder.h"
#include "server/core/config/routing_decoder.h"
#include "server/core/config/yaml_tree.h"

namespace modelplane::config {
namespace {

// Reserved for the manager's own log in StreamLogs.
constexpr char kReservedName[] = "manager";
constexpr int kMaxPort = 65535;

const KeySet& TopKeys() {
  static const KeySet keys = {
      {"models", "macros", "healthCheckTimeout", "globalTTL", "unloadTimeout",
       "startPort", "logLevel", "apiKeys", "groups", "routing", "hooks",
       "includeAliasesInList", "sendLoadingState", "upstream", "peers",
       "selectors", "profiles", "logToStdout", "matrix", "metricsMaxInMemory",
       "store",
       // modelplane's extension (docs/gpu.md).
       "gpu"},
      {"logTimeFormat", "logRequests", "captureBuffer", "ui", "performance"}};
  return keys;
}

const KeySet& GroupKeys() {
  static const KeySet keys = {{"swap", "exclusive", "persistent", "members"},
                              {}};
  return keys;
}

class Loader {
 public:
  Loader(absl::string_view file, const EnvLookup& env, const PortHints* hints)
      : sink_(std::string(file)), env_(env), hints_(hints) {}

  LoadResult Run(absl::string_view text) {
    auto config = std::make_shared<Config>();
    config->file = sink_.file();
    Diagnostic syntax;
    std::optional<YamlNode> root = ParseYaml(text, &syntax);
    if (!root) {
      sink_.Error(syntax.pos, "", syntax.message);
    } else if (!root->is_map()) {
      sink_.Error(root->pos, "",
                  root->is_null()
                      ? "the file is empty: it needs a 'models' mapping"
                      : absl::StrCat("the file must be a mapping of settings, "
                                     "not ",
                                     root->KindName()));
    } else {
      Load(&*root, config.get());
    }
    LoadResult result;
    result.errors = sink_.TakeErrors();
    result.warnings = sink_.TakeWarnings();
    if (result.errors.empty()) result.config = std::move(config);
    return result;
  }

  // Several files (--config-dir): each parsed with its own positions, their
  // top-level settings merged (Merge), then loaded as one.
  LoadResult RunFiles(
      const std::vector<std::pair<std::string, std::string>>& files) {
    if (files.size() == 1) return Run(files[0].second);
    auto config = std::make_shared<Config>();
    config->file = sink_.file();
    YamlNode merged;
    merged.kind = YamlNode::Kind::kMapping;
    for (size_t i = 0; i < files.size(); ++i) {
      if (i > 0) sink_.AddFile(files[i].first);
      Diagnostic syntax;
      std::optional<YamlNode> root =
          ParseYaml(files[i].second, &syntax, static_cast<int>(i));
      if (!root) {
        sink_.Error(syntax.pos, "", syntax.message);
      } else if (root->is_null()) {
        // Empty, or comments only: as a lone config file is refused, so is
        // one of several (a file truncated while it is saved would stop its
        // models on a reload). Remove the file to drop what it held.
        sink_.Error(root->pos, "",
                    "the file is empty: it needs settings (remove the file "
                    "to drop what it held)");
      } else if (root->is_map()) {
        // `models:` with every model commented out: refused as in a lone
        // file, where the null would otherwise give way in the merge.
        for (const auto& [key, value] : root->entries) {
          if (key.text == "models" && value.is_null()) {
            sink_.Error(key.pos, "models",
                        "is empty (null): write 'models: {}' for a file "
                        "without models, or leave the key out");
          }
        }
        Merge(*root, &merged, "");
      } else {
        sink_.Error(root->pos, "",
                    absl::StrCat("the file must be a mapping of settings, "
                                 "not ",
                                 root->KindName()));
      }
    }
    if (sink_.error_count() == 0) {
      if (merged.entries.empty()) {
        sink_.Error(SourcePos{}, "",
                    "the files are empty: they need a 'models' mapping");
      } else {
        Load(&merged, config.get());
      }
    }
    LoadResult result;
    result.errors = sink_.TakeErrors();
    result.warnings = sink_.TakeWarnings();
    if (result.errors.empty()) result.config = std::move(config);
    return result;
  }

 private:
  // llama-swap's merge (its internal/config/merge.go): mappings merge key by
  // key, lists are joined, an equal scalar is accepted and a null gives way;
  // in a mapping of things by id (models, groups, peers, profiles,
  // selectors, and the matrix, whose vars, evict_costs and sets go in one
  // file: also in their routing forms) a key in two files is an error, as
  // is a setting made differently in two. A macro defined in two files with
  // the same value is accepted, as there.
  static bool ById(const std::string& path) {
    static const auto* kPaths =
        new absl::flat_hash_set<std::string>{"models",
                                             "groups",
                                             "peers",
                                             "profiles",
                                             "selectors",
                                             "matrix",
                                             "routing.router.settings.groups",
                                             "routing.router.settings.matrix"};
    return kPaths->contains(path);
  }

  void Merge(const YamlNode& from, YamlNode* into, const std::string& path) {
    auto where = [this](SourcePos p) {
      return absl::StrCat(sink_.NameOf(p), ":", p.line, ":", p.column);
    };
    if (from.is_null()) return;
    if (into->is_null()) {
      *into = from;
      return;
    }
    if (into->is_map() && from.is_map()) {
      bool by_id = ById(path);
      for (const auto& [key, value] : from.entries) {
        auto it = std::find_if(
            into->entries.begin(), into->entries.end(),
            [&key = key](const auto& e) { return e.first.text == key.text; });
        if (it == into->entries.end()) {
          into->entries.emplace_back(key, value);
        } else if (by_id) {
          sink_.Error(key.pos, JoinPath(path, key.text),
                      absl::StrCat("defined again (first at ",
                                   where(it->first.pos), ")"));
        } else {
          Merge(value, &it->second, JoinPath(path, key.text));
        }
      }
      return;
    }
    if (into->is_seq() && from.is_seq()) {
      into->items.insert(into->items.end(), from.items.begin(),
                         from.items.end());
      return;
    }
    if (into->is_scalar() && from.is_scalar() && into->text == from.text) {
      return;
    }
    sink_.Error(from.pos, path,
                absl::StrCat("set differently in two files (first at ",
                             where(into->pos), ")"));
  }

  void Load(YamlNode* root, Config* c) {
    CheckKeys(*root, "", TopKeys(), &sink_);
    // A top-level key that is not a setting here (one warning above) goes
    // whole, with its macros: a YAML anchor holder (`x-defaults: &model`,
    // merged into models by `<<: *model`, already copied there by the
    // parser) holds `${PORT}` that only a model can expand.
    const KeySet& top = TopKeys();
    root->entries.erase(
        std::remove_if(root->entries.begin(), root->entries.end(),
                       [&top](const auto& e) {
                         return std::find(top.supported.begin(),
                                          top.supported.end(),
                                          e.first.text) == top.supported.end();
                       }),
        root->entries.end());
    ExpandEnv(root, "", env_, &sink_);
    MacroSet globals = MacroSet::Global(root->Get("macros"), &sink_);
    // Global macros apply to every setting outside `models` (no MODEL_ID).
    YamlNode settings = *root;
    settings.entries.erase(
        std::remove_if(settings.entries.begin(), settings.entries.end(),
                       [](const auto& e) {
                         return e.first.text == "models" ||
                                e.first.text == "macros";
                       }),
        settings.entries.end());
    globals.Expand(&settings);
    ForEachScalar(&settings, "", [&](const YamlNode* s, const std::string& at) {
      for (const std::string& ref : MacroRefs(s->text)) {
        if (ref.rfind("env.", 0) == 0) continue;
        sink_.Error(s->pos, at, absl::StrCat("unknown macro '${", ref, "}'"));
      }
    });
    Globals(settings, c);
    SourcePos models_at;
    for (const auto& [key, value] : root->entries) {
      if (key.text == "models") models_at = key.pos;
    }
    Models(root->Get("models"), models_at, globals, c);
    DecodePeers(settings.Get("peers"), c, &sink_);
    Groups(settings, c);
    Aliases(*root, c);
    DecodeSelectors(settings.Get("selectors"), c, &sink_);
    CheckSpilloverTargetsCoexist(*c, &sink_);
    CheckPeerNames(*c, &sink_);
    DecodeProfiles(settings.Get("profiles"), c, &sink_);
    Priorities(settings, c);
    Preload(settings, c);
  }

  void Globals(const YamlNode& s, Config* c) {
    c->health_check_timeout = absl::Seconds(120);
    c->unload_timeout = absl::Seconds(10);
    c->global_ttl = absl::ZeroDuration();
    double secs;
    if (const YamlNode* n = s.Get("healthCheckTimeout");
        n != nullptr && ReadSeconds(*n, "healthCheckTimeout", &sink_, &secs)) {
      if (secs <= 0) {
        sink_.Error(n->pos, "healthCheckTimeout", "must be positive");
      } else {
        c->health_check_timeout = Seconds(secs);
      }
    }
    if (const YamlNode* n = s.Get("globalTTL");
        n != nullptr && ReadSeconds(*n, "globalTTL", &sink_, &secs)) {
      if (secs < 0) {
        sink_.Error(n->pos, "globalTTL", "must not be negative (0: never)");
      } else {
        c->global_ttl = Seconds(secs);
      }
    }
    if (const YamlNode* n = s.Get("unloadTimeout");
        n != nullptr && ReadSeconds(*n, "unloadTimeout", &sink_, &secs)) {
      if (secs < 0) {
        sink_.Error(n->pos, "unloadTimeout", "must not be negative");
      } else if (secs > 0) {
        c->unload_timeout = Seconds(secs);
      }
    }
    int64_t port;
    if (const YamlNode* n = s.Get("startPort");
        n != nullptr && ReadInt(*n, "startPort", &sink_, &port)) {
      if (port < 1 || port > kMaxPort) {
        sink_.Error(n->pos, "startPort", "must be between 1 and 65535");
      } else {
        c->start_port = static_cast<int>(port);
      }
    }
    int64_t activity;
    if (const YamlNode* n = s.Get("metricsMaxInMemory");
        n != nullptr && ReadInt(*n, "metricsMaxInMemory", &sink_, &activity)) {
      if (activity < 1 || activity > 1000000) {
        sink_.Error(n->pos, "metricsMaxInMemory",
                    "must be between 1 and 1000000");
      } else {
        c->metrics_max_in_memory = static_cast<int>(activity);
      }
    }
    std::string level;
    if (const YamlNode* n = s.Get("logLevel");
        n != nullptr && ReadString(*n, "logLevel", &sink_, &level)) {
      level = absl::AsciiStrToLower(absl::StripAsciiWhitespace(level));
      if (level == "debug" || level == "info" || level == "warn" ||
          level == "error") {
        c->log_level = level;
      } else {
        sink_.Warn(n->pos, "logLevel",
                   absl::StrCat("unknown level \"", level,
                                "\" (debug, info, warn, error); using info"));
      }
    }
    if (const YamlNode* n = s.Get("logToStdout");
        n != nullptr && !n->is_null() &&  // Blank: the default stays.
        ReadString(*n, "logToStdout", &sink_, &c->log_to_stdout)) {
      if (c->log_to_stdout != "proxy" && c->log_to_stdout != "upstream" &&
          c->log_to_stdout != "both" && c->log_to_stdout != "none") {
        sink_.Error(n->pos, "logToStdout",
                    absl::StrCat("must be proxy, upstream, both or none, not "
                                 "\"",
                                 c->log_to_stdout, "\""));
      }
    }
    if (const YamlNode* n = s.Get("sendLoadingState"); n != nullptr) {
      ReadBool(*n, "sendLoadingState", &sink_, &c->send_loading_state);
    }
    if (const YamlNode* n = s.Get("includeAliasesInList"); n != nullptr) {
      ReadBool(*n, "includeAliasesInList", &sink_, &c->include_aliases_in_list);
    }
    if (const YamlNode* n = s.Get("upstream"); n != nullptr) Upstream(*n, c);
    if (const YamlNode* n = s.Get("gpu"); n != nullptr) Gpu(*n, c);
    if (const YamlNode* n = s.Get("store"); n != nullptr) Store(*n, c);
    if (const YamlNode* n = s.Get("apiKeys");
        n != nullptr && ReadStringList(*n, "apiKeys", &sink_, &c->api_keys)) {
      for (size_t i = 0; i < c->api_keys.size(); ++i) {
        const std::string& key = c->api_keys[i];
        if (key.empty() || key.find_first_of(" \t\r\n") != std::string::npos) {
          sink_.Error(n->items[i].pos, absl::StrCat("apiKeys[", i, "]"),
                      "an API key must be non-empty, without spaces");
        }
      }
    }
  }

  void Models(const YamlNode* models, SourcePos key_pos,
              const MacroSet& globals, Config* c) {
    // Missing or null (every model commented out) is refused like an empty
    // file: on a reload it would stop every model. `models: {}` says so.
    if (models == nullptr || models->is_null()) {
      sink_.Error(models != nullptr ? key_pos : SourcePos{}, "models",
                  models != nullptr
                      ? "is empty (null): a config needs a 'models' mapping "
                        "(write 'models: {}' to run no models)"
                      : "missing: a config needs a 'models' mapping (write "
                        "'models: {}' to run no models)");
      return;
    }

    if (!models->is_map()) {
      sink_.Error(models->pos, "models",
                  absl::StrCat("must be a mapping of model id to settings, "
                               "not ",
                               models->KindName()));
      return;
    }
    std::vector<const std::pair<YamlNode, YamlNode>*> sorted;
    for (const auto& entry : models->entries) sorted.push_back(&entry);
    std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) {
      return a->first.text < b->first.text;
    });
    ModelDefaults defaults{c->health_check_timeout, c->global_ttl,
                           c->unload_timeout, c->send_loading_state};
    // Ports other models name themselves (`proxy: http://127.0.0.1:5801`)
    // are never handed out as ${PORT}: the two would answer for each other.
    std::set<int> literal;
    for (const auto* entry : sorted) {
      const YamlNode* proxy =
          entry->second.is_map() ? entry->second.Get("proxy") : nullptr;
      if (proxy == nullptr || !proxy->is_scalar() ||
          proxy->text.find('$') != std::string::npos) {
        continue;
      }
      if (std::optional<int> port = UrlPort(proxy->text)) literal.insert(*port);
    }
    // A reload: the models that were there keep their ports (unless
    // startPort moved, or another model now names that port itself), so
    // adding one restarts no other.
    std::map<std::string, int> kept;
    if (hints_ != nullptr && hints_->start_port == c->start_port) {
      for (const auto* entry : sorted) {
        auto it = hints_->ports.find(entry->first.text);
        if (it != hints_->ports.end() && literal.count(it->second) == 0) {
          kept.insert(*it);
        }
      }
    }
    PortAllocator ports(c->start_port, std::move(kept), std::move(literal));
    for (const auto* entry : sorted) {
      const std::string& id = entry->first.text;
      if (id.empty() || id == kReservedName) {
        sink_.Error(entry->first.pos, absl::StrCat("models.", id),
                    id.empty() ? "a model id must not be empty"
                               : "the model id 'manager' is reserved (it "
                                 "names the manager's own log)");
        continue;
      }
      std::optional<ModelConfig> m =
          DecodeModel(id, entry->first.pos, entry->second, globals, defaults,
                      &ports, &sink_);
      if (m && m->port > kMaxPort) {
        sink_.Error(entry->first.pos, absl::StrCat("models.", id),
                    absl::StrCat("${PORT} would be ", m->port,
                                 ", past 65535 (lower startPort)"));
      }
      if (m) c->models.push_back(*std::move(m));
    }
  }

  // `upstream.ignorePaths`: RE2 patterns (llama-swap's), checked here.
  // store: {path, maxRows}: the activity log's SQLite file.
  // A block, as in llama-swap, needs its file (a path blank once trimmed
  // is none); `store: ~` is no store.
  void Store(const YamlNode& n, Config* c) {
    if (n.is_null()) return;
    if (!n.is_map()) {
      sink_.Error(n.pos, "store",
                  absl::StrCat("must be a mapping, not ", n.KindName()));
      return;
    }
    CheckKeys(n, "store", KeySet{{"path", "maxRows"}, {}}, &sink_);
    if (const YamlNode* p = n.Get("path"); p == nullptr) {
      sink_.Error(n.pos, "store", "missing required key 'path'");
    } else if (ReadString(*p, "store.path", &sink_, &c->store_path) &&
               absl::StripAsciiWhitespace(c->store_path).empty()) {
      sink_.Error(p->pos, "store.path", "must not be empty");
    }
    int64_t rows;
    if (const YamlNode* r = n.Get("maxRows");
        r != nullptr && ReadInt(*r, "store.maxRows", &sink_, &rows)) {
      if (rows < 1 || rows > 100000000) {
        sink_.Error(r->pos, "store.maxRows", "must be between 1 and 100000000");
      } else {
        c->store_max_rows = rows;
      }
    }
  }

  void Upstream(const YamlNode& n, Config* c) {
    if (n.is_null()) return;
    if (!n.is_map()) {
      sink_.Error(n.pos, "upstream",
                  absl::StrCat("must be a mapping, not ", n.KindName()));
      return;
    }
    CheckKeys(n, "upstream", KeySet{{"ignorePaths"}, {}}, &sink_);
    const YamlNode* paths = n.Get("ignorePaths");
    std::vector<std::string> patterns;
    if (paths == nullptr ||
        !ReadStringList(*paths, "upstream.ignorePaths", &sink_, &patterns)) {
      return;
    }
    for (size_t i = 0; i < patterns.size(); ++i) {
      RE2 re(patterns[i], RE2::Quiet);
      if (!re.ok()) {
        sink_.Error(paths->items[i].pos,
                    absl::StrCat("upstream.ignorePaths[", i, "]"),
                    absl::StrCat("invalid pattern: ", re.error()));
      }
    }
    // An empty list is the default, as in llama-swap (a pattern nothing
    // matches ignores nothing).
    if (!patterns.empty()) c->upstream_ignore_paths = std::move(patterns);
  }

  void Gpu(const YamlNode& n, Config* c) {
    if (n.is_null()) return;
    if (!n.is_map()) {
      sink_.Error(n.pos, "gpu",
                  absl::StrCat("must be a mapping ({reservePercent: P, "
                               "memoryWaitTimeout: S}), not ",
                               n.KindName()));
      return;
    }
    CheckKeys(n, "gpu", KeySet{{"reservePercent", "memoryWaitTimeout"}, {}},
              &sink_);
    double v;
    if (const YamlNode* r = n.Get("reservePercent");
        r != nullptr &&
        ReadNumber(*r, "gpu.reservePercent", &sink_, "a percentage", &v)) {
      if (v < 0 || v >= 100) {
        sink_.Error(r->pos, "gpu.reservePercent",
                    "must be at least 0 and below 100");
      } else {
        c->gpu_reserve_percent = v;
      }
    }
    if (const YamlNode* w = n.Get("memoryWaitTimeout");
        w != nullptr && ReadSeconds(*w, "gpu.memoryWaitTimeout", &sink_, &v)) {
      if (v < 0) {
        sink_.Error(w->pos, "gpu.memoryWaitTimeout", "must not be negative");
      } else {
        c->gpu_memory_wait = Seconds(v);
      }
    }
  }

  // Also finds the matrix, if the config uses one (then no groups).
  const YamlNode* FindGroups(const YamlNode& s, const YamlNode** matrix,
                             std::string* matrix_path) {
    const YamlNode* legacy = s.Get("groups");
    // The legacy forms, when routing.router does not choose.
    auto legacy_forms = [&]() -> const YamlNode* {
      const YamlNode* m = s.Get("matrix");
      if (m == nullptr) return legacy;
      if (legacy != nullptr) {
        sink_.Error(m->pos, "matrix",
                    "cannot be used together with 'groups' (the matrix "
                    "decides which models run together)");
      }
      *matrix = m;
      *matrix_path = "matrix";
      return nullptr;
    };
    const YamlNode* routing = s.Get("routing");
    if (routing == nullptr || routing->is_null()) return legacy_forms();
    if (!routing->is_map()) {
      sink_.Error(routing->pos, "routing", "must be a mapping");
      return legacy_forms();
    }
    CheckKeys(*routing, "routing", KeySet{{"router", "scheduler"}, {}}, &sink_);
    const YamlNode* router = routing->Get("router");
    if (router == nullptr || router->is_null()) return legacy_forms();
    if (legacy != nullptr || s.Get("matrix") != nullptr) {
      sink_.Error(router->pos, "routing.router",
                  "cannot be used together with the legacy top-level "
                  "'groups' or 'matrix' keys");
    }
    if (!router->is_map()) {
      sink_.Error(router->pos, "routing.router", "must be a mapping");
      return nullptr;
    }
    CheckKeys(*router, "routing.router", KeySet{{"use", "settings"}, {}},
              &sink_);
    std::string use = "group";
    if (const YamlNode* u = router->Get("use"); u != nullptr) {
      ReadString(*u, "routing.router.use", &sink_, &use);
      if (use == "matrix") {
        const YamlNode* settings = router->Get("settings");
        const YamlNode* m = settings != nullptr && settings->is_map()
                                ? settings->Get("matrix")
                                : nullptr;
        if (m == nullptr) {
          sink_.Error(u->pos, "routing.router.use",
                      "is matrix, but routing.router.settings.matrix is "
                      "missing");
        } else {
          CheckKeys(*settings, "routing.router.settings",
                    KeySet{{"matrix", "groups"}, {}}, &sink_);
          if (const YamlNode* g = settings->Get("groups")) {
            // llama-swap's example holds both: the one not in use waits.
            sink_.Warn(g->pos, "routing.router.settings.groups",
                       "ignored while routing.router.use is matrix");
          }
          *matrix = m;
          *matrix_path = "routing.router.settings.matrix";
        }
        return nullptr;
      }
      if (use != "group" && !use.empty()) {
        sink_.Error(
            u->pos, "routing.router.use",
            absl::StrCat("must be 'group' or 'matrix', not \"", use, "\""));
      }
    }
    const YamlNode* settings = router->Get("settings");
    if (settings == nullptr || !settings->is_map()) return nullptr;
    CheckKeys(*settings, "routing.router.settings",
              KeySet{{"groups", "matrix"}, {}}, &sink_);
    if (const YamlNode* m = settings->Get("matrix")) {
      sink_.Warn(m->pos, "routing.router.settings.matrix",
                 "ignored while routing.router.use is group (the default)");
    }
    return settings->Get("groups");
  }

  void Groups(const YamlNode& s, Config* c) {
    const YamlNode* matrix = nullptr;
    std::string matrix_path;
    const YamlNode* groups = FindGroups(s, &matrix, &matrix_path);
    if (matrix != nullptr) DecodeMatrix(*matrix, matrix_path, c, &sink_);
    absl::flat_hash_map<std::string, std::string> group_of;
    if (groups != nullptr && !groups->is_null() && !groups->is_map()) {
      sink_.Error(groups->pos, "groups",
                  "must be a mapping of group id to "
                  "settings");
    } else if (groups != nullptr) {
      for (const auto& [key, node] : groups->entries) {
        std::string path = absl::StrCat("groups.", key.text);
        if (key.text == kDefaultGroup) {
          sink_.Error(key.pos, path, "the group id '(default)' is reserved");
          continue;
        }
        if (!node.is_map()) {
          sink_.Error(node.pos, path, "must be a mapping with 'members'");
          continue;
        }
        CheckKeys(node, path, GroupKeys(), &sink_);
        GroupConfig g;
        g.id = key.text;
        if (const YamlNode* n = node.Get("swap")) {
          ReadBool(*n, path + ".swap", &sink_, &g.swap);
        }
        if (const YamlNode* n = node.Get("exclusive")) {
          ReadBool(*n, path + ".exclusive", &sink_, &g.exclusive);
        }
        if (const YamlNode* n = node.Get("persistent")) {
          ReadBool(*n, path + ".persistent", &sink_, &g.persistent);
        }
        const YamlNode* members = node.Get("members");
        std::vector<std::string> names;
        if (members != nullptr &&
            ReadStringList(*members, path + ".members", &sink_, &names)) {
          for (size_t i = 0; i < names.size(); ++i) {
            Member(names[i], members->items[i].pos,
                   absl::StrCat(path, ".members[", i, "]"), c, &g, &group_of);
          }
        }
        c->groups.push_back(std::move(g));
      }
    }
    GroupConfig implicit;
    implicit.id = kDefaultGroup;
    for (ModelConfig& m : c->models) {
      auto it = group_of.find(m.id);
      m.group = it == group_of.end() ? kDefaultGroup : it->second;
      if (it == group_of.end()) implicit.members.push_back(m.id);
    }
    if (!implicit.members.empty()) c->groups.push_back(std::move(implicit));
  }

  // A group's member. Listed twice, or in two groups, is an error for any
  // name; a name that is not a model id (a selector, an alias, a typo) is
  // warned and left out, as llama-swap loads it and never matches it
  // (llama-swap's own config.example.yaml lists its selector "llama").
  void Member(const std::string& name, SourcePos pos, const std::string& path,
              const Config* c, GroupConfig* g,
              absl::flat_hash_map<std::string, std::string>* group_of) {
    const ModelConfig* m = c->FindModel(name);
    if (auto [it, inserted] = group_of->emplace(name, g->id); !inserted) {
      sink_.Error(
          pos, path,
          it->second == g->id
              ? absl::StrCat("'", name, "' is listed twice")
              : absl::StrCat(m != nullptr ? "model '" : "'", name,
                             "' is already a member of group '", it->second,
                             "' (a model is in at most one group)"));
    } else if (m == nullptr) {
      sink_.Warn(
          pos, path,
          absl::StrCat("'", name, "' is not a model; left out of the group"));
    } else if (m->id != name) {
      sink_.Warn(pos, path,
                 absl::StrCat("'", name, "' is an alias of model '", m->id,
                              "'; left out of the group (groups list model "
                              "ids: list '",
                              m->id, "')"));
    } else {
      g->members.push_back(name);
    }
  }

  void Aliases(const YamlNode& root, const Config* c) {
    absl::flat_hash_map<std::string, std::string> owner;
    for (const ModelConfig& m : c->models) owner[m.id] = m.id;
    for (const ModelConfig& m : c->models) {
      const YamlNode* declared = ModelKey(root, m.id, "aliases");
      size_t n_declared = declared != nullptr && declared->is_seq()
                              ? declared->items.size()
                              : 0;
      for (size_t i = 0; i < m.aliases.size(); ++i) {
        const std::string& alias = m.aliases[i];
        std::string path = absl::StrCat("models.", m.id, ".aliases[", i, "]");
        SourcePos pos = AliasPos(root, m.id, i);
        if (i >= n_declared) {
          // A setParamsByID name (the decoder appends those last).
          path = absl::StrCat("models.", m.id, ".filters.setParamsByID");
          if (const YamlNode* by_id = ByIdKey(root, m.id, alias)) {
            path = JoinPath(path, by_id->text);
            pos = by_id->pos;
          }
        }
        if (alias == kReservedName) {
          sink_.Error(pos, path, "the name 'manager' is reserved");
          continue;
        }
        auto [it, inserted] = owner.emplace(alias, m.id);
        if (inserted) continue;
        if (it->first == it->second) {
          sink_.Error(pos, path,
                      absl::StrCat("alias '", alias, "' is the id of model '",
                                   it->second, "'"));
        } else {
          sink_.Error(pos, path,
                      absl::StrCat("alias '", alias,
                                   "' is already used by "
                                   "model '",
                                   it->second, "'"));
        }
      }
    }
  }

  // models.<id>.<key>, or null.
  static const YamlNode* ModelKey(const YamlNode& root, const std::string& id,
                                  const char* key) {
    const YamlNode* models = root.Get("models");
    const YamlNode* m = models ? models->Get(id) : nullptr;
    return m && m->is_map() ? m->Get(key) : nullptr;
  }

  // The setParamsByID key of model `id` that names `alias` (${MODEL_ID}
  // expanded), or null.
  static const YamlNode* ByIdKey(const YamlNode& root, const std::string& id,
                                 const std::string& alias) {
    const YamlNode* f = ModelKey(root, id, "filters");
    const YamlNode* by_id =
        f && f->is_map() ? f->Get("setParamsByID") : nullptr;
    if (by_id == nullptr || !by_id->is_map()) return nullptr;
    for (const auto& [key, value] : by_id->entries) {
      if (absl::StrReplaceAll(key.text, {{"${MODEL_ID}", id}}) == alias) {
        return &key;
      }
    }
    return nullptr;
  }

  static SourcePos AliasPos(const YamlNode& root, const std::string& id,
                            size_t i) {
    const YamlNode* models = root.Get("models");
    const YamlNode* m = models ? models->Get(id) : nullptr;
    const YamlNode* a = m && m->is_map() ? m->Get("aliases") : nullptr;
    return a && a->is_seq() && i < a->items.size() ? a->items[i].pos
                                                   : SourcePos{};
  }

  // routing.scheduler: `use` (only llama-swap's "fifo" exists: modelplane's
  // queue is that one, plus maxQueueWait) and its settings' keys.
  void SchedulerKeys(const YamlNode& s) {
    const YamlNode* routing = s.Get("routing");
    const YamlNode* sched = routing != nullptr && routing->is_map()
                                ? routing->Get("scheduler")
                                : nullptr;
    if (sched == nullptr || sched->is_null()) return;
    if (!sched->is_map()) {
      sink_.Error(sched->pos, "routing.scheduler", "must be a mapping");
      return;
    }
    CheckKeys(*sched, "routing.scheduler", KeySet{{"use", "settings"}, {}},
              &sink_);
    if (const YamlNode* u = sched->Get("use"); u != nullptr) {
      std::string use = "fifo";
      ReadString(*u, "routing.scheduler.use", &sink_, &use);
      if (use != "fifo" && !use.empty()) {
        sink_.Error(u->pos, "routing.scheduler.use",
                    absl::StrCat("must be 'fifo', not \"", use, "\""));
      }
    }
    const YamlNode* settings = sched->Get("settings");
    if (settings == nullptr || !settings->is_map()) return;
    CheckKeys(*settings, "routing.scheduler.settings", KeySet{{"fifo"}, {}},
              &sink_);
    const YamlNode* fifo = settings->Get("fifo");
    if (fifo == nullptr || !fifo->is_map()) return;
    CheckKeys(*fifo, "routing.scheduler.settings.fifo",
              KeySet{{"priority"}, {}}, &sink_);
  }

  // routing.scheduler.settings.fifo.priority: model (id or alias) -> int.
  void Priorities(const YamlNode& s, Config* c) {
    SchedulerKeys(s);
    const YamlNode* n = s.Get("routing");
    for (const char* key : {"scheduler", "settings", "fifo", "priority"}) {
      n = n != nullptr && n->is_map() ? n->Get(key) : nullptr;
    }
    if (n == nullptr || n->is_null()) return;
    std::string path = "routing.scheduler.settings.fifo.priority";
    if (!n->is_map()) {
      sink_.Error(n->pos, path, "must be a mapping of model to priority");
      return;
    }
    for (const auto& [key, value] : n->entries) {
      std::string at = JoinPath(path, key.text);
      const ModelConfig* found = c->FindModel(key.text);
      int64_t priority;
      if (found == nullptr) {
        sink_.Error(key.pos, at,
                    absl::StrCat("'", key.text, "' is not a model"));
      } else if (ReadInt(value, at, &sink_, &priority)) {
        c->models[found - c->models.data()].priority =
            static_cast<int>(priority);
      }
    }
  }

  void Preload(const YamlNode& s, Config* c) {
    const YamlNode* hooks = s.Get("hooks");
    if (hooks == nullptr || hooks->is_null()) return;
    if (!hooks->is_map()) {
      sink_.Error(hooks->pos, "hooks", "must be a mapping");
      return;
    }
    CheckKeys(*hooks, "hooks", KeySet{{"on_startup"}, {}}, &sink_);
    const YamlNode* startup = hooks->Get("on_startup");
    if (startup == nullptr || !startup->is_map()) return;
    CheckKeys(*startup, "hooks.on_startup", KeySet{{"preload", "profile"}, {}},
              &sink_);
    // The profile the data planes turn on when they start, and again when
    // a reload brings a change (llama-swap's on_startup.profile).
    if (const YamlNode* p = startup->Get("profile");
        p != nullptr && !p->is_null() &&
        ReadString(*p, "hooks.on_startup.profile", &sink_,
                   &c->startup_profile) &&
        !c->startup_profile.empty() &&
        std::none_of(c->profiles.begin(), c->profiles.end(),
                     [c](const ProfileConfig& pr) {
                       return pr.name == c->startup_profile;
                     })) {
      sink_.Error(p->pos, "hooks.on_startup.profile",
                  absl::StrCat("'", c->startup_profile, "' is not a profile"));
    }
    const YamlNode* preload = startup->Get("preload");
    std::vector<std::string> names;
    std::string path = "hooks.on_startup.preload";
    if (preload == nullptr || !ReadStringList(*preload, path, &sink_, &names)) {
      return;
    }
    for (size_t i = 0; i < names.size(); ++i) {
      std::string name(absl::StripAsciiWhitespace(names[i]));
      if (name.empty()) continue;
      const ModelConfig* m = c->FindModel(name);
      if (m == nullptr) {
        // llama-swap drops it silently; a warning says so here.
        sink_.Warn(preload->items[i].pos, absl::StrCat(path, "[", i, "]"),
                   absl::StrCat("'", name,
                                "' is not a model or an alias; not preloaded"));
      } else if (std::find(c->preload.begin(), c->preload.end(), m->id) ==
                 c->preload.end()) {
        c->preload.push_back(m->id);
      }
    }
  }

  DiagSink sink_;
  const EnvLookup& env_;
  const PortHints* hints_;  // Null on a first load.
};

}  // namespace

const KeySet& GlobalKeys() { return TopKeys(); }

absl::Status LoadResult::status() const {
  if (errors.empty()) return absl::OkStatus();
  std::vector<std::string> lines;
  for (const Diagnostic& d : errors) lines.push_back(d.ToString());
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

PortHints PortHints::Of(const Config& previous) {
  PortHints h;
  h.start_port = previous.start_port;
  for (const ModelConfig& m : previous.models) {
    if (m.port != 0) h.ports[m.id] = m.port;
  }
  return h;
}

LoadResult LoadConfigText(absl::string_view file_name, absl::string_view text,
                          const EnvLookup& env, const PortHints* hints) {
  return Loader(file_name, env, hints).Run(text);
}

LoadResult LoadConfigFile(const std::string& path, const EnvLookup& env) {
  return LoadConfigSources(path, "", env);
}

std::vector<std::string> ConfigDirFiles(const std::string& dir) {
  std::vector<std::string> files;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return files;
  while (dirent* e = readdir(d)) {
    absl::string_view name = e->d_name;
    if (name.empty() || name[0] == '.' ||
        !(absl::EndsWith(name, ".yml") || absl::EndsWith(name, ".yaml"))) {
      continue;
    }
    std::string path = absl::StrCat(dir, "/", name);
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      files.push_back(std::move(path));
    }
  }
  closedir(d);
  std::sort(files.begin(), files.end());
  return files;
}

LoadResult LoadConfigSources(const std::string& path, const std::string& dir,
                             const EnvLookup& env, const PortHints* hints) {
  auto unreadable = [](const std::string& name, const std::string& what) {
    LoadResult r;
    r.errors.push_back(Diagnostic{
        name, SourcePos{}, "",
        absl::StrCat("cannot read the ", what, ": ", std::strerror(errno))});
    return r;
  };
  if (path.empty() && dir.empty()) {
    LoadResult r;
    r.errors.push_back(Diagnostic{"config", SourcePos{}, "",
                                  "no config file or directory given"});
    return r;
  }
  std::vector<std::string> names;
  if (!path.empty()) names.push_back(path);
  if (!dir.empty()) {
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) return unreadable(dir, "config directory");
    if (!S_ISDIR(st.st_mode)) {
      errno = ENOTDIR;
      return unreadable(dir, "config directory");
    }
    // The same file twice would define everything twice (llama-swap's
    // rule): compared by device and inode, so links and ../ count too.
    struct stat config_st;
    bool have_config = !path.empty() && stat(path.c_str(), &config_st) == 0;
    for (std::string& f : ConfigDirFiles(dir)) {
      struct stat f_st;
      if (have_config && stat(f.c_str(), &f_st) == 0 &&
          f_st.st_dev == config_st.st_dev && f_st.st_ino == config_st.st_ino) {
        LoadResult r;
        r.errors.push_back(Diagnostic{
            path, SourcePos{}, "",
            absl::StrCat("--config ", path, " is also in --config-dir ", dir,
                         " (as ", f, "); give it once")});
        return r;
      }
      names.push_back(std::move(f));
    }
    if (names.empty()) {
      LoadResult r;
      r.errors.push_back(Diagnostic{dir, SourcePos{}, "",
                                    "no *.yml or *.yaml file in the config "
                                    "directory"});
      return r;
    }
  }
  std::vector<std::pair<std::string, std::string>> files;
  for (const std::string& name : names) {
    std::ifstream in(name, std::ios::binary);
    if (!in) return unreadable(name, "file");
    std::stringstream text;
    text << in.rdbuf();
    files.emplace_back(name, text.str());
  }
  return Loader(files[0].first, env, hints).RunFiles(files);
}

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

}  // namespace modelplane::config
