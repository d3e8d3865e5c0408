// One modelproxy worker: a libuv loop on its own thread with its own
// SO_REUSEPORT listener, its connections and its upstream pool. A new
// connection goes to the worker holding the fewest (handed over before a
// byte is read) and never changes worker after that; the request path takes
// no lock (a held lease admits with one atomic operation).
//
//   Worker w(&context);
//   absl::StatusOr<int> port = w.Listen("127.0.0.1", 0);  // Others: *port.
//   ...
//   w.Stop();  // Closes the listener and every connection.
#ifndef MODELPLANE_PROXY_WORKER_WORKER_H_
#define MODELPLANE_PROXY_WORKER_WORKER_H_

#include <uv.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/loop_thread.h"
#include "common/uv/handle.h"
#include "common/uv/lazy_timer.h"
#include "proxy/answers/activity.h"
#include "proxy/upstream/upstream_pool.h"
#include "proxy/worker/metrics.h"
#include "proxy/worker/proxy_context.h"

namespace modelplane::proxy {

class ClientConnection;

class Worker {
 public:
  explicit Worker(ProxyContext* context);
  // Stops (if not done) and joins the loop thread.
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Whether host:port is free (nobody, not even another modelproxy whose
  // SO_REUSEPORT listeners would silently share it, holds it). Any thread.
  static absl::Status CheckPortFree(const std::string& host, int port);
  // Binds host:port with SO_REUSEPORT (so every worker can bind the same
  // port) and starts accepting. Returns the bound port.
  absl::StatusOr<int> Listen(const std::string& host, int port);
  // The workers of the process (this one among them), before any listens:
  // a connection accepted here goes to whichever holds the fewest.
  void SetSiblings(std::vector<Worker*> siblings) {
    siblings_ = std::move(siblings);
  }
  // Closes the listener and every connection, then the pool.
  void Stop();
  // Graceful: closes the listener and the idle connections; the others
  // close once their response is complete. Returns the connections left.
  size_t Drain();
  size_t connections();

  // For connections (loop thread).
  LoopThread& loop() { return loop_; }
  ProxyContext& context() { return *context_; }
  upstream::UpstreamPool& pool() { return *pool_; }
  void Forget(ClientConnection* c) {
    if (connections_.erase(c) != 0) {
      metrics_.AddConnections(-1);
      load_.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  // Any thread (see metrics.h).
  WorkerMetrics& metrics() { return metrics_; }
  // Its loop thread only (answers/activity.h).
  answers::ActivityRing& activity() { return activity_; }
  // A request's activity entry: into the ring (the newest `keep`), and,
  // with an activity store, into the batch handed to its writer every
  // 100 ms (one lock per batch, none per request). Loop thread.
  void AddActivity(answers::ActivityEntry e, size_t keep);
  // The activity store changed: this worker's hold on the old one goes
  // (its loop thread), so that the old one closes off the loops.
  void LetGoOfStore();
  // The routing snapshot in force (router/snapshot.h); an exchange holds
  // it from its request's start to its end. Loop thread.
  const std::shared_ptr<const router::Snapshot>& routing() {
    return routing_.Current();
  }
  // One read buffer for every connection of the worker: libuv calls alloc
  // then read back to back on the loop thread, and readers copy what they
  // keep.
  static constexpr size_t kReadBufferSize = 64 << 10;
  char* read_buffer() { return read_buffer_.get(); }

 private:
  static void OnConnection(uv_stream_t* listener, int status);
  // Serves a connection another worker accepted (its descriptor).
  void Adopt(int fd);
  void Serve(ClientConnection* c);

  ProxyContext* context_;
  LoopThread loop_;
  std::unique_ptr<upstream::UpstreamPool> pool_;
  uv::Handle<uv_tcp_t> listener_;  // Closed on the loop (Drain, Stop).
  absl::flat_hash_set<ClientConnection*> connections_;
  bool stopped_ = false;
  std::vector<Worker*> siblings_;
  // Connections held or on their way here; read by the siblings.
  std::atomic<int> load_{0};
  // Listening, not draining: siblings may hand it connections.
  std::atomic<bool> accepting_{false};
  bool draining_ = false;
  answers::ActivityRing activity_;
  // Entries for the activity store, and the timer that hands them over.
  std::vector<answers::ActivityEntry> to_store_;
  std::shared_ptr<store::ActivityStore> store_;  // As of store_version_.
  uint64_t store_version_ = 0;
  uv::LazyTimer store_timer_;
  static void OnStoreTimer(void* data);
  void FlushToStore();
  WorkerMetrics metrics_;
  router::SnapshotReader routing_;
  std::unique_ptr<char[]> read_buffer_{new char[kReadBufferSize]};
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_WORKER_H_
