// One node of the cluster modelproxy serves: one modelmanager, reached by
// its own ManagerLink (Watch and Acquire streams), with its own LeaseBroker
// (docs/cluster.md). A request placed on a node holds a reference to it
// until it ends, so a node that leaves the cluster lives on until the last
// one is done.
//
// Thread-safe.
#ifndef MODELPLANE_PROXY_CLUSTER_NODE_H_
#define MODELPLANE_PROXY_CLUSTER_NODE_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "proxy/lease/lease_broker.h"
#include "proxy/lease/manager_link.h"

namespace modelplane::proxy::cluster {

class Node {
 public:
  // A node behind its manager (`link.manager.target`).
  Node(std::string name, lease::LinkOptions link,
       lease::LeaseBroker::After after);
  // A node behind `transport` (not owned; in-process tests): no PlanStart,
  // no Unload.
  Node(std::string name, lease::LeaseTransport* transport,
       lease::LeaseBroker::After after);
  // Retire().
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Its manager's address as given (or resolved), e.g. 10.0.0.7:50051: the
  // name /running, X-Modelplane-Node and the metrics show.
  const std::string& name() const { return name_; }
  lease::LeaseBroker& broker() { return *broker_; }
  // Null for a test transport's node.
  lease::ManagerLink* link() { return link_.get(); }

  // Opens the link's streams; its views go to `on_view`.
  void Start(lease::ManagerLink::ViewSink on_view);
  // Its Acquire stream is up and it was not retired.
  bool usable() const {
    return !retired_.load(std::memory_order_acquire) && transport_->Connected();
  }
  // Its manager drains (Watch settings): it starts no model.
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  void set_draining(bool d) { draining_.store(d, std::memory_order_release); }
  // Ends the link: its streams close and its leases end with them (waiting
  // requests get UNAVAILABLE). Idempotent; may block for the streams' end,
  // so not on a worker's loop.
  void Retire();
  bool retired() const { return retired_.load(std::memory_order_acquire); }

 private:
  // The broker's timers run only while the node lives: a linger check due
  // after the node went does nothing (the node may go on any thread).
  struct TimerGuard {
    absl::Mutex mu;
    bool alive ABSL_GUARDED_BY(mu) = true;
  };
  static lease::LeaseBroker::After Guarded(std::shared_ptr<TimerGuard> guard,
                                           lease::LeaseBroker::After after);

  std::shared_ptr<TimerGuard> guard_ = std::make_shared<TimerGuard>();
  std::string name_;
  std::unique_ptr<lease::ManagerLink> link_;
  lease::LeaseTransport* transport_;
  std::unique_ptr<lease::LeaseBroker> broker_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> retired_{false};
};

// The cluster's nodes as one routing snapshot sees them (immutable).
class NodeSet {
 public:
  explicit NodeSet(std::vector<std::shared_ptr<Node>> nodes);
  // Null when no such node.
  Node* Find(absl::string_view name) const;
  std::shared_ptr<Node> Share(absl::string_view name) const;
  // By name.
  const std::vector<std::shared_ptr<Node>>& nodes() const { return nodes_; }

 private:
  std::vector<std::shared_ptr<Node>> nodes_;
  absl::flat_hash_map<std::string, size_t> by_name_;
};

}  // namespace modelplane::proxy::cluster

#endif  // MODELPLANE_PROXY_CLUSTER_NODE_H_
