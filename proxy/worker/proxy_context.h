// What every worker of a modelproxy process shares: the cluster (its nodes'
// lease brokers, placement), the routing state (immutable snapshots swapped in
// whole) and the options. Thread-safe.
#ifndef MODELPLANE_PROXY_WORKER_PROXY_CONTEXT_H_
#define MODELPLANE_PROXY_WORKER_PROXY_CONTEXT_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/memory_trimmer.h"
#include "common/tls/tls.h"
#include "proxy/answers/activity.h"
#include "proxy/answers/answer.h"
#include "proxy/answers/event_hub.h"
#include "proxy/cluster/cluster.h"
#include "proxy/http1/codec.h"
#include "proxy/lease/lease_broker.h"
#include "proxy/router/snapshot.h"
#include "proxy/store/activity_store.h"
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
  // One line per request on stderr (--access-log), or to this sink when
  // set (the `modelplane` binary's one log); any worker thread.
  bool access_log = false;
  std::function<void(const std::string& line)> access_log_sink;
  // The proxy listens on a loopback address (a DNS-rebinding page is the
  // way in from a browser there: Exchange::MayChangeState).
  bool loopback_listener = false;
  // Request bodies held at once by every worker (body_budget.h).
  uint64_t max_buffered_body_bytes = uint64_t{1} << 30;
  // With TLS on the listener: a handshake not done within this closes the
  // connection.
  absl::Duration tls_handshake_timeout = absl::Seconds(10);
};

class ProxyContext {
 public:
  explicit ProxyContext(ProxyOptions options, MemoryTrimmer* trimmer = nullptr)
      : options_(options),
        trimmer_(trimmer),
        bodies_(options.max_buffered_body_bytes) {}

  // The nodes and placement (proxy/cluster). Set once before serving.
  cluster::Cluster& cluster() { return *cluster_; }
  void set_cluster(cluster::Cluster* cluster) { cluster_ = cluster; }
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
  // Every worker's activity log, gathered (GET /api/metrics/activity). Set
  // once before any worker listens.
  void set_activity(answers::ActivityFn activity) {
    activity_ = std::move(activity);
  }
  const answers::ActivityFn& activity() const { return activity_; }
  // Activity ids: one atomic add per request, no lock.
  uint64_t NextActivityId() {
    return next_activity_.fetch_add(1, std::memory_order_relaxed) + 1;
  }
  // The activity page from the store, when there is one (answers.h).
  answers::ActivityStoreFn activity_store() const {
    return [this](answers::ActivityPageQuery q,
                  std::function<void(absl::StatusOr<std::string>)> done) {
      std::shared_ptr<store::ActivityStore> s = store();
      if (s == nullptr) return false;
      s->Query({std::move(q.model), q.status, q.before, q.limit},
               [done = std::move(done)](absl::StatusOr<store::ActivityPage> p) {
                 if (!p.ok()) return done(p.status());
                 done(answers::ActivityPageJson(p->entries, p->more));
               });
      return true;
    };
  }
  // Ids go on after `floor` (the activity store's largest, when it opens).
  void RaiseActivityIds(uint64_t floor) {
    uint64_t now = next_activity_.load(std::memory_order_relaxed);
    while (now < floor && !next_activity_.compare_exchange_weak(now, floor)) {
    }
  }
  // The activity store (store.path), or null: swapped whole when the
  // settings change it. Any thread.
  // TLS on the listener (null: cleartext). A reload replaces it; a
  // connection keeps the one it was accepted with.
  std::shared_ptr<const tls::ServerTlsContext> tls() const {
    return std::atomic_load_explicit(&tls_, std::memory_order_acquire);
  }
  void set_tls(std::shared_ptr<const tls::ServerTlsContext> t) {
    std::atomic_store_explicit(&tls_, std::move(t), std::memory_order_release);
  }

  std::shared_ptr<store::ActivityStore> store() const {
    return std::atomic_load_explicit(&store_, std::memory_order_acquire);
  }
  void set_store(std::shared_ptr<store::ActivityStore> s) {
    std::atomic_store_explicit(&store_, std::move(s),
                               std::memory_order_release);
    store_version_.fetch_add(1, std::memory_order_release);
  }
  // Bumped by set_store: a worker keeps its own copy of the pointer and
  // reads it again only when this moved (libstdc++'s atomic shared_ptr
  // takes a lock; the request path takes none).
  uint64_t store_version() const {
    return store_version_.load(std::memory_order_acquire);
  }

  // The event bus of /api/events and the proxy's log (null: 503). Set
  // once before any worker listens.
  void set_events(answers::EventHub* events) { events_ = events; }
  answers::EventHub* events() const { return events_; }
  // A model's output from its manager (/logs/stream/<model>), and a model
  // started (/api/models/load); empty without managers. Set once before
  // any worker listens.
  void set_logs(answers::LogsFn logs) { logs_ = std::move(logs); }
  const answers::LogsFn& logs() const { return logs_; }
  using Load = std::function<void(
      std::shared_ptr<const router::Snapshot>, const std::string& model,
      const std::string& node,
      std::function<void(absl::StatusOr<std::string>)> done)>;
  void set_load(Load load) { load_ = std::move(load); }
  const Load& load() const { return load_; }

  // The streaming answers open (events, logs), ended together when the
  // proxy drains: registered by the exchanges when they open one.
  uint64_t AddStream(std::weak_ptr<answers::StreamOut> s) {
    absl::MutexLock lock(&streams_mu_);
    streams_.emplace(++next_stream_, std::move(s));
    return next_stream_;
  }
  void RemoveStream(uint64_t id) {
    absl::MutexLock lock(&streams_mu_);
    streams_.erase(id);
  }
  void EndStreams() {
    std::map<uint64_t, std::weak_ptr<answers::StreamOut>> all;
    {
      absl::MutexLock lock(&streams_mu_);
      all = streams_;
    }
    for (auto& [id, weak] : all) {
      if (auto s = weak.lock()) s->End();
    }
  }

  // What requests are routed by: the manager link feeds it, the workers
  // read it (router/snapshot.h).
  router::RoutingState& routing() { return routing_; }

 private:
  cluster::Cluster* cluster_ = nullptr;
  ProxyOptions options_;
  MemoryTrimmer* trimmer_;
  BodyBudget bodies_;
  Unload unload_;
  MetricsText metrics_;
  answers::ActivityFn activity_;
  answers::EventHub* events_ = nullptr;
  answers::LogsFn logs_;
  Load load_;
  absl::Mutex streams_mu_;
  std::map<uint64_t, std::weak_ptr<answers::StreamOut>> streams_
      ABSL_GUARDED_BY(streams_mu_);
  uint64_t next_stream_ ABSL_GUARDED_BY(streams_mu_) = 0;
  std::atomic<uint64_t> next_activity_{0};
  std::shared_ptr<store::ActivityStore> store_;
  std::shared_ptr<const tls::ServerTlsContext> tls_;
  std::atomic<uint64_t> store_version_{0};
  router::RoutingState routing_;
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_PROXY_CONTEXT_H_
