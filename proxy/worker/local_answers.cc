// The answers modelproxy gives itself: /v1/models, /running, /unload,
// /metrics, CORS preflights, and the API key check. Members of
// Exchange, apart from the request path for readability.
#include <rapidjson/document.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/json_string.h"
#include "common/loop_thread.h"
#include "common/sha256.h"
#include "proxy/worker/exchange.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

namespace {

// llama-swap's status.value (loaded, unloaded), and "failed" for a model
// whose last start failed or that crashed: a client (or a person) sees why
// requests for it get 503 instead of taking it for merely unloaded.
const char* StatusValue(v1::ModelState state) {
  switch (state) {
    case v1::MODEL_STATE_READY:
      return "loaded";
    case v1::MODEL_STATE_FAILED:
      return "failed";
    default:
      return "unloaded";
  }
}

}  // namespace

void Exchange::RespondModels() {
  // Every entry (models, selectors, peers' models) sorted by id, as
  // llama-swap lists them.
  std::vector<std::pair<std::string, std::string>> entries;  // id, JSON.
  auto model = [&entries](const router::Route& r, const std::string& id,
                          const std::string& name) {
    entries.emplace_back(
        id, absl::StrCat(R"({"id":)", JsonString(id),
                         R"(,"object":"model","owned_by":"modelplane","name":)",
                         JsonString(name), R"(,"description":)",
                         JsonString(r.description), R"(,"meta":{"llamaswap":)",
                         r.metadata_json, R"(},"status":{"value":")",
                         StatusValue(r.state), R"("}})"));
  };
  // includeAliasesInList: each alias an entry of its own (a setParamsByID
  // variant such as "qwen:think" is one a client picks), with its model's
  // name.
  bool aliases = routing_->list_aliases();
  const router::RouteTable& routes = routing_->routes();
  for (const router::Route& r : routes.routes()) {
    if (r.unlisted) continue;
    const std::string& name = r.name.empty() ? r.id : r.name;
    model(r, r.id, name);
    if (!aliases) continue;
    for (const std::string& a : r.aliases) model(r, a, name);
  }
  // Selectors, virtual models: loaded when a target is.
  for (const router::SelectorRoute& sel : routing_->selectors().routes()) {
    if (sel.unlisted) continue;
    bool loaded = std::any_of(
        sel.targets.begin(), sel.targets.end(), [&routes](const auto& t) {
          const router::Route* r = routes.Find(t);
          return r != nullptr && r->state == v1::MODEL_STATE_READY;
        });
    entries.emplace_back(
        sel.id,
        absl::StrCat(R"({"id":)", JsonString(sel.id),
                     R"(,"object":"model","owned_by":"modelplane","name":)",
                     JsonString(sel.name.empty() ? sel.id : sel.name),
                     R"(,"description":)", JsonString(sel.description),
                     R"(,"meta":{"llamaswap":)", sel.metadata_json,
                     R"(},"status":{"value":")", loaded ? "loaded" : "unloaded",
                     "\"}}"));
  }
  // The peers' models, as <peer>/<model>; their state is the peer's
  // business.
  for (const router::PeerRoute& p : routing_->peers().routes()) {
    entries.emplace_back(
        p.name(),
        absl::StrCat(R"({"id":)", JsonString(p.name()),
                     R"(,"object":"model","owned_by":)", JsonString(p.peer),
                     R"(,"name":)", JsonString(p.model), R"(,"peer":)",
                     JsonString(p.peer), "}"));
  }
  // The active profile: its pinned names are models too (to the name they
  // become); the names it disables are gone.
  if (const router::ProfileRoute* prof = routing_->active_profile()) {
    for (const auto& [from, to] : prof->pins) {
      entries.erase(std::remove_if(entries.begin(), entries.end(),
                                   [&from = from](const auto& e) {
                                     return e.first == from;
                                   }),
                    entries.end());
      if (to.empty()) continue;
      entries.emplace_back(
          from, absl::StrCat(R"({"id":)", JsonString(from),
                             R"(,"object":"model","owned_by":"modelplane",)"
                             R"("name":)",
                             JsonString(to), R"(,"profile":)",
                             JsonString(prof->name), "}"));
    }
  }
  std::stable_sort(
      entries.begin(), entries.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string data;
  for (const auto& [id, json] : entries) {
    absl::StrAppend(&data, data.empty() ? "" : ",", json);
  }
  Respond(200, "application/json",
          absl::StrCat(R"({"object":"list","data":[)", data, "]}"));
}

