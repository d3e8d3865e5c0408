#include "proxy/router/router.h"

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proxy/router/url_params.h"
#include "re2/re2.h"

namespace modelplane::proxy::router {
namespace {

constexpr absl::string_view kApiUnload = "/api/models/unload";
constexpr absl::string_view kUpstream = "/upstream/";
constexpr absl::string_view kApiLoad = "/api/models/load/";
constexpr absl::string_view kLogStream = "/logs/stream";
constexpr absl::string_view kLogStreamSlash = "/logs/stream/";

using Kind = Decision::Kind;

Decision Local(Kind kind) {
  Decision d;
  d.kind = kind;
  return d;
}

Decision Error(int status, std::string message) {
  Decision d;
  d.kind = Kind::kError;
  d.status = status;
  d.message = std::move(message);
  return d;
}

// The target a body route is forwarded to: llama-swap's versionless
// /v/... routes lose the /v (/v/chat/completions -> /chat/completions), and
// audio.cpp's /audioapi/... its prefix.
std::string UpstreamTarget(absl::string_view target) {
  if (absl::StartsWith(target, "/v/")) return std::string(target.substr(2));
  if (absl::StartsWith(target, "/audioapi/")) {
    return std::string(target.substr(9));
  }
  return std::string(target);
}

class Router {
 public:
  Router(const Snapshot& s, const Busy& busy) : s_(s), busy_(busy) {}

  Decision Path(const Request& r) {
    absl::string_view path = r.target.substr(0, r.target.find('?'));
    bool get = r.method == "GET" || r.method == "HEAD";
    if (r.method == "OPTIONS") return Local(Kind::kPreflight);
    // HEAD is answered wherever GET is (without the body).
    if (IsHealth(path) && get) return Local(Kind::kHealth);
    if (path == "/running" && get) return Local(Kind::kRunning);
    if (path == "/metrics" && get) return Local(Kind::kMetrics);
    if (path == "/api/metrics/activity" && get) {
      return Local(Kind::kActivity);
    }
    if (IsUi(path) && get) return Local(Kind::kUi);
    if (path == "/api/events" && get) return Local(Kind::kEvents);
    if (path == "/api/version" && get) return Local(Kind::kVersion);
    if (path == "/logs" && get) return Local(Kind::kLogs);
    if ((path == kLogStream || absl::StartsWith(path, kLogStreamSlash)) &&
        get) {
      Decision d = Local(Kind::kLogs);
      d.stream = true;
      if (path.size() > kLogStream.size()) {
        d.source = PercentDecode(path.substr(kLogStreamSlash.size()), false);
      }
      return d;
    }
    if (absl::StartsWith(path, kApiLoad) && path.size() > kApiLoad.size()) {
      if (r.method != "POST") {
        Decision d = Error(405, "/api/models/load/<model> takes POST");
        d.allow = "POST";
        return d;
      }
      Decision d = Local(Kind::kLoad);
      d.model = PercentDecode(path.substr(kApiLoad.size()), false);
      return d;
    }
    if (path == "/unload") {
      // POST only: a GET must not stop models (a prefetching browser, a
      // crawler, an <img src> on a page would).
      if (r.method != "POST") {
        Decision d = Error(405, "/unload takes POST");
        d.allow = "POST";
        return d;
      }
      Decision d = Local(Kind::kUnload);
      d.unload = QueryParam(r.target, "model");
      return d;
    }
    if (r.method == "POST" && absl::StartsWith(path, kApiUnload) &&
        (path.size() == kApiUnload.size() || path[kApiUnload.size()] == '/')) {
      // llama-swap's UI API: /api/models/unload[/<model, slashes and all>].
      absl::string_view model = path.substr(kApiUnload.size());
      if (!model.empty()) {
        model.remove_prefix(1);
        if (model.empty()) return Error(400, "no model named after /");
      }
      Decision d = Local(Kind::kUnload);
      d.unload = PercentDecode(model, false);
      return d;
    }
    if ((path == "/v1/models" || path == "/models") && get) {
      return Local(Kind::kModels);
    }
    if (path == "/api/profiles" && get) return Local(Kind::kProfiles);
    if (path == "/api/profiles/active" && r.method == "PUT") {
      return Local(Kind::kSetProfile);
    }
    if (absl::StartsWith(path, kUpstream)) return Upstream(r, get);
    switch (r.body) {
      case Body::kJson:
      case Body::kMultipart:
        // Any error, even after the model was found: the model must read
        // the body routing read (a second "model" key after the first).
        if (!r.scan_error.empty()) return Error(400, r.scan_error);
        if (!r.body_model) {
          return Error(400, r.body == Body::kJson
                                ? "the request body names no model"
                                : "the form has no model field");
        }
        return Forward(*r.body_model, UpstreamTarget(r.target));
      case Body::kForm: {
        // llama-swap reads a urlencoded form's model too (Go's ParseForm).
        std::string form = absl::StrCat("?", r.form);
        if (QueryParamCount(form, "model") > 1) {
          return Error(400, "the form names the model twice");
        }
        std::string model = QueryParam(form, "model");
        if (model.empty()) return Error(400, "the form has no model field");
        return Forward(model, UpstreamTarget(r.target));
      }
      case Body::kNone:
        break;
    }
    if (QueryParamCount(r.target, "model") > 1) {
      return Error(400, "the query names the model twice");
    }
    std::string model = QueryParam(r.target, "model");
    if (!model.empty()) return Forward(model, std::string(r.target));
    return Error(404, absl::StrCat("no route for ", r.method, " ", path));
  }

