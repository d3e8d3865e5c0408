// The proxy's two long-lived streams to modelmanager: `Acquire` (leases,
// feeding the LeaseBroker) and `Watch` (the route table). Each reconnects
// with backoff when it breaks; while the Acquire stream is down, new
// requests fail fast (the broker answers UNAVAILABLE) instead of hanging,
// and held leases end with the stream, as the manager ends them too.
//
//   ManagerLink link({"127.0.0.1:50051", token, "modelproxy"});
//   LeaseBroker broker(&link, after);
//   link.Start(&broker, [&](auto routes) { table.store(routes); });
#ifndef MODELPLANE_PROXY_LEASE_MANAGER_LINK_H_
#define MODELPLANE_PROXY_LEASE_MANAGER_LINK_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "client/manager_client.h"
#include "modelplane/v1/model_manager.grpc.pb.h"
#include "proxy/lease/lease_broker.h"
#include "proxy/router/route_table.h"

namespace modelplane::proxy::lease {

struct LinkOptions {
  // The manager: address, bearer token, TLS (its max_reconnect_backoff and
  // keepalive are set by the link: a manager that comes back is noticed
  // within a second, a hung one within about 3 s).
  client::ClientOptions manager;
  std::string client_id = "modelproxy";
  // One line per change of the link's state (connected, lost); any thread.
  std::function<void(const std::string&)> log;
};

class ManagerLink : public LeaseTransport {
 public:
  // The manager's view, from the Watch stream: the route table and the
  // config's data-plane settings (API keys, peers, selectors, ...; null
  // until the manager sent them), as of one point of the stream, delivered
  // whole once the stream's first bookmark came and after every event
  // since, on a gRPC thread. A `settings` pointer that did not change
  // holds the same settings.
  // After a stream that had synced ends, one View with `connected` false
  // (its routes and settings null) says the manager is lost until the next
  // stream syncs.
  struct View {
    std::shared_ptr<const router::RouteTable> routes;
    std::shared_ptr<const v1::DataPlaneSettings> settings;
    bool connected = true;
  };
  using ViewSink = std::function<void(View)>;

  explicit ManagerLink(LinkOptions options);
  // Shutdown(), if not done.
  ~ManagerLink() override;

  // Cancels the streams, waits for them to end and joins the reconnect
  // thread: after it returns, nothing calls the broker or the routes sink.
  void Shutdown();

  // Opens the streams (and keeps them open).
  void Start(LeaseBroker* broker, ViewSink on_view);

  // Stops `model` (empty: every model) through the manager, for the proxy's
  // /unload. `done` runs on a gRPC thread with the ids stopped, once the
  // Watch has brought those stops to the proxy's view (so a /running right
  // after the answer no longer lists them), or the stream ended.
  void Unload(
      const std::string& model,
      std::function<void(absl::StatusOr<std::vector<std::string>>)> done);

  // What starting `model` would cost on this manager (its PlanStart);
  // `done` on a gRPC thread.
  void PlanStart(
      const std::string& model, absl::Duration timeout,
      std::function<void(absl::StatusOr<v1::PlanStartResponse>)> done);

  // Starts `model` (the UI's Load); `done` on a gRPC thread once it is
  // READY or failed.
  void Start(const std::string& model, absl::Duration timeout,
             std::function<void(absl::StatusOr<v1::Model>)> done);

  // The manager's StreamLogs, following (the proxy's /logs/stream/<model>):
  // `on_chunk` and then `on_end` on a gRPC thread. The handle cancels it;
  // Shutdown cancels every one still open.
  std::shared_ptr<client::CallHandle> StreamLogs(
      const v1::StreamLogsRequest& request, client::LogStream::Handlers h);

  // LeaseTransport.
  bool Connected() override;
  void SendAcquire(const std::string& model, uint64_t attempt) override;
  void SendCancel(const std::string& model) override;
  void SendRelease(const std::string& model, uint64_t lease,
                   absl::Time last_used) override;

 private:
  void Run();
  void OnWatchEvent(const v1::WatchEvent& event);
  // Read-your-writes for Unload: the largest revision the published view
  // holds (the current stream's), and who waits for one. Shared with the
  // Stop calls' callbacks, which may outlive the link.
  struct Seen {
    absl::Mutex mu;
    uint64_t revision ABSL_GUARDED_BY(mu) = 0;
    bool closed ABSL_GUARDED_BY(mu) = false;  // The link shut down.
    struct Waiter {
      uint64_t revision;
      absl::Time deadline;
      std::function<void()> fn;
    };
    std::vector<Waiter> waiters ABSL_GUARDED_BY(mu);
  };
  // Runs `fn` once the view published holds `revision` (at once if it
  // does), when the Watch stream ends, the link shuts down, or after
  // kSeenBound (a revision the stream never brings: a model a reload
  // removed while it stopped).
  static void AfterSeen(const std::shared_ptr<Seen>& seen, uint64_t revision,
                        std::function<void()> fn);
  // The waiters the view now covers, those past their bound, or all of
  // them (`everyone`), taken (run them outside any lock).
  std::vector<std::function<void()>> TakeSeen(uint64_t revision, bool everyone);

  LinkOptions options_;
  std::unique_ptr<client::ManagerClient> client_;
  LeaseBroker* broker_ = nullptr;
  ViewSink on_view_;
  // Logs a stream the manager refused (not unreachable), once per cause.
  void LogRefusal(const char* stream, const absl::Status& status);
  absl::Mutex mu_;
  // The streams; freed by the link's thread (or Shutdown) once done().
  std::unique_ptr<client::AcquireStream> acquire_ ABSL_GUARDED_BY(mu_);
  // Connected(), read by every request's placement on every worker: an
  // atomic, not mu_ (which the gRPC threads hold too). Set once acquire_
  // is the live stream, cleared before the broker hears the stream ended.
  std::atomic<bool> acquire_up_{false};
  std::unique_ptr<client::WatchStream> watch_ ABSL_GUARDED_BY(mu_);
  // The log streams opened, cancelled by Shutdown (ended ones expire).
  std::vector<std::weak_ptr<client::CallHandle>> log_streams_
      ABSL_GUARDED_BY(mu_);
  // The current Watch stream's view: touched only by its reactions (one at
  // a time) and, before it starts, by the link's thread.
  std::map<std::string, v1::Model> models_;
  std::shared_ptr<const v1::DataPlaneSettings> settings_;
  bool synced_ = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // LogRefusal's last cause; a lock of its own (a reaction may run while
  // mu_ is held).
  absl::Mutex refusal_mu_;
  std::string last_refusal_ ABSL_GUARDED_BY(refusal_mu_);
  // stopping_, readable without mu_ (from a reaction that Shutdown's
  // cancel may run while it holds mu_): a stream ending then is not news.
  std::atomic<bool> shutting_down_{false};
  std::shared_ptr<Seen> seen_ = std::make_shared<Seen>();
  std::thread thread_;
};

}  // namespace modelplane::proxy::lease

#endif  // MODELPLANE_PROXY_LEASE_MANAGER_LINK_H_
