// What every worker of a modelproxy process shares: the lease broker, the
// current route table (an immutable snapshot swapped in whole) and the
// options. Thread-safe.
#ifndef MODELPLANE_PROXY_WORKER_PROXY_CONTEXT_H_
#define MODELPLANE_PROXY_WORKER_PROXY_CONTEXT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/memory_trimmer.h"
#include "proxy/http1/codec.h"
#include "proxy/lease/lease_broker.h"
#include "proxy/router/route_table.h"
#include "proxy/worker/body_budget.h"
#include "re2/re2.h"

namespace modelplane::proxy {

struct ProxyOptions {
  http1::Limits limits;  // 431 / 413.
  // A client that has begun a request must finish its head within this
  // (408 otherwise: slow-loris protection).
  absl::Duration header_timeout = absl::Seconds(30);
  // A request body must keep arriving: at most this between two reads (408
  // otherwise), like nginx's client_body_timeout.
  absl::Duration body_timeout = absl::Seconds(60);
  // A client that takes none of a pending response for this long is cut
  // off (its lease given back), like nginx's send_timeout.
  absl::Duration send_timeout = absl::Seconds(60);
  // An idle keep-alive connection is closed after this.
  absl::Duration idle_timeout = absl::Seconds(60);
  // A response is not read from the upstream while this much waits for a
  // slow client.
  size_t max_buffered_response = 1 << 20;
  // A streaming request waiting this long for its model (a start, a swap)
  // gets a 200 event-stream head and an SSE comment line every interval
  // (`: loading <model> 3.2s`) until the model answers; 0: never.
  absl::Duration loading_interval = absl::Seconds(1);
  // One line per request on stderr (--access-log).
  bool access_log = false;
  // The proxy listens on a loopback address (a DNS-rebinding page is the
  // way in from a browser there: Exchange::MayChangeState).
  bool loopback_listener = false;
  // Request bodies held at once by every worker (body_budget.h).
  uint64_t max_buffered_body_bytes = uint64_t{1} << 30;
};

class ProxyContext {
 public:
  ProxyContext(lease::LeaseBroker* broker, ProxyOptions options,
               MemoryTrimmer* trimmer = nullptr)
      : broker_(broker),
        options_(options),
        trimmer_(trimmer),
        bodies_(options.max_buffered_body_bytes) {}

  lease::LeaseBroker& broker() { return *broker_; }
  // The request bodies held in memory, process-wide.
  BodyBudget& bodies() { return bodies_; }
  // A large body was freed: its memory goes back to the system (null in
  // tests: nothing).
  void FreedLargeBody() {
    if (trimmer_ != nullptr) trimmer_->Request();
  }

  // Stops a model (empty: all) through the manager, for /unload; `done` on
  // any thread. Set once by main before serving.
  using Unload = std::function<void(
      const std::string&,
      std::function<void(absl::StatusOr<std::vector<std::string>>)>)>;
  void set_unload(Unload unload) { unload_ = std::move(unload); }
  const Unload& unload() const { return unload_; }
  const ProxyOptions& options() const { return options_; }
  // Renders /metrics (every worker's counters and the broker's loads) and
  // gives it to `done`, on any thread: each worker copies its own counters
  // on its own loop, so recording a request takes no lock. Set once by main
  // before any worker listens.
  using MetricsText =
      std::function<void(std::function<void(std::string)> done)>;
  void set_metrics(MetricsText metrics) { metrics_ = std::move(metrics); }
  const MetricsText& metrics() const { return metrics_; }

  // The table in force: a snapshot, valid for as long as it is held.
  std::shared_ptr<const router::RouteTable> routes() const {
    absl::MutexLock lock(&mu_);
    return routes_;
  }
  void SetRoutes(std::shared_ptr<const router::RouteTable> routes) {
    absl::MutexLock lock(&mu_);
    routes_ = std::move(routes);
    version_.fetch_add(1, std::memory_order_release);
  }
  // The SHA-256 (hex) of each accepted API key; empty: no auth; null: not
  // known yet (the manager has not told: nothing but /health is served).
  using KeySet = absl::flat_hash_set<std::string>;
  std::shared_ptr<const KeySet> api_keys() const {
    absl::MutexLock lock(&mu_);
    return api_keys_;
  }