 private:
  // /upstream/<model>/<rest>: ids may contain '/', so the longest known
  // prefix wins; percent-encoding in <rest> is passed through.
  Decision Upstream(const Request& r, bool get) {
    std::string rest(r.target.substr(kUpstream.size()));
    // A model's id or alias, a selector's, a peer's model name, or a name
    // the active profile pins.
    const ProfileRoute* prof = s_.active_profile();
    auto known = [this, prof](const std::string& name) {
      return s_.routes().Find(name) != nullptr ||
             s_.selectors().Find(name) != nullptr ||
             s_.peers().Find(name) != nullptr ||
             (prof != nullptr && prof->pins.count(name) != 0);
    };
    std::string model = rest.substr(0, rest.find('?'));
    std::string target = "/";
    while (!model.empty() && !known(model)) {
      size_t slash = model.rfind('/');
      if (slash == std::string::npos) break;
      model.resize(slash);
    }
    if (known(model)) {
      target = rest.substr(model.size());
      if (target.empty() || target[0] == '?') {
        // /upstream/<model> -> /upstream/<model>/, as llama-swap answers:
        // a model's own web UI then resolves its relative links.
        Decision d;
        d.kind = Kind::kRedirect;
        d.status = get ? 301 : 308;
        d.location = absl::StrCat(kUpstream, model, "/", target);
        return d;
      }
    }
    if (target.empty() || target[0] == '?') target = "/" + target;
    // Pins and selectors now, so that ignorePaths applies to the model the
    // request goes to.
    std::optional<Decision> refused;
    std::string name = Resolve(model, &refused);
    if (refused) return *std::move(refused);
    const Route* route = s_.routes().Find(name);
    absl::string_view target_path =
        absl::string_view(target).substr(0, target.find('?'));
    if (route != nullptr && route->state != v1::MODEL_STATE_READY &&
        Ignored(target_path)) {
      // llama-swap's upstream.ignorePaths: a model's web UI asking for its
      // favicon must not swap it in.
      return Error(409, absl::StrCat("model '", route->id,
                                     "' is not loaded, and ", target_path,
                                     " matches upstream.ignorePaths: such a "
                                     "request does not start a model"));
    }
    return To(name, std::move(target));
  }

  bool Ignored(absl::string_view path) const {
    for (const auto& re : s_.ignore_paths()) {
      if (RE2::PartialMatch(re2::StringPiece(path.data(), path.size()), *re)) {
        return true;
      }
    }
    return false;
  }

  Decision Forward(const std::string& requested, std::string target) {
    std::optional<Decision> refused;
    std::string name = Resolve(requested, &refused);
    if (refused) return *std::move(refused);
    return To(name, std::move(target));
  }

