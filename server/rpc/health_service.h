// grpc.health.v1.Health, served by modelmanager itself (not gRPC's default
// service) so that its Watch streams count under the same StreamLimits as
// the API's: gRPC's own took any number of them, each kept in memory.
// Check and Watch need no token (orchestrators probe without one).
//
// The statuses: "" (the manager), and "model/<id>" (SERVING while the model
// is READY). Check answers NOT_FOUND for a name it does not know; Watch
// sends SERVICE_UNKNOWN for it, then every change, as the protocol says.
//
//   HealthService health(&limits);
//   builder.RegisterService(&health);
//   health.Set("model/qwen", true);   // Any thread.
//   health.Shutdown();                // NOT_SERVING for all, for good.
//
// Thread-safe.
#ifndef MODELPLANE_SERVER_RPC_HEALTH_SERVICE_H_
#define MODELPLANE_SERVER_RPC_HEALTH_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/rpc/stream_limits.h"

namespace modelplane::rpc {

class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  // `limits` may be null (no limits).
  explicit HealthService(StreamLimits* limits) : limits_(limits) {}

  // Sets `service` SERVING or NOT_SERVING (unless shut down) and tells its
  // watchers.
  void Set(const std::string& service, bool serving);
  // Every service NOT_SERVING, and it stays so.
  void Shutdown();

  grpc::ServerUnaryReactor* Check(
      grpc::CallbackServerContext* ctx,
      const grpc::health::v1::HealthCheckRequest* req,
      grpc::health::v1::HealthCheckResponse* resp) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* ctx,
      const grpc::health::v1::HealthCheckRequest* req) override;

 private:
  using Status = grpc::health::v1::HealthCheckResponse::ServingStatus;
  class WatchReactor;

  using Watchers = std::multimap<std::string, std::function<void()>>;

  // The status of `service` now (SERVICE_UNKNOWN: not known).
  Status StatusOf(const std::string& service);
  Watchers::iterator Subscribe(const std::string& service,
                               std::function<void()> wake);
  void Unsubscribe(Watchers::iterator it);

  StreamLimits* limits_;
  absl::Mutex mu_;
  std::map<std::string, bool> serving_ ABSL_GUARDED_BY(mu_);
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  // Each watcher, by the service it watches; its waker pumps it.
  Watchers watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace modelplane::rpc

#endif  // MODELPLANE_SERVER_RPC_HEALTH_SERVICE_H_
