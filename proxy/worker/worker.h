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
  // The tables the manager sent (routes, API keys, ignorePaths, peers,
  // selectors), cached per worker. Refresh() takes the context's newest
  // ones (when its version moved) and frees the old: it is called where a
  // request begins to be handled (Exchange::Begin, Exchange::Dispatch), so
  // that references taken from these accessors stay valid while that
  // handling runs. Loop thread.
  void Refresh() {
    uint64_t v = context_->routes_version();
    if (routes_ == nullptr || v != routes_version_) {
      routes_ = context_->routes();
      api_keys_ = context_->api_keys();
      ignore_paths_ = context_->ignore_paths();
      peers_ = context_->peers();
      selectors_ = context_->selectors();
      active_profile_ = context_->active_profile();
      routes_version_ = v;
    }
  }
  const router::RouteTable& routes() {
    if (routes_ == nullptr) Refresh();
    return *routes_;
  }
  // Null until the manager has told which keys there are.
  const ProxyContext::KeySet* api_keys() {
    if (routes_ == nullptr) Refresh();
    return api_keys_.get();
  }
  const router::PeerTable& peers() {
    if (routes_ == nullptr) Refresh();
    return *peers_;
  }
  const router::SelectorTable& selectors() {
    if (routes_ == nullptr) Refresh();
    return *selectors_;
  }
  // Null: none active.
  const router::ProfileRoute* active_profile() {
    if (routes_ == nullptr) Refresh();
    return active_profile_.get();
  }
  // Null until the manager has told.
  const ProxyContext::PathPatterns* ignore_paths() {
    if (routes_ == nullptr) Refresh();
    return ignore_paths_.get();
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
  uv_tcp_t* listener_ = nullptr;
  absl::flat_hash_set<ClientConnection*> connections_;
  bool stopped_ = false;
  std::vector<Worker*> siblings_;
  // Connections held or on their way here; read by the siblings.
  std::atomic<int> load_{0};
  // Listening, not draining: siblings may hand it connections.
  std::atomic<bool> accepting_{false};
  bool draining_ = false;
  WorkerMetrics metrics_;
  std::shared_ptr<const router::RouteTable> routes_;
  std::shared_ptr<const ProxyContext::KeySet> api_keys_;
  std::shared_ptr<const ProxyContext::PathPatterns> ignore_paths_;
  std::shared_ptr<const router::PeerTable> peers_;
  std::shared_ptr<const router::SelectorTable> selectors_;
  std::shared_ptr<const router::ProfileRoute> active_profile_;
  uint64_t routes_version_ = 0;
  std::unique_ptr<char[]> read_buffer_{new char[kReadBufferSize]};
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_WORKER_H_
