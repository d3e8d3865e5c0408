// The nodes modelproxy serves and where each request goes among them
// (docs/cluster.md). Each node is one modelmanager; the cluster's routing
// snapshot is the union of their Watch views (a model configured on several
// nodes is one route listing them), and the data-plane settings (API keys,
// peers, selectors, profiles) are those of the first node, by name, that
// sent them: the nodes of one cluster are meant to share them.
//
//   Cluster cluster(&routing, options);
//   cluster.SetMembers({"10.0.0.1:50051", "10.0.0.2:50051"});
//   absl::StatusOr<Placement> p = cluster.PlaceKnown(*snapshot, *route, {});
//   if (p.ok() && p->node == nullptr) cluster.PlaceCold(...);  // PlanStart.
//
// Thread-safe. Views arrive on the links' gRPC threads; placement runs on
// the workers' loops.
#ifndef MODELPLANE_PROXY_CLUSTER_CLUSTER_H_
#define MODELPLANE_PROXY_CLUSTER_CLUSTER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proxy/cluster/node.h"
#include "proxy/cluster/placement.h"
#include "proxy/lease/lease_broker.h"
#include "proxy/lease/manager_link.h"
#include "proxy/router/route_table.h"
#include "proxy/router/snapshot.h"

namespace modelplane::proxy::cluster {

struct ClusterOptions {
  // What every node's link shares: token, TLS, client id and log (the
  // target is each node's).
  lease::LinkOptions link;
  // The brokers' timers (the lease linger).
  lease::LeaseBroker::After after;
  // The settings in force changed (the first node's, by name, that sent
  // them); on a link's thread.
  std::function<void(const v1::DataPlaneSettings&)> on_settings;
  // How long a cold placement waits for the nodes' PlanStart answers.
  absl::Duration plan_timeout = absl::Seconds(2);
  // A node's name by its target, where it is not the target itself (the
  // `modelplane` binary's manager, on a private socket, is "local").
  std::map<std::string, std::string> node_names;
};

struct Placement {
  std::shared_ptr<Node> node;  // Null from PlaceKnown: ask PlaceCold.
  Reason reason = Reason::kReady;
};

class Cluster {
 public:
  Cluster(router::RoutingState* routing, ClusterOptions options);
  // Shutdown().
  ~Cluster();

  // The nodes are these manager addresses: new ones are connected, the
  // ones no longer named take no new request and are retired (their links
  // closed, their leases given back) once their requests ended (Reap).
  // `tls_names`: for an address found through DNS, the name its TLS
  // certificate is checked against (the DNS name).
  void SetMembers(const std::vector<std::string>& targets,
                  const std::map<std::string, std::string>& tls_names = {});
  // In-process tests: a node behind `transport` (not owned), whose views
  // come through OnView.
  std::shared_ptr<Node> AddNode(const std::string& name,
                                lease::LeaseTransport* transport);
  // A node's view (the link's, or a test's).
  void OnView(const std::string& node, lease::ManagerLink::View view);
  // Retires the nodes that left once nothing runs on them; true while any
  // is still waited for.
  bool Reap();
  // Retires every node: requests waiting for a lease are answered. After
  // it, nothing calls the routing state.
  void Shutdown();

  // Steps (1) and (2) of placement.h for `route` (from `snapshot`), never
  // on a node named in `exclude`: a node, or a Placement with no node when
  // the costs must be asked (PlaceCold); Unavailable when no node that has
  // the model can take it now.
  absl::StatusOr<Placement> PlaceKnown(
      const router::Snapshot& snapshot, const router::Route& route,
      const std::vector<std::string>& exclude) const;
  // Step (3): asks each node that could start the model what it would
  // cost, then places by it; `done` through `post`. `spill`: a replica's
  // spillover (PlaceKnown's reason), among the nodes that do not hold it.
  using Post = lease::LeaseBroker::Post;
  void PlaceCold(std::shared_ptr<const router::Snapshot> snapshot,
                 const router::Route& route, std::vector<std::string> exclude,
                 bool spill, Post post,
                 std::function<void(absl::StatusOr<Placement>)> done);

  // Requests in flight or waiting for `model` on every node (selectors).
  static int Busy(const router::Snapshot& snapshot, const std::string& model);

  // Stops `model` (empty: every model) on every node that has it (every
  // node); `done` once all answered, with the ids stopped (an error only
  // when every node failed).
  void Unload(
      const std::string& model,
      std::function<void(absl::StatusOr<std::vector<std::string>>)> done);

  // Starts `model` (resolved in `snapshot`) on `node`, or where a request
  // for it would be placed (the UI's Load); `done` (any thread) once the
  // start was sent, with the node's name. The start goes on after that
  // (its outcome is in the model's state); a failure is logged.
  void Load(std::shared_ptr<const router::Snapshot> snapshot,
            const std::string& model, const std::string& node,
            std::function<void(absl::StatusOr<std::string>)> done);

  // A model's output (or "manager": the manager's log) from the node
  // named, or the model's first node that runs it (answers::LogsFn).
  // Returns the function that cancels it.
  std::function<void()> StreamLogs(
      const router::Snapshot& snapshot, const std::string& model,
      const std::string& node, uint32_t history_bytes,
      std::function<void(std::string data, uint64_t dropped)> on_chunk,
      std::function<void(absl::Status)> on_end);

  // The current nodes (tests, metrics).
  std::shared_ptr<const NodeSet> nodes() const;

 private:
  struct Member {
    std::shared_ptr<Node> node;
    std::shared_ptr<const router::RouteTable> routes;
    std::shared_ptr<const v1::DataPlaneSettings> settings;
    bool connected = false;
  };
  // Builds the union of the members' views and publishes it with the node
  // set.
  void Publish() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Node> Connect(const std::string& name,
                                const std::string& target,
                                const std::string& tls_name);

  router::RoutingState* routing_;
  ClusterOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, Member> members_ ABSL_GUARDED_BY(mu_);
  // Nodes that left, kept until their requests ended.
  std::vector<std::shared_ptr<Node>> leaving_ ABSL_GUARDED_BY(mu_);
  // The settings last published (their source's), and compiled.
  std::shared_ptr<const v1::DataPlaneSettings> settings_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const NodeSet> nodes_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  // PlanStart calls whose answers are still due.
  int plans_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace modelplane::proxy::cluster

#endif  // MODELPLANE_PROXY_CLUSTER_CLUSTER_H_