  // The config's upstream.ignorePaths, compiled: paths after
  // /upstream/<model> that never start their model. Null until the manager
  // told (nothing is served then anyway).
  using PathPatterns = std::vector<std::unique_ptr<RE2>>;
  std::shared_ptr<const PathPatterns> ignore_paths() const {
    absl::MutexLock lock(&mu_);
    return ignore_paths_;
  }

  // The config's peers (their models, by name); never null.
  std::shared_ptr<const router::PeerTable> peers() const {
    absl::MutexLock lock(&mu_);
    return peers_;
  }

  // The config's selectors; never null.
  std::shared_ptr<const router::SelectorTable> selectors() const {
    absl::MutexLock lock(&mu_);
    return selectors_;
  }

  // The config's profiles, and the one active (null: none).
  std::shared_ptr<const router::ProfileTable> profiles() const {
    absl::MutexLock lock(&mu_);
    return profiles_;
  }
  std::shared_ptr<const router::ProfileRoute> active_profile() const {
    absl::MutexLock lock(&mu_);
    return active_profile_;
  }
  // What ListModels carries besides the models, swapped in at once (a
  // worker never sees new peers next to old selectors). Profiles that differ
  // from the last ones (a reload changed them) deselect the active one, as
  // in llama-swap; the same ones keep it.
  struct Globals {
    std::shared_ptr<const KeySet> api_keys;
    std::shared_ptr<const PathPatterns> ignore_paths;
    std::shared_ptr<const router::PeerTable> peers;
    std::shared_ptr<const router::SelectorTable> selectors;
    std::shared_ptr<const router::ProfileTable> profiles;
  };
  void SetGlobals(Globals g) {
    absl::MutexLock lock(&mu_);
    bool same = g.profiles->routes().size() == profiles_->routes().size();
    for (size_t i = 0; same && i < g.profiles->routes().size(); ++i) {
      same = *g.profiles->routes()[i] == *profiles_->routes()[i];
    }
    active_profile_ = same && active_profile_ != nullptr
                          ? g.profiles->Find(active_profile_->name)
                          : nullptr;
    api_keys_ = std::move(g.api_keys);
    ignore_paths_ = std::move(g.ignore_paths);
    peers_ = std::move(g.peers);
    selectors_ = std::move(g.selectors);
    profiles_ = std::move(g.profiles);
    version_.fetch_add(1, std::memory_order_release);
  }
  // Makes `name` the active profile ("": none). False if there is no such
  // profile.
  bool SetActiveProfile(const std::string& name) {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<const router::ProfileRoute> p;
    if (!name.empty()) {
      p = profiles_->Find(name);
      if (p == nullptr) return false;
    }
    active_profile_ = std::move(p);
    version_.fetch_add(1, std::memory_order_release);
    return true;
  }

  // The config's includeAliasesInList (any thread).
  bool list_aliases() const {
    return list_aliases_.load(std::memory_order_relaxed);
  }
  void set_list_aliases(bool on) {
    list_aliases_.store(on, std::memory_order_relaxed);
  }

  // Bumped on every SetRoutes, SetGlobals and SetActiveProfile:
  // workers cache
  // the snapshots and refresh them only when this moved (no lock on the
  // request path).
  uint64_t routes_version() const {
    return version_.load(std::memory_order_acquire);
  }

 private:
  lease::LeaseBroker* broker_;
  ProxyOptions options_;
  MemoryTrimmer* trimmer_;
  BodyBudget bodies_;
  Unload unload_;
  MetricsText metrics_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const router::RouteTable> routes_ ABSL_GUARDED_BY(mu_) =
      router::RouteTable::Build({});
  std::shared_ptr<const KeySet> api_keys_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const PathPatterns> ignore_paths_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const router::PeerTable> peers_ ABSL_GUARDED_BY(mu_) =
      router::PeerTable::Build({});
  std::shared_ptr<const router::SelectorTable> selectors_ ABSL_GUARDED_BY(mu_) =
      router::SelectorTable::Build({});
  std::shared_ptr<const router::ProfileTable> profiles_ ABSL_GUARDED_BY(mu_) =
      router::ProfileTable::Build({});
  std::shared_ptr<const router::ProfileRoute> active_profile_
      ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> version_{0};
  std::atomic<bool> list_aliases_{false};
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_PROXY_CONTEXT_H_
