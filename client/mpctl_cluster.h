// mpctl over several managers (docs/mpctl.md, "Several managers"): more
// than one --manager, or a dns: target, is a cluster whose nodes are the
// managers; `ls` and `watch` cover every node and say which is which, and a
// model's commands go to the node that has it (or --node).
#ifndef MODELPLANE_CLIENT_MPCTL_CLUSTER_H_
#define MODELPLANE_CLIENT_MPCTL_CLUSTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/manager_client.h"

namespace modelplane::mpctl {

struct ClusterNode {
  std::string name;  // Its address, as the proxy names it.
  std::unique_ptr<client::ManagerClient> client;
};

// The nodes `targets` name: an address each, or every address of a dns:
// target (resolved once, with c-ares), with the name a TLS certificate is
// checked against (the DNS name; "" for a plain address). InvalidArgument
// for a malformed dns: target; the resolver's error when a name has no
// address.
struct NodeAddress {
  std::string address;
  std::string tls_name;
};
absl::StatusOr<std::vector<NodeAddress>> ResolveNodes(
    const std::vector<std::string>& targets);

// `ls` over every node: a NODE column first, the draining nodes said
// after the table; --json: {"nodes":[{"node", "models", "draining"} or
// {"node", "error"}]}. Exit 4 when a node could not be reached (the others
// are still listed).
int ClusterLs(std::vector<ClusterNode>& nodes, bool json);

// `watch` over every node, merged as the events arrive: each line starts
// with its node after the time; --json: {"node", "event"} per line. Ends
// when every node's stream ended.
int ClusterWatch(std::vector<ClusterNode>& nodes,
                 const std::vector<std::string>& models, bool json,
                 bool revisions);

// The node that has `model` (id or alias), when only one does: NotFound
// when none has it, InvalidArgument naming them when several do (say which
// with --node), Unavailable when a node that could have it is unreachable.
absl::StatusOr<size_t> NodeOf(std::vector<ClusterNode>& nodes,
                              const std::string& model);

// The nodes that have `model` (those reachable).
std::vector<size_t> NodesWith(std::vector<ClusterNode>& nodes,
                              const std::string& model);

}  // namespace modelplane::mpctl

#endif  // MODELPLANE_CLIENT_MPCTL_CLUSTER_H_