  // Where `name` (pins and selectors applied) leads: a local model, else a
  // peer's.
  Decision To(const std::string& name, std::string target) {
    Decision d;
    d.model = name;
    d.target = std::move(target);
    d.renamed = renamed_;
    if ((d.route = s_.routes().Find(name)) != nullptr) {
      d.kind = Kind::kModel;
      return d;
    }
    // Local models first; then a peer's, by <peer>/<model> or a bare name
    // only one peer has.
    if ((d.peer = s_.peers().Find(name)) != nullptr) {
      d.kind = Kind::kPeer;
      return d;
    }
    return Error(404, absl::StrCat("unknown model '", name, "'"));
  }

  // The active profile's pin first, once (its target is not pinned again);
  // then a selector (its targets are models). Returns the name the request
  // goes to, or sets `refused`.
  std::string Resolve(const std::string& name,
                      std::optional<Decision>* refused) {
    std::string current = name;
    if (const ProfileRoute* prof = s_.active_profile()) {
      auto pin = prof->pins.find(name);
      if (pin != prof->pins.end()) {
        if (pin->second.empty()) {
          *refused = Error(
              404, absl::StrCat("model '", name, "' is disabled by profile '",
                                prof->name, "'"));
          return "";
        }
        current = pin->second;
        renamed_ = true;
      }
    }
    if (const SelectorRoute* sel = s_.selectors().Find(current)) {
      std::string picked = Select(*sel);
      if (picked.empty()) {
        *refused = Error(503, absl::StrCat("selector '", sel->id,
                                           "' has no target model (a reload "
                                           "may be under way)"));
        return "";
      }
      current = std::move(picked);
      renamed_ = true;
    }
    return current;
  }

  std::string Select(const SelectorRoute& sel) {
    // Only targets the tables have: a removed target is never picked. A
    // target is a local model or a peer's (<peer>/<model>; pin and
    // spillover only, the config sees to it).
    struct Target {
      std::string name;
      const Route* route;  // Null for a peer's model.
    };
    std::vector<Target> targets;
    for (const std::string& t : sel.targets) {
      if (const Route* r = s_.routes().Find(t)) {
        targets.push_back({r->id, r});
      } else if (const PeerRoute* p = s_.peers().Find(t)) {
        targets.push_back({p->name(), nullptr});
      }
    }
    if (targets.empty()) return "";
    if (sel.strategy == "warm") {
      // The first target up, else one coming up, else the first (started).
      for (v1::ModelState want :
           {v1::MODEL_STATE_READY, v1::MODEL_STATE_STARTING}) {
        for (const Target& t : targets) {
          if (t.route != nullptr && t.route->state == want) return t.name;
        }
      }
    } else if (sel.strategy == "spillover") {
      // In order, each up to `spillover` requests (in flight or waiting for
      // its lease); past that on every target, the least busy. A peer's
      // requests are not counted here: it takes what spills over to it.
      const Target* least = &targets.front();
      int least_busy = std::numeric_limits<int>::max();
      for (const Target& t : targets) {
        int busy = t.route != nullptr && busy_ ? busy_(t.name) : 0;
        if (busy < sel.spillover) return t.name;
        if (busy < least_busy) {
          least_busy = busy;
          least = &t;
        }
      }
      return least->name;
    }
    return targets.front().name;  // pin.
  }

  const Snapshot& s_;
  const Busy& busy_;
  bool renamed_ = false;
};

}  // namespace

Decision Decide(const Request& request, const Snapshot& snapshot,
                const Busy& busy) {
  return Router(snapshot, busy).Path(request);
}

bool IsBodyRoute(absl::string_view method, absl::string_view path) {
  return method == "POST" &&
         std::find(std::begin(kBodyRoutes), std::end(kBodyRoutes), path) !=
             std::end(kBodyRoutes);
}

bool IsHealth(absl::string_view path) {
  return path == "/health" || path == "/wol-health";
}

bool IsUi(absl::string_view path) {
  return path == "/" || path == "/ui" || absl::StartsWith(path, "/ui/") ||
         path == "/favicon.ico";
}

bool NeedsKey(absl::string_view method, absl::string_view path) {
  if (method == "OPTIONS") return false;
  return !((IsHealth(path) || IsUi(path)) &&
           (method == "GET" || method == "HEAD"));
}

}  // namespace modelplane::proxy::router