void Exchange::RespondProfiles() {
  const router::ProfileRoute* active = routing_->active_profile();
  std::string list;
  for (const auto& p : routing_->profiles().routes()) {
    std::string pins;
    for (const auto& [from, to] : p->pins) {
      absl::StrAppend(&pins, pins.empty() ? "" : ",", JsonString(from), ":",
                      to.empty() ? "null" : JsonString(to));
    }
    absl::StrAppend(&list, list.empty() ? "" : ",", R"({"name":)",
                    JsonString(p->name), R"(,"description":)",
                    JsonString(p->description), R"(,"pins":{)", pins, "}}");
  }
  Respond(200, "application/json",
          absl::StrCat(R"({"active":)",
                       active == nullptr ? "null" : JsonString(active->name),
                       R"(,"profiles":[)", list, "]}"));
}

namespace {

// "127.0.0.1", "[::1]", "localhost" (any port): a Host a DNS-rebinding page
// cannot send (its Host is its own domain name).
bool IsAddressOrLocalhost(absl::string_view host) {
  if (absl::ConsumePrefix(&host, "[")) return true;  // An IPv6 literal.
  host = host.substr(0, host.rfind(':'));
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  return !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.';
  });
}

}  // namespace

bool Exchange::MayChangeState() {
  const std::string* host = http1::FindHeader(head_.headers, "host");
  const std::string* origin = http1::FindHeader(head_.headers, "origin");
  // A page on another site (a plain HTML form needs no CORS preflight)
  // must not stop models: its Origin names another host than the request.
  if (origin != nullptr && host != nullptr) {
    absl::string_view o = *origin;
    if (!absl::ConsumePrefix(&o, "http://"))
      absl::ConsumePrefix(&o, "https://");
    if (!absl::EqualsIgnoreCase(o, *host)) {
      RespondError(
          403, absl::StrCat("a request from another site (Origin ", *origin,
                            ", Host ", *host, ") may not change what runs"));
      return false;
    }
  }
  // DNS rebinding: a page whose name resolves to 127.0.0.1 is same-origin
  // with this proxy, but its Host is its own name. A proxy on a loopback
  // address with no apiKeys takes changes only for an address or localhost.
  const absl::flat_hash_set<std::string>* keys = routing_->api_keys();
  if (worker_->context().options().loopback_listener && keys != nullptr &&
      keys->empty() && host != nullptr && !IsAddressOrLocalhost(*host)) {
    RespondError(
        403, absl::StrCat("Host ", *host,
                          " names neither an address nor localhost, and the "
                          "config sets no apiKeys: refused (DNS rebinding); "
                          "send it to the proxy's address, or set apiKeys"));
    return false;
  }
  return true;
}

void Exchange::SetActiveProfile() {
  if (!MayChangeState()) return;
  rapidjson::Document doc;
  doc.Parse(body_.data(), body_.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("name") ||
      !(doc["name"].IsString() || doc["name"].IsNull())) {
    return RespondError(400, R"(the body must be {"name": "<profile>"} or )"
                             R"({"name": null})");
  }
  std::string name =
      doc["name"].IsNull()
          ? ""
          : std::string(doc["name"].GetString(), doc["name"].GetStringLength());
  if (!worker_->context().routing().SetActiveProfile(name)) {
    return RespondError(404, absl::StrCat("unknown profile '", name, "'"));
  }
  routing_ = worker_->context().routing().Current();  // The answer shows it.
  RespondProfiles();
}

bool Exchange::Authorized() {
  const absl::flat_hash_set<std::string>& keys = *routing_->api_keys();
  if (keys.empty()) return true;
  // llama-swap's forms: Bearer, the password of Basic, or x-api-key.
  std::vector<std::string> presented;
  if (const std::string* a =
          http1::FindHeader(head_.headers, "authorization")) {
    // The scheme in any case, then one or more spaces (RFC 9110 11.1).
    absl::string_view v = *a;
    size_t space = v.find(' ');
    absl::string_view scheme = v.substr(0, space);
    absl::string_view credentials =
        space == absl::string_view::npos
            ? absl::string_view()
            : absl::StripLeadingAsciiWhitespace(v.substr(space));
    if (absl::EqualsIgnoreCase(scheme, "bearer")) {
      presented.emplace_back(credentials);
    }
    std::string decoded;
    if (absl::EqualsIgnoreCase(scheme, "basic") &&
        absl::Base64Unescape(credentials, &decoded)) {
      presented.push_back(decoded.substr(decoded.find(':') + 1));
    }
  }
  if (const std::string* k = http1::FindHeader(head_.headers, "x-api-key")) {
    presented.push_back(*k);
  }
  for (const std::string& key : presented) {
    if (keys.contains(Sha256Hex(key))) {
      // The keys are the proxy's business: never forwarded upstream.
      head_.headers.erase(
          std::remove_if(head_.headers.begin(), head_.headers.end(),
                         [](const auto& h) {
                           return absl::EqualsIgnoreCase(h.first,
                                                         "authorization") ||
                                  absl::EqualsIgnoreCase(h.first, "x-api-key");
                         }),
          head_.headers.end());
      return true;
    }
  }
  return false;
}

