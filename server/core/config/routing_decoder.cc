#include "server/core/config/routing_decoder.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "server/core/config/decode_util.h"
#include "server/core/config/matrix_dsl.h"
#include "server/core/config/model_decoder.h"

namespace modelplane::config {
namespace {

// Reserved for the manager's own log in StreamLogs.
constexpr char kReservedName[] = "manager";

}  // namespace

void DecodePeers(const YamlNode* peers, Config* c, DiagSink* sink) {
  if (peers == nullptr || peers->is_null()) return;
  if (!peers->is_map()) {
    sink->Error(peers->pos, "peers",
                absl::StrCat("must be a mapping of peer id to settings, "
                             "not ",
                             peers->KindName()));
    return;
  }
  for (const auto& [key, value] : peers->entries) {
    std::optional<PeerConfig> p = DecodePeer(key.text, key.pos, value, sink);
    if (p) c->peers.push_back(*std::move(p));
  }
  std::sort(
      c->peers.begin(), c->peers.end(),
      [](const PeerConfig& a, const PeerConfig& b) { return a.id < b.id; });
}

// llama-swap refuses a local name that would hide a peer's model: local
// models (and selectors) come first, so <peer>/<model> could never be
// reached.
void CheckPeerNames(const Config& c, DiagSink* sink) {
  for (const PeerConfig& p : c.peers) {
    for (const std::string& m : p.models) {
      std::string name = absl::StrCat(p.id, "/", m);
      const ModelConfig* model = c.FindModel(name);
      bool selector = std::any_of(
          c.selectors.begin(), c.selectors.end(),
          [&name](const SelectorConfig& s) { return s.id == name; });
      if (model != nullptr || selector) {
        sink->Error(p.pos, absl::StrCat("peers.", p.id),
                    absl::StrCat("'", name, "' is also the name of ",
                                 model != nullptr
                                     ? absl::StrCat("model '", model->id, "'")
                                     : std::string("a selector"),
                                 ": the peer's model could never be "
                                 "reached"));
      }
    }
  }
}

// After the models and their aliases: targets resolve through them.
namespace {

// `name` as a peer's model: "<peer>/<model>" when it is one, or a bare name
// exactly one peer lists; "" otherwise.
std::string PeerModel(const Config& c, const std::string& name) {
  std::string found;
  int bare = 0;
  for (const PeerConfig& p : c.peers) {
    for (const std::string& m : p.models) {
      std::string fqn = p.id + "/" + m;
      if (fqn == name) return fqn;
      if (m == name) {
        ++bare;
        found = fqn;
      }
    }
  }
  return bare == 1 ? found : "";
}

}  // namespace

void CheckSpilloverTargetsCoexist(const Config& c, DiagSink* sink) {
  for (const SelectorConfig& sel : c.selectors) {
    if (sel.strategy != "spillover") continue;
    std::vector<std::string> local;  // Peers' models run elsewhere.
    for (const std::string& t : sel.targets) {
      if (c.FindModel(t) != nullptr) local.push_back(t);
    }
    if (local.size() < 2) continue;
    std::string path = absl::StrCat("selectors.", sel.id, ".targets");
    if (c.matrix) {
      // Some allowed set must hold them all, or spilling swaps instead.
      bool together = std::any_of(
          c.matrix->allowed.begin(), c.matrix->allowed.end(),
          [&](const std::vector<std::string>& set) {
            return std::all_of(
                local.begin(), local.end(), [&](const std::string& m) {
                  return std::find(set.begin(), set.end(), m) != set.end();
                });
          });
      if (!together) {
        sink->Error(sel.pos, path,
                    "spillover targets must all appear together in one "
                    "matrix set (as in llama-swap)");
      }
      continue;
    }
    const std::string& group = c.FindModel(local[0])->group;
    const GroupConfig* g = c.FindGroup(group);
    bool one_group = std::all_of(
        local.begin(), local.end(),
        [&](const std::string& m) { return c.FindModel(m)->group == group; });
    if (!one_group) {
      sink->Error(sel.pos, path,
                  "spillover targets must share one group (as in "
                  "llama-swap), so that they may run together");
    } else if (g == nullptr || g->swap) {
      sink->Error(sel.pos, path,
                  absl::StrCat("spillover targets must share a group with "
                               "swap: false (as in llama-swap); '",
                               group, "' swaps them"));
    }
  }
}

void DecodeSelectors(const YamlNode* selectors, Config* c, DiagSink* sink) {
  if (selectors == nullptr || selectors->is_null()) return;
  if (!selectors->is_map()) {
    sink->Error(selectors->pos, "selectors",
                absl::StrCat("must be a mapping of selector id to "
                             "settings, not ",
                             selectors->KindName()));
    return;
  }
  static const KeySet kKeys = {{"strategy", "targets", "settings", "name",
                                "description", "unlisted", "metadata"},
                               {}};
  for (const auto& [key, node] : selectors->entries) {
    std::string path = absl::StrCat("selectors.", key.text);
    size_t errors_before = sink->error_count();
    if (key.text.empty() || key.text == kReservedName) {
      sink->Error(key.pos, path,
                  "a selector id must not be empty or "
                  "'manager'");
      continue;
    }
    if (const ModelConfig* m = c->FindModel(key.text)) {
      sink->Error(key.pos, path,
                  absl::StrCat("'", key.text, "' is already a name of model '",
                               m->id, "'"));
      continue;
    }
    if (!node.is_map()) {
      sink->Error(node.pos, path,
                  absl::StrCat("must be a mapping with 'targets', not ",
                               node.KindName()));
      continue;
    }
    CheckKeys(node, path, kKeys, sink);
    SelectorConfig sel;
    sel.id = key.text;
    sel.pos = key.pos;
    if (const YamlNode* n = node.Get("strategy");
        n != nullptr &&
        ReadString(*n, path + ".strategy", sink, &sel.strategy)) {
      if (sel.strategy != "pin" && sel.strategy != "warm" &&
          sel.strategy != "spillover") {
        sink->Error(n->pos, path + ".strategy",
                    absl::StrCat("must be pin, warm or spillover, not \"",
                                 sel.strategy, "\""));
      }
    }
    std::vector<std::string> targets;
    const YamlNode* list = node.Get("targets");
    if (list == nullptr) {
      sink->Error(key.pos, path, "missing required key 'targets'");
    } else if (ReadStringList(*list, path + ".targets", sink, &targets)) {
      if (targets.empty()) {
        sink->Error(list->pos, path + ".targets",
                    "must name at least one model");
      }
      for (size_t i = 0; i < targets.size(); ++i) {
        std::string at = absl::StrCat(path, ".targets[", i, "]");
        const ModelConfig* m = c->FindModel(targets[i]);
        // A peer's model, as llama-swap takes it: <peer>/<model>, or a
        // bare name only one peer has; kept as <peer>/<model>.
        std::string peer_model = m == nullptr ? PeerModel(*c, targets[i]) : "";
        if (m == nullptr && peer_model.empty()) {
          bool selector = selectors->Get(targets[i]) != nullptr;
          sink->Error(list->items[i].pos, at,
                      selector
                          ? absl::StrCat("'", targets[i],
                                         "' is a selector: selectors "
                                         "cannot be chained")
                          : absl::StrCat("unknown model '", targets[i], "'"));
          continue;
        }
        if (m == nullptr && sel.strategy == "warm") {
          // Whether a peer's model is up is the peer's to know.
          sink->Error(list->items[i].pos, at,
                      absl::StrCat("'", targets[i],
                                   "' is a peer's model: strategy warm takes "
                                   "local models only"));
          continue;
        }
        const std::string& id = m != nullptr ? m->id : peer_model;
        if (std::find(sel.targets.begin(), sel.targets.end(), id) ==
            sel.targets.end()) {
          sel.targets.push_back(id);
        } else if (sel.strategy == "spillover") {
          // Two names for one target would count it twice (llama-swap's
          // rule); pin and warm take the first.
          sink->Error(list->items[i].pos, at,
                      absl::StrCat("'", targets[i], "' is '", id,
                                   "' again: spillover targets must differ"));
        }
      }
    }
    if (const YamlNode* settings = node.Get("settings");
        settings != nullptr && !settings->is_null()) {
      if (!settings->is_map()) {
        sink->Error(settings->pos, path + ".settings", "must be a mapping");
      } else {
        CheckKeys(*settings, path + ".settings", KeySet{{"spillover"}, {}},
                  sink);
        int64_t n = 0;
        if (const YamlNode* sp = settings->Get("spillover");
            sp != nullptr &&
            ReadInt(*sp, path + ".settings.spillover", sink, &n)) {
          if (n < 1 || n > 1000000) {
            sink->Error(sp->pos, path + ".settings.spillover",
                        "must be between 1 and 1000000");
          } else {
            sel.spillover = static_cast<int>(n);
          }
        }
      }
    }
    if (const YamlNode* n = node.Get("name")) {
      ReadString(*n, path + ".name", sink, &sel.name);
    }
    if (const YamlNode* n = node.Get("description")) {
      ReadString(*n, path + ".description", sink, &sel.description);
    }
    if (const YamlNode* n = node.Get("unlisted")) {
      ReadBool(*n, path + ".unlisted", sink, &sel.unlisted);
    }
    if (const YamlNode* n = node.Get("metadata")) sel.metadata = ToValue(*n);
    if (sink->error_count() == errors_before) {
      c->selectors.push_back(std::move(sel));
    }
  }
  std::sort(c->selectors.begin(), c->selectors.end(),
            [](const SelectorConfig& a, const SelectorConfig& b) {
              return a.id < b.id;
            });
}

// After models, selectors and peers: a pin's target is one of theirs.
void DecodeProfiles(const YamlNode* profiles, Config* c, DiagSink* sink) {
  if (profiles == nullptr || profiles->is_null()) return;
  if (!profiles->is_map()) {
    sink->Error(profiles->pos, "profiles",
                absl::StrCat("must be a mapping of profile name to "
                             "settings, not ",
                             profiles->KindName()));
    return;
  }
  auto known = [c](const std::string& name) {
    if (c->FindModel(name) != nullptr) return true;
    for (const SelectorConfig& s : c->selectors) {
      if (s.id == name) return true;
    }
    int bare = 0;
    for (const PeerConfig& p : c->peers) {
      for (const std::string& m : p.models) {
        if (absl::StrCat(p.id, "/", m) == name) return true;
        if (m == name) ++bare;
      }
    }
    return bare == 1;
  };
  for (const auto& [key, node] : profiles->entries) {
    std::string path = absl::StrCat("profiles.", key.text);
    if (key.text.empty()) {
      sink->Error(key.pos, path, "a profile name must not be empty");
      continue;
    }
    if (!node.is_map()) {
      sink->Error(
          node.pos, path,
          absl::StrCat("must be a mapping with 'pins', not ", node.KindName()));
      continue;
    }
    CheckKeys(node, path, KeySet{{"description", "pins"}, {}}, sink);
    size_t errors_before = sink->error_count();
    ProfileConfig prof;
    prof.name = key.text;
    prof.pos = key.pos;
    if (const YamlNode* d = node.Get("description")) {
      ReadString(*d, path + ".description", sink, &prof.description);
    }
    const YamlNode* pins = node.Get("pins");
    if (pins != nullptr && !pins->is_null() && !pins->is_map()) {
      sink->Error(pins->pos, path + ".pins",
                  "must be a mapping of requested name to target");
    } else if (pins != nullptr) {
      for (const auto& [from, to] : pins->entries) {
        std::string at = JoinPath(path + ".pins", from.text);
        std::string target;
        if (!to.is_null() && !ReadString(to, at, sink, &target)) continue;
        bool peer_name = false;  // A pin may not hide <peer>/<model>.
        for (const PeerConfig& p : c->peers) {
          for (const std::string& m : p.models) {
            if (absl::StrCat(p.id, "/", m) == from.text) peer_name = true;
          }
        }
        if (from.text.empty()) {
          sink->Error(from.pos, at, "a requested name must not be empty");
        } else if (peer_name) {
          sink->Error(from.pos, at,
                      absl::StrCat("'", from.text,
                                   "' is a peer's model name; a pin may not "
                                   "take it (as in llama-swap)"));
        } else if (!target.empty() && !known(target)) {
          sink->Error(to.pos, at,
                      absl::StrCat("unknown model '", target,
                                   "' (a model, a selector or a peer's "
                                   "model; null disables the name)"));
        } else {
          prof.pins.emplace_back(from.text, target);
        }
      }
    }
    if (sink->error_count() == errors_before && prof.pins.empty()) {
      // llama-swap's rule: a profile pins something.
      sink->Error(key.pos, path + ".pins", "must pin at least one name");
    }
    if (sink->error_count() == errors_before) {
      c->profiles.push_back(std::move(prof));
    }
  }
  std::sort(c->profiles.begin(), c->profiles.end(),
            [](const ProfileConfig& a, const ProfileConfig& b) {
              return a.name < b.name;
            });
}

// Legacy top-level `groups:` or `routing.router.settings.groups`.
void DecodeMatrix(const YamlNode& node, const std::string& path, Config* c,
                  DiagSink* sink) {
  if (!node.is_map()) {
    sink->Error(
        node.pos, path,
        absl::StrCat("must be a mapping with 'sets', not ", node.KindName()));
    return;
  }
  CheckKeys(node, path, KeySet{{"vars", "evict_costs", "sets"}, {}}, sink);
  size_t errors_before = sink->error_count();
  std::map<std::string, std::string> vars;  // Alias -> model id.
  if (const YamlNode* v = node.Get("vars"); v != nullptr && !v->is_null()) {
    if (!v->is_map()) {
      sink->Error(v->pos, path + ".vars", "must be a mapping");
    } else {
      for (const auto& [alias, model] : v->entries) {
        std::string at = JoinPath(path + ".vars", alias.text);
        std::string name;
        if (!ReadString(model, at, sink, &name)) continue;
        const ModelConfig* m = c->FindModel(name);
        bool name_ok =
            !alias.text.empty() && alias.text.size() <= 32 &&
            std::all_of(alias.text.begin(), alias.text.end(), [](char ch) {
              return absl::ascii_isalnum(static_cast<unsigned char>(ch)) ||
                     ch == '-' || ch == '.';
            });
        if (!name_ok) {
          sink->Error(alias.pos, at,
                      "a var is 1 to 32 letters, digits, '-' or '.'");
        } else if (m == nullptr) {
          sink->Error(model.pos, at,
                      absl::StrCat("unknown model '", name, "'"));
        } else if (m->id != name) {
          // llama-swap's vars name model ids.
          sink->Error(model.pos, at,
                      absl::StrCat("'", name, "' is an alias of '", m->id,
                                   "': a var names a model id"));
        } else {
          vars[alias.text] = m->id;
        }
      }
    }
  }
  auto resolve = [c,
                  &vars](const std::string& n) -> std::optional<std::string> {
    if (auto it = vars.find(n); it != vars.end()) return it->second;
    if (const ModelConfig* m = c->FindModel(n)) return m->id;
    return std::nullopt;
  };
  MatrixConfig matrix;
  if (const YamlNode* e = node.Get("evict_costs");
      e != nullptr && !e->is_null()) {
    if (!e->is_map()) {
      sink->Error(e->pos, path + ".evict_costs", "must be a mapping");
    } else {
      for (const auto& [name, cost] : e->entries) {
        std::string at = JoinPath(path + ".evict_costs", name.text);
        int64_t n = 0;
        if (!ReadInt(cost, at, sink, &n)) continue;
        std::optional<std::string> id = resolve(name.text);
        if (!id) {
          sink->Error(name.pos, at,
                      absl::StrCat("unknown model or var '", name.text, "'"));
        } else if (n < 1 || n > 1000000) {
          sink->Error(cost.pos, at, "must be between 1 and 1000000");
        } else {
          matrix.evict_costs[*id] = static_cast<int>(n);
        }
      }
    }
  }
  const YamlNode* sets = node.Get("sets");
  std::map<std::string, std::vector<ModelSet>> named;
  if (sets == nullptr || !sets->is_map() || sets->entries.empty()) {
    sink->Error(sets != nullptr ? sets->pos : node.pos, path + ".sets",
                "must be a mapping of set name to expression, with at "
                "least one");
  } else {
    // +ref may name a set defined later (as in llama-swap); each set is
    // expanded once, on first use, and a cycle is an error.
    std::set<std::string> visiting, failed;
    std::function<const std::vector<ModelSet>*(const std::string&)> get =
        [&](const std::string& ref) -> const std::vector<ModelSet>* {
      if (auto it = named.find(ref); it != named.end()) return &it->second;
      const YamlNode* expr = sets->Get(ref);
      if (expr == nullptr || failed.count(ref) || visiting.count(ref)) {
        return nullptr;
      }
      std::string at = JoinPath(path + ".sets", ref);
      std::string text;
      if (!ReadString(*expr, at, sink, &text)) {
        failed.insert(ref);
        return nullptr;
      }
      visiting.insert(ref);
      absl::StatusOr<std::vector<ModelSet>> expanded =
          ExpandSetExpression(text, resolve, get);
      visiting.erase(ref);
      if (!expanded.ok()) {
        sink->Error(expr->pos, at, std::string(expanded.status().message()));
        failed.insert(ref);
        return nullptr;
      }
      return &(named[ref] = *std::move(expanded));
    };
    std::set<ModelSet> seen;
    for (const auto& [name, expr] : sets->entries) {
      const std::vector<ModelSet>* expanded = get(name.text);
      if (expanded == nullptr) continue;
      for (const ModelSet& s : *expanded) {
        if (seen.insert(s).second) matrix.allowed.push_back(s);
      }
    }
  }
  if (sink->error_count() == errors_before) c->matrix = std::move(matrix);
}

}  // namespace modelplane::config
