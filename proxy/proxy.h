// One modelproxy: its cluster of managers (a link and a lease broker each),
// the routing state and the workers, started, drained and stopped in one
// order. What
// the server's `Manager` is to modelmanager; `modelproxy_main.cc` parses
// flags and runs one.
//
//   Proxy proxy(config);
//   absl::Status s = proxy.Start();       // Listening on proxy.port().
//   ...
//   proxy.Drain(absl::Seconds(30));       // SIGTERM: finish what is in flight.
//   proxy.Stop();                         // Or the destructor.
#ifndef MODELPLANE_PROXY_PROXY_H_
#define MODELPLANE_PROXY_PROXY_H_

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/grpc_poll_keeper.h"
#include "common/loop_thread.h"
#include "common/memory_trimmer.h"
#include "proxy/cluster/cluster.h"
#include "proxy/cluster/membership.h"
#include "proxy/lease/lease_broker.h"
#include "proxy/lease/manager_link.h"
#include "proxy/worker/proxy_context.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

struct ProxyConfig {
  // Where to listen: an IP address (or "localhost") and a port (0: any).
  std::string host = "127.0.0.1";
  int port = 8080;
  int workers = 1;
  // What every manager link shares (token, TLS, the link's log); its
  // target is the first manager's.
  lease::LinkOptions link;
  // The managers, one node each, or dns: targets, a node per address
  // (docs/cluster.md); empty: link.manager's.
  std::vector<std::string> managers;
  // A node's name by its manager's target, where it is not the target
  // itself (cluster.h, ClusterOptions::node_names).
  std::map<std::string, std::string> node_names;
  // TLS on the listener (PEM files; both or neither): TLS 1.2 and 1.3,
  // ALPN h2 and http/1.1 (common/tls/tls.h); no cleartext on the port.
  std::string tls_cert_file;
  std::string tls_key_file;
  // How often dns: targets are resolved again.
  absl::Duration resolve_interval = absl::Seconds(5);
  // Instead of the managers: one node, "local", whose leases go through
  // this transport (which answers into broker()), its view given by
  // SetLocalView, and no /unload. For in-process tests (proxy_test.cc).
  // Not owned.
  lease::LeaseTransport* transport = nullptr;
  ProxyOptions options;
  // One line of the proxy's own log; level "info" or "warn". Any thread.
  std::function<void(const std::string& line, const char* level)> log;
};

class Proxy {
 public:
  explicit Proxy(ProxyConfig config);
  // Stop().
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // What Start would refuse before anything runs: TLS files that cannot be
  // used (InvalidArgument), a bad address (InvalidArgument) or a port
  // already taken. For a caller that starts other things first.
  static absl::Status Check(const ProxyConfig& config);

  // Connects to the manager and listens. A port already taken (even by
  // another modelproxy, whose SO_REUSEPORT listeners would share it) is an
  // error, and nothing is left running.
  absl::Status Start();
  // The port listened on (the one picked, for port 0).
  int port() const { return port_; }
  // Stops accepting and closes idle connections; waits up to `budget` for
  // the others to finish their response. Returns the connections left (cut
  // by Stop).
  size_t Drain(absl::Duration budget);
  // Closes every connection, ends the manager link (requests still waiting
  // for a lease are answered through their loops before those go), then
  // frees the workers; the rest goes with the Proxy. Idempotent.
  void Stop();

  // Reads the TLS certificate and key again (SIGHUP): new connections get
  // the new ones, open ones keep theirs. On an error (logged by the
  // caller) the old ones stay. Nothing without TLS.
  absl::Status ReloadTls();
  bool tls() const { return !config_.tls_cert_file.empty(); }

  // Waits until the first settings have come from a manager (API keys,
  // limits: before them every request but /health is a 503), at most
  // `timeout`. True if they came.
  bool WaitForSettings(absl::Duration timeout);

  // One line of the proxy's own log: to config.log, and to the web UI's
  // log (/logs/stream/proxy, /api/events). Any thread.
  void Log(const std::string& line, const char* level = "info");

  // For tests and /metrics (after Start).
  ProxyContext& context() { return *context_; }
  cluster::Cluster& cluster() { return *cluster_; }
  // The test transport's node's broker and view (config.transport).
  lease::LeaseBroker& broker() { return local_->broker(); }
  void SetLocalView(std::shared_ptr<const router::RouteTable> routes,
                    std::shared_ptr<const v1::DataPlaneSettings> settings);

 private:
  // The broker's timers (the lease linger), on a loop of their own; pending
  // ones are closed with their tasks when it goes.
  class Timers;
  // The settings in force changed: says once that the proxy serves beyond
  // this host with no apiKeys.
  void OnSettings(const v1::DataPlaneSettings& settings);
  // Opens, switches or closes the activity store (store.path) as the
  // settings say; the timers' loop.
  void ConfigureStore(const std::string& path, uint64_t max_rows);
  // Puts `store` in force; the old one closes on the timers' loop once
  // every worker let go of it.
  void SwapStore(std::shared_ptr<store::ActivityStore> store);
  // Reaps the nodes that left, and sends the in-flight counts to the
  // event stream's readers, every half second (on the timers' loop), until
  // Stop().
  void ReapLater();
  // `each` on every worker's loop, then `last` on the loop of the last.
  void OnEveryWorker(std::function<void(Worker*)> each,
                     std::function<void()> last);
  void RenderMetrics(std::function<void(std::string)> done);
  // The requests in flight and queued per model and node, as the
  // `inflight` event's JSON.
  std::string InFlightJson() const;
  void GatherActivity(
      std::function<void(std::vector<answers::ActivityEntry>)> done);

  // Members in dependency order: each is destroyed before those above it
  // (Stop() has ended the link's calls and freed the workers by then). The
  // timers go before the broker they call: pending ones are closed, not
  // run.
  ProxyConfig config_;
  bool loopback_ = false;
  // gRPC's callback API: without it, the link's first message after an
  // idle second could wait up to 100 ms (grpc_poll_keeper.h).
  std::unique_ptr<GrpcPollKeeper> poll_keeper_;
  std::unique_ptr<Timers> timers_;
  std::unique_ptr<MemoryTrimmer> trimmer_;
  // The event bus and the proxy log's history (made with the Proxy: its log
  // lines from the start are kept).
  std::unique_ptr<answers::EventHub> events_;
  std::unique_ptr<ProxyContext> context_;
  std::unique_ptr<cluster::Cluster> cluster_;
  std::unique_ptr<cluster::Membership> membership_;
  std::shared_ptr<cluster::Node> local_;  // config.transport's.
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> open_warned_{false};
  std::atomic<bool> settings_came_{false};
  absl::Notification settings_known_;  // Notified once, at the first.
  // Set by Stop() on the timers' loop: no reap, and no store configured,
  // after it.
  bool reap_stopped_ = false;
  // A store path that failed to open (warned once; timers' loop).
  std::string failed_store_;
  // The timers' loop's ticks (ReapLater), for the events' keepalive.
  uint64_t ticks_ = 0;
  int port_ = 0;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_PROXY_H_
