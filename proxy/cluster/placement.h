// Where a request for a model goes among the nodes that have it: the
// placement rule of docs/cluster.md, as pure functions (no sockets, no
// clocks), so that every proxy given the same view chooses alike.
//
//   std::vector<Candidate> c = ...;          // One per node that has M.
//   Choice ch = PlaceKnown("qwen", c);
//   if (ch.index < 0 && ch.ask_costs) { ... PlanStart on each, then
//     ch = PlaceByCost("qwen", c, costs); }
//
// The order: (1) a node where the model is READY, the one with the fewest
// of this proxy's requests for it (in flight or waiting); (2) a node where
// it is STARTING, or where this proxy already waits for it; (3) the node
// where starting it costs least (its manager's PlanStart: no eviction, then
// evicting idle models, then busy ones). A node where the model is at its
// concurrencyLimit is taken for (1) and (2) only when no other is, and a
// draining one last, and never for (3). Ties go by rendezvous hashing of
// (model, node): several proxies pick the same node without talking to
// each other. With `replicas` above 1, when every node that holds the model
// is saturated (its requests waited past spilloverAfterMs, or it is at the
// limit) and fewer than max hold it, the model spills over: it starts on
// one more node, by (3) among the others.
#ifndef MODELPLANE_PROXY_CLUSTER_PLACEMENT_H_
#define MODELPLANE_PROXY_CLUSTER_PLACEMENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "modelplane/v1/model_manager.pb.h"

namespace modelplane::proxy::cluster {

// Why a node was chosen (counted per reason in /metrics).
enum class Reason { kReady, kStarting, kCost, kSpillover, kFailover };
const char* ReasonName(Reason reason);

struct Candidate {
  std::string node;
  v1::ModelState state = v1::MODEL_STATE_STOPPED;
  // This proxy's requests for the model on that node: in flight and
  // waiting for the lease.
  int busy = 0;
  bool draining = false;
  // Reachable (its Acquire stream is up) and not excluded (a node this
  // request already failed on): false ones are never chosen.
  bool usable = true;
  // This proxy has as many requests in flight there as the model's
  // concurrencyLimit.
  bool at_limit = false;
  // Replicas: requests for it waited there past spilloverAfterMs (or it is
  // at the limit).
  bool saturated = false;
  // It runs or starts there, or this proxy has requests for it there.
  bool Holds() const {
    return state == v1::MODEL_STATE_READY ||
           state == v1::MODEL_STATE_STARTING || busy > 0;
  }
};

struct Choice {
  int index = -1;  // Into the candidates; -1: none.
  Reason reason = Reason::kReady;
  // index < 0 and some node could start the model: ask the costs.
  bool ask_costs = false;
};

// Steps (1) and (2), and the replicas' spillover (`replicas_max` > 1): then
// a Choice with ask_costs and reason kSpillover, for PlaceByCost with
// `spill`.
Choice PlaceKnown(absl::string_view model,
                  const std::vector<Candidate>& candidates,
                  int replicas_max = 1);

// Step (3), `costs` by candidate (COST_UNSPECIFIED: the node did not
// answer). Nodes whose cost is REFUSED or unknown are chosen only when no
// other can be, so that the request fails with a node's own reason. Among
// nodes of equal cost, one where the model is SLEEPING goes first (waking
// it is quicker than a start elsewhere).
// With `spill`, only among the nodes that do not hold the model.
Choice PlaceByCost(absl::string_view model,
                   const std::vector<Candidate>& candidates,
                   const std::vector<v1::PlanStartResponse::Cost>& costs,
                   bool spill = false);

// The rendezvous weight of (model, node): a stable 64-bit hash, the same in
// every process and on every machine.
uint64_t RendezvousWeight(absl::string_view model, absl::string_view node);

}  // namespace modelplane::proxy::cluster

#endif  // MODELPLANE_PROXY_CLUSTER_PLACEMENT_H_
