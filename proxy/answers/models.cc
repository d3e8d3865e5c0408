#include "proxy/answers/models.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/json_string.h"
#include "proxy/answers/answer.h"

namespace modelplane::proxy::answers {
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

// A command's words as one line, a word with a space or a quote in single
// quotes (as a shell would take it back).
std::string CommandLine(
    const google::protobuf::RepeatedPtrField<std::string>& argv) {
  std::string out;
  for (const std::string& w : argv) {
    if (!out.empty()) out += ' ';
    if (!w.empty() && w.find_first_of(" \t'\"\\$") == std::string::npos) {
      out += w;
      continue;
    }
    out += '\'';
    for (char c : w) {
      if (c == '\'') {
        out += "'\\''";
      } else {
        out += c;
      }
    }
    out += '\'';
  }
  return out;
}

}  // namespace

std::string ModelList(const router::Snapshot& snapshot, int64_t created) {
  std::vector<std::pair<std::string, std::string>> entries;  // id, JSON.
  auto model = [&entries, created](const router::Route& r,
                                   const std::string& id,
                                   const std::string& name) {
    // The nodes that have it (docs/cluster.md), once per model.
    std::string nodes;
    for (const router::RouteNode& n : r.nodes) {
      absl::StrAppend(&nodes, nodes.empty() ? "" : ",", JsonString(n.node));
    }
    // llama-swap's capabilities fields, and the context as meta.n_ctx.
    std::string n_ctx = r.context_length > 0
                            ? absl::StrCat(R"(,"n_ctx":)", r.context_length)
                            : "";
    entries.emplace_back(
        id, absl::StrCat(R"({"id":)", JsonString(id),
                         R"(,"object":"model","owned_by":"modelplane","name":)",
                         JsonString(name), R"(,"description":)",
                         JsonString(r.description), r.capability_fields,
                         R"(,"meta":{"llamaswap":)", r.metadata_json, n_ctx,
                         R"(,"nodes":[)", nodes, R"(]},"created":)", created,
                         R"(,"status":{"value":")", StatusValue(r.state),
                         R"("}})"));
  };
  // includeAliasesInList: each alias an entry of its own (a setParamsByID
  // variant such as "qwen:think" is one a client picks), with its model's
  // name.
  bool aliases = snapshot.list_aliases();
  const router::RouteTable& routes = snapshot.routes();
  for (const router::Route& r : routes.routes()) {
    if (r.unlisted) continue;
    const std::string& name = r.name.empty() ? r.id : r.name;
    model(r, r.id, name);
    if (!aliases) continue;
    for (const std::string& a : r.aliases) model(r, a, name);
  }
  // Selectors, virtual models: loaded when a target is.
  for (const router::SelectorRoute& sel : snapshot.selectors().routes()) {
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
                     R"(},"created":)", created, R"(,"status":{"value":")",
                     loaded ? "loaded" : "unloaded", "\"}}"));
  }
  // The peers' models, as <peer>/<model>; their state is the peer's
  // business.
  for (const router::PeerRoute& p : snapshot.peers().routes()) {
    entries.emplace_back(
        p.name(),
        absl::StrCat(R"({"id":)", JsonString(p.name()),
                     R"(,"object":"model","owned_by":)", JsonString(p.peer),
                     R"(,"name":)", JsonString(p.model), R"(,"peer":)",
                     JsonString(p.peer), R"(,"created":)", created, "}"));
  }
  // The active profile: its pinned names are models too (to the name they
  // become); the names it disables are gone.
  if (const router::ProfileRoute* prof = snapshot.active_profile()) {
    for (const auto& [from, to] : prof->pins) {
      entries.erase(std::remove_if(entries.begin(), entries.end(),
                                   [&from = from](const auto& e) {
                                     return e.first == from;
                                   }),
                    entries.end());
      if (to.empty()) continue;
      entries.emplace_back(
          from,
          absl::StrCat(R"({"id":)", JsonString(from),
                       R"(,"object":"model","owned_by":"modelplane",)"
                       R"("name":)",
                       JsonString(to), R"(,"profile":)", JsonString(prof->name),
                       R"(,"created":)", created, "}"));
    }
  }
  std::stable_sort(
      entries.begin(), entries.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
  std::string data;
  for (const auto& [id, json] : entries) {
    absl::StrAppend(&data, data.empty() ? "" : ",", json);
  }
  return absl::StrCat(R"({"object":"list","data":[)", data, "]}");
}

std::string RunningList(const router::Snapshot& snapshot) {
  // One entry per model and node it runs on, with llama-swap's fields.
  std::string data;
  for (const router::Route& r : snapshot.routes().routes()) {
    for (const router::RouteNode& n : r.nodes) {
      const char* state = n.state == v1::MODEL_STATE_STARTING   ? "starting"
                          : n.state == v1::MODEL_STATE_READY    ? "ready"
                          : n.state == v1::MODEL_STATE_STOPPING ? "stopping"
                          : n.state == v1::MODEL_STATE_SLEEPING ? "sleeping"
                                                                : nullptr;
      if (state == nullptr) continue;
      std::string cmd, proxy;
      int64_t ttl = 0;
      if (n.model != nullptr) {
        cmd = CommandLine(n.model->argv());
        proxy = n.model->upstream_url();
        ttl = n.model->ttl().seconds();
      }
      absl::StrAppend(&data, data.empty() ? "" : ",", R"({"model":)",
                      JsonString(r.id), R"(,"node":)", JsonString(n.node),
                      R"(,"state":")", state, R"(","cmd":)", JsonString(cmd),
                      R"(,"proxy":)", JsonString(proxy), R"(,"ttl":)", ttl,
                      R"(,"name":)", JsonString(r.name), R"(,"description":)",
                      JsonString(r.description), "}");
    }
  }
  return absl::StrCat(R"({"running":[)", data, "]}");
}

void Models(const AnswerRequest& q, Responder* r) {
  // `created` is now, as llama-swap answers it.
  r->Respond(200, "application/json",
             ModelList(q.snapshot, absl::ToUnixSeconds(absl::Now())));
}

void Running(const AnswerRequest& q, Responder* r) {
  r->Respond(200, "application/json", RunningList(q.snapshot));
}

}  // namespace modelplane::proxy::answers
