// Everything a request is routed by, in one immutable snapshot: the models
// (routes, aliases, filters, limits, upstream timeouts), and the manager's
// data-plane settings (API keys, ignorePaths, peers, selectors, profiles,
// includeAliasesInList), with the active profile. A request takes the
// snapshot current when it starts and keeps it to its end, so it is routed,
// authorized and listed by one consistent state.
//
// One producer (`RoutingState`) builds a new snapshot on every change (the
// manager link's Watch stream, a profile switch) and publishes it; workers
// read it through a `SnapshotReader` each, which costs one atomic load per
// request while nothing changed.
//
//   RoutingState state;
//   state.SetModels(RouteTable::Build(models));          // Watch events.
//   state.SetSettings(settings);                         // SETTINGS events.
//   SnapshotReader reader(&state);                       // One per worker.
//   std::shared_ptr<const Snapshot> s = reader.Current();
//   s->routes().Find("qwen");
//
// With several managers, the cluster (proxy/cluster/cluster.h) merges their
// views into the one table and settings given here, with the node set.
#ifndef MODELPLANE_PROXY_ROUTER_SNAPSHOT_H_
#define MODELPLANE_PROXY_ROUTER_SNAPSHOT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "modelplane/v1/model_manager.pb.h"
#include "proxy/router/route_table.h"
#include "re2/re2.h"

namespace modelplane::proxy::cluster {
class NodeSet;  // proxy/cluster/node.h: what the routes' nodes name.
}  // namespace modelplane::proxy::cluster

namespace modelplane::proxy::router {

// The manager's data-plane settings (v1::DataPlaneSettings), compiled.
struct Settings {
  // The SHA-256 (hex) of each accepted API key; empty: no auth.
  absl::flat_hash_set<std::string> api_keys;
  bool list_aliases = false;
  // Activity entries kept (metricsMaxInMemory).
  size_t activity_limit = 1000;
  // The activity store's file (store.path; "": none) and bound.
  std::string store_path;
  uint64_t store_max_rows = 1000000;
  // hooks.on_startup.profile ("": none).
  std::string startup_profile;
  // upstream.ignorePaths: paths after /upstream/<model> that never start
  // their model.
  std::vector<std::unique_ptr<RE2>> ignore_paths;
  std::shared_ptr<const PeerTable> peers = PeerTable::Build({});
  std::shared_ptr<const SelectorTable> selectors = SelectorTable::Build({});
  std::shared_ptr<const ProfileTable> profiles = ProfileTable::Build({});

  static std::shared_ptr<const Settings> From(const v1::DataPlaneSettings& s);
};

class Snapshot {
 public:
  const RouteTable& routes() const { return *routes_; }
  // Null until the manager has sent its settings: nothing but /health is
  // served then (the proxy fails closed).
  const Settings* settings() const { return settings_.get(); }
  // Null until known, as settings().
  const absl::flat_hash_set<std::string>* api_keys() const {
    return settings_ != nullptr ? &settings_->api_keys : nullptr;
  }
  const PeerTable& peers() const { return *Or().peers; }
  const SelectorTable& selectors() const { return *Or().selectors; }
  const ProfileTable& profiles() const { return *Or().profiles; }
  const std::vector<std::unique_ptr<RE2>>& ignore_paths() const {
    return Or().ignore_paths;
  }
  bool list_aliases() const { return Or().list_aliases; }
  size_t activity_limit() const { return Or().activity_limit; }
  // Null: none active.
  const ProfileRoute* active_profile() const { return active_profile_.get(); }
  // The nodes the routes name (Route::nodes), null until the cluster set
  // them: held with the routes, so a request finds every node its snapshot
  // names.
  const cluster::NodeSet* nodes() const { return nodes_.get(); }
  // Grows with every snapshot published.
  uint64_t version() const { return version_; }

 private:
  friend class RoutingState;
  const Settings& Or() const;

  std::shared_ptr<const RouteTable> routes_ = RouteTable::Build({});
  std::shared_ptr<const Settings> settings_;
  std::shared_ptr<const ProfileRoute> active_profile_;
  std::shared_ptr<const cluster::NodeSet> nodes_;
  uint64_t version_ = 0;
};

// The producer and publisher. Thread-safe.
class RoutingState {
 public:
  RoutingState();

  // The models and the settings in force (the Watch stream and its
  // SETTINGS events), published in one snapshot; a null one stays as it
  // is. Profiles that differ from the last ones (a reload changed them)
  // deselect the active one, as in llama-swap; the same ones keep it.
  // `nodes`, when not null, replaces the node set (proxy/cluster).
  void Update(std::shared_ptr<const RouteTable> routes,
              std::shared_ptr<const Settings> settings,
              std::shared_ptr<const cluster::NodeSet> nodes = nullptr);
  void SetModels(std::shared_ptr<const RouteTable> routes) {
    Update(std::move(routes), nullptr);
  }
  void SetSettings(std::shared_ptr<const Settings> settings) {
    Update(nullptr, std::move(settings));
  }
  // Makes `name` the active profile ("": none). False if there is no such
  // profile.
  bool SetActiveProfile(const std::string& name);

  // Runs `fn` with every snapshot published, in order, under the
  // producers' lock (keep it short). Set once, before any update.
  void set_on_publish(std::function<void(const Snapshot&)> fn) {
    absl::MutexLock lock(&mu_);
    on_publish_ = std::move(fn);
  }

  // The snapshot in force (takes no lock).
  std::shared_ptr<const Snapshot> Current() const;
  // Its version, readable without the lock.
  uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  // Publishes a new snapshot of the inputs.
  void Rebuild() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::shared_ptr<const RouteTable> routes_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Settings> settings_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const ProfileRoute> active_profile_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const cluster::NodeSet> nodes_ ABSL_GUARDED_BY(mu_);
  // Published by an atomic pointer swap (std::atomic_store; the producers
  // take mu_ among themselves), read with std::atomic_load: no lock.
  std::function<void(const Snapshot&)> on_publish_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Snapshot> current_;
  std::atomic<uint64_t> version_{0};
};

// One worker's view of a RoutingState: the snapshot it holds is replaced
// only when the state's version moved, so that reading it takes no lock.
// One thread.
class SnapshotReader {
 public:
  explicit SnapshotReader(const RoutingState* state) : state_(state) {}
  const std::shared_ptr<const Snapshot>& Current() {
    if (held_ == nullptr || state_->version() != held_->version()) {
      held_ = state_->Current();
    }
    return held_;
  }

 private:
  const RoutingState* state_;
  std::shared_ptr<const Snapshot> held_;
};

}  // namespace modelplane::proxy::router

#endif  // MODELPLANE_PROXY_ROUTER_SNAPSHOT_H_
