// The proxy's routing table: which names (ids and aliases) lead to which
// model, with the per-model settings the data plane applies (filters,
// useModelName, concurrency limit, listing). Built from the manager's Model
// messages (the Watch stream), immutable once built, and shared across the
// workers as a `shared_ptr<const RouteTable>` swapped in on every change.
#ifndef MODELPLANE_PROXY_ROUTER_ROUTE_TABLE_H_
#define MODELPLANE_PROXY_ROUTER_ROUTE_TABLE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "modelplane/v1/model_manager.pb.h"
#include "proxy/router/body_filters.h"

namespace modelplane::proxy::router {

// The routes whose model is in the request body (POST): JSON, or a
// multipart form. llama-swap's set: OpenAI, Anthropic, llama.cpp,
// stable-diffusion (sdapi) and audio.cpp (/audioapi, forwarded without that
// prefix), and the versionless /v/... forms (forwarded without the /v).
inline constexpr const char* kBodyRoutes[] = {
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/reranking",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/v1/audio/voices",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/completion",
    "/infill",
    "/rerank",
    "/reranking",
    "/v1/rerank/",
    "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img",
    "/audioapi/v1/tasks/run",
    "/v/chat/completions",
    "/v/completions",
    "/v/responses",
    "/v/embeddings",
    "/v/rerank",
    "/v/reranking",
    "/v/messages",
    "/v/messages/count_tokens",
};

// One node's hold on a model: a node is one modelmanager of the cluster
// (docs/cluster.md), named by its address.
struct RouteNode {
  std::string node;
  v1::ModelState state = v1::MODEL_STATE_STOPPED;
  // The node's whole view of the model (pid, leases, failure...), for the
  // UI's status; null for a node that is lost (its models STOPPED).
  std::shared_ptr<const v1::Model> model;
};

struct Route {
  std::string id;
  std::string name;
  std::string description;
  std::vector<std::string> aliases;
  bool unlisted = false;
  int concurrency_limit = 10;
  FilterSpec filters;               // useModelName, stripParams, setParams...
  bool send_loading_state = false;  // Loading as reasoning_content deltas.
  // compat.ignoreWebsockets: a WebSocket takes no lease (409 unless READY).
  bool ignore_websockets = false;
  std::string metadata_json;  // "{}" when none.
  // llama-swap's capabilities, rendered as /v1/models shows them (its
  // OpenRouter-style fields, each with its leading comma: architecture,
  // capabilities, supported_parameters, context_length), and the context
  // length (meta.n_ctx); "" and 0 when the model has none.
  std::string capability_fields;
  uint64_t context_length = 0;
  // The most ready of its nodes' states (READY, then STARTING, STOPPING,
  // FAILED, STOPPED): what a client sees of the model as a whole.
  v1::ModelState state = v1::MODEL_STATE_STOPPED;
  // The manager's Model it was built from (one node's table), else null.
  std::shared_ptr<const v1::Model> model;
  // The nodes that have it, by name (empty in a table of one node's own).
  std::vector<RouteNode> nodes;
  // Waits on the upstream (config `timeouts`); zero: no limit.
  absl::Duration connect_timeout;
  absl::Duration response_header_timeout;
  absl::Duration idle_timeout;
  absl::Duration keepalive;
  // https:// upstreams: the handshake's time and how the certificate is
  // trusted (CA PEM; null: the system's roots; or none checked).
  absl::Duration tls_handshake_timeout;
  std::shared_ptr<const std::string> tls_ca_pem;
  bool tls_insecure = false;
  // `replicas`: up to this many nodes run it; one more starts when its
  // requests waited this long on every node that runs it.
  int replicas_max = 1;
  absl::Duration spillover_after = absl::Seconds(2);
};

class RouteTable {
 public:
  static std::shared_ptr<const RouteTable> Build(
      const std::vector<v1::Model>& models);
  // The cluster's table: the union of the nodes' tables, given by node name
  // in the order to prefer (a model's settings are the first node's that
  // has it; its `nodes` list every node that has it, in this order).
  using NodeTables =
      std::vector<std::pair<std::string, std::shared_ptr<const RouteTable>>>;
  static std::shared_ptr<const RouteTable> Merge(const NodeTables& nodes);
  // This table with every model STOPPED: a node lost until it is back
  // (its models stay known; none is taken for running there).
  std::shared_ptr<const RouteTable> AllStopped() const;

