// What the web UI asks of the cluster besides requests: a model loaded on
// its node (Load), a model's output from the node that runs it
// (StreamLogs). cluster.h.
#include <utility>

#include "absl/strings/str_cat.h"
#include "proxy/cluster/cluster.h"

namespace modelplane::proxy::cluster {
namespace {

// How long a Load's start may take before the manager is told to give up
// on it for this caller (the start itself goes on: docs/api.md, Start).
constexpr absl::Duration kLoadTimeout = absl::Minutes(30);

}  // namespace

void Cluster::Load(std::shared_ptr<const router::Snapshot> snapshot,
                   const std::string& model, const std::string& node,
                   std::function<void(absl::StatusOr<std::string>)> done) {
  const router::Route* route = snapshot->routes().Find(model);
  if (route == nullptr) {
    return done(absl::NotFoundError(absl::StrCat("no model '", model, "'")));
  }
  std::string id = route->id;
  auto log = options_.link.log;
  auto start = [id, log, done](const std::shared_ptr<Node>& n) {
    if (n == nullptr || n->link() == nullptr) {
      return done(absl::UnavailableError(
          absl::StrCat("no model manager can start '", id, "' now")));
    }
    std::string name = n->name();
    n->link()->Start(id, kLoadTimeout,
                     [id, name, log](absl::StatusOr<v1::Model> m) {
                       if (!m.ok() && log) {
                         log(absl::StrCat("loading ", id, " on ", name,
                                          " failed: ", m.status().ToString()));
                       }
                     });
    done(name);
  };
  if (!node.empty()) {
    std::shared_ptr<Node> named;
    {
      absl::MutexLock lock(&mu_);
      auto it = members_.find(node);
      if (it != members_.end() && it->second.routes != nullptr &&
          it->second.routes->Find(id) != nullptr) {
        named = it->second.node;
      }
    }
    if (named == nullptr) {
      return done(absl::NotFoundError(
          absl::StrCat("no node '", node, "' with model '", id, "'")));
    }
    return start(named);
  }
  // Where a request for it would go: the placement of placement.h, the
  // nodes' costs asked when it is cold.
  absl::StatusOr<Placement> known = PlaceKnown(*snapshot, *route, {});
  if (!known.ok()) return done(known.status());
  if (known->node != nullptr) return start(known->node);
  PlaceCold(
      snapshot, *route, {}, known->reason == Reason::kSpillover,
      [](std::function<void()> fn) { fn(); },
      [start, done](absl::StatusOr<Placement> p) {
        if (!p.ok()) return done(p.status());
        start(p->node);
      });
}

std::function<void()> Cluster::StreamLogs(
    const router::Snapshot& snapshot, const std::string& model,
    const std::string& node, uint32_t history_bytes,
    std::function<void(std::string, uint64_t)> on_chunk,
    std::function<void(absl::Status)> on_end) {
  // The node: the one named; else the first of the model's nodes that runs
  // it, else its first (its history outlives the process); the manager's
  // own log, the first node's.
  std::string name = node;
  if (name.empty()) {
    const router::Route* route = snapshot.routes().Find(model);
    if (route != nullptr && !route->nodes.empty()) {
      name = route->nodes.front().node;
      for (const router::RouteNode& n : route->nodes) {
        if (n.state == v1::MODEL_STATE_READY ||
            n.state == v1::MODEL_STATE_STARTING) {
          name = n.node;
          break;
        }
      }
    }
  }
  std::shared_ptr<Node> target;
  {
    absl::MutexLock lock(&mu_);
    auto it = name.empty() ? members_.begin() : members_.find(name);
    if (it != members_.end()) target = it->second.node;
  }
  if (target == nullptr || target->link() == nullptr) {
    on_end(absl::NotFoundError(name.empty()
                                   ? "no model manager to read logs from"
                                   : absl::StrCat("no node '", name, "'")));
    return [] {};
  }
  v1::StreamLogsRequest request;
  request.set_model(model);
  request.set_follow(true);
  request.set_history_bytes(history_bytes);
  client::LogStream::Handlers h;
  h.on_chunk = [on_chunk](const v1::LogChunk& c) {
    on_chunk(c.data(), c.dropped_bytes());
  };
  h.on_end = [on_end](const absl::Status& s) { on_end(s); };
  std::shared_ptr<client::CallHandle> handle =
      target->link()->StreamLogs(request, std::move(h));
  return [handle] { handle->Cancel(); };
}

}  // namespace modelplane::proxy::cluster