void Exchange::RespondRunning() {
  std::string data;
  for (const router::Route& r : routing_->routes().routes()) {
    const char* state = r.state == v1::MODEL_STATE_STARTING   ? "starting"
                        : r.state == v1::MODEL_STATE_READY    ? "ready"
                        : r.state == v1::MODEL_STATE_STOPPING ? "stopping"
                                                              : nullptr;
    if (state == nullptr) continue;
    absl::StrAppend(&data, data.empty() ? "" : ",", R"({"model":)",
                    JsonString(r.id), R"(,"state":")", state, R"("})");
  }
  Respond(200, "application/json", absl::StrCat(R"({"running":[)", data, "]}"));
}

void Exchange::Unload(const std::string& model) {
  if (!MayChangeState()) return;
  const ProxyContext::Unload& unload = worker_->context().unload();
  if (!unload) return RespondError(503, "unload is not available");
  std::string id = model;
  if (!model.empty()) {
    const router::Route* route = routing_->routes().Find(model);
    if (route == nullptr) {
      return RespondError(404, absl::StrCat("unknown model '", model, "'"));
    }
    id = route->id;
  }
  LoopThread* loop = &worker_->loop();
  std::weak_ptr<bool> alive = alive_;
  uint64_t generation = generation_;
  unload(id, [this, loop, alive,
              generation](absl::StatusOr<std::vector<std::string>> r) {
    loop->Post([this, alive, generation, r = std::move(r)] {
      auto a = alive.lock();
      if (a == nullptr || !*a || generation != generation_) return;
      if (!r.ok()) return RespondError(503, std::string(r.status().message()));
      std::string ids;
      for (const std::string& m : *r) {
        absl::StrAppend(&ids, ids.empty() ? "" : ",", JsonString(m));
      }
      Respond(200, "application/json",
              absl::StrCat(R"({"status":"ok","stopped":[)", ids, "]}"));
    });
  });
}

void Exchange::RespondPreflight() {
  // Permissive, as llama-swap: any origin, the usual methods, and the
  // headers the browser asks for, reduced to token characters (a header
  // value must never carry what the client sent verbatim).
  std::string allow;
  if (const std::string* asked =
          http1::FindHeader(head_.headers, "access-control-request-headers")) {
    for (char ch : *asked) {
      if (absl::ascii_isalnum(static_cast<unsigned char>(ch)) ||
          std::strchr("!#$%&'*+-.^_`|~, ", ch) != nullptr) {
        allow.push_back(ch);
      }
    }
  }
  if (absl::StripAsciiWhitespace(allow).empty()) {
    allow = "Content-Type, Authorization, Accept, X-Requested-With, X-Api-Key";
  }
  http1::Headers headers = {{"Access-Control-Allow-Methods",
                             "GET, POST, PUT, PATCH, DELETE, OPTIONS"},
                            {"Access-Control-Allow-Headers", allow},
                            {"Access-Control-Max-Age", "86400"}};
  if (origin_.empty()) headers.emplace_back("Access-Control-Allow-Origin", "*");
  Respond(204, "", "", headers);
}

void Exchange::RespondMetrics() {
  const ProxyContext::MetricsText& text = worker_->context().metrics();
  if (!text) return RespondError(503, "metrics are not available yet");
  // Gathered from every worker's loop; answered here unless the client went.
  LoopThread* loop = &worker_->loop();
  std::weak_ptr<bool> alive = alive_;
  uint64_t generation = generation_;
  text([this, loop, alive, generation](std::string rendered) {
    loop->Post([this, alive, generation, rendered = std::move(rendered)] {
      auto a = alive.lock();
      if (a == nullptr || !*a || generation != generation_) return;
      Respond(200, "text/plain; version=0.0.4; charset=utf-8", rendered);
    });
  });
}

}  // namespace modelplane::proxy