  // The route for an id or alias, or nullptr.
  const Route* Find(const std::string& name) const;
  // Sorted by id.
  const std::vector<Route>& routes() const { return routes_; }

 private:
  // Indexes routes_ (sorted by id) by ids and aliases.
  void Index();

  std::vector<Route> routes_;
  std::map<std::string, size_t> by_name_;
};

// A llama-swap `selectors` entry: a virtual model, resolved per request to
// one of its targets (model ids) by its strategy.
struct SelectorRoute {
  std::string id;
  std::string strategy;  // pin, warm or spillover.
  std::vector<std::string> targets;
  int spillover = 1;
  std::string name;
  std::string description;
  bool unlisted = false;
  std::string metadata_json;  // "{}" when none.
};

class SelectorTable {
 public:
  static std::shared_ptr<const SelectorTable> Build(
      const std::vector<v1::Selector>& selectors);
  const SelectorRoute* Find(const std::string& name) const;
  const std::vector<SelectorRoute>& routes() const { return routes_; }

 private:
  std::vector<SelectorRoute> routes_;  // Sorted by id.
};

// A llama-swap `profiles` entry: name rewrites while it is active.
struct ProfileRoute {
  std::string name;
  std::string description;
  // Requested name -> the name it becomes; "" makes it unknown (404).
  std::map<std::string, std::string> pins;
  bool operator==(const ProfileRoute& o) const {
    return name == o.name && description == o.description && pins == o.pins;
  }
};

class ProfileTable {
 public:
  static std::shared_ptr<const ProfileTable> Build(
      const std::vector<v1::Profile>& profiles);
  // Shared, so that the active one can be held apart from the table.
  std::shared_ptr<const ProfileRoute> Find(const std::string& name) const;
  const std::vector<std::shared_ptr<const ProfileRoute>>& routes() const {
    return routes_;
  }

 private:
  std::vector<std::shared_ptr<const ProfileRoute>> routes_;  // By name.
};

// One model of a llama-swap `peers` entry: forwarded to the peer as it is,
// with no lease (the peer runs its own models).
struct PeerRoute {
  std::string peer;      // The peer's id.
  std::string model;     // The name the peer knows it by.
  std::string upstream;  // The peer's scheme://host:port.
  // The path of its URL, requests going under it ("/api": a request's
  // /v1/models goes to /api/v1/models); "" for none.
  std::string base_path;
  std::string api_key;  // Sent as Bearer and x-api-key; empty: none.
  FilterSpec filters;
  absl::Duration connect_timeout;
  absl::Duration response_header_timeout;
  absl::Duration idle_timeout;
  absl::Duration tls_handshake_timeout;
  absl::Duration keepalive;
  // https://: the CA certificates (PEM; null: the system's roots), or no
  // check at all.
  std::shared_ptr<const std::string> tls_ca_pem;
  bool tls_insecure = false;
  // What clients may always call it: <peer>/<model>.
  std::string name() const { return peer + "/" + model; }
};

// The peers' models, by <peer>/<model> and by bare name when only one peer
// has it. Local models come first: Find is asked only for names no local
// model has. Immutable once built.
class PeerTable {
 public:
  static std::shared_ptr<const PeerTable> Build(
      const std::vector<v1::Peer>& peers);

  const PeerRoute* Find(const std::string& name) const;
  // Sorted by <peer>/<model>.
  const std::vector<PeerRoute>& routes() const { return routes_; }

 private:
  std::vector<PeerRoute> routes_;
  std::map<std::string, size_t> by_name_;
};

}  // namespace modelplane::proxy::router

#endif  // MODELPLANE_PROXY_ROUTER_ROUTE_TABLE_H_
