// A small C++ client for modelplane.v1.ModelManager: what mpctl, the proxy
// and other services use to talk to modelmanager.
//
//   ManagerClient c = ManagerClient::Connect({"127.0.0.1:50051"});
//   absl::StatusOr<v1::Model> m = c.Start("qwen", absl::Seconds(120));
//   c.StartAsync("qwen", absl::Seconds(120),
//                [](absl::StatusOr<v1::Model> m) { ... });  // gRPC thread.
//
// Every call has a deadline. Errors come back as absl::Status with the
// server's code and message (UNAVAILABLE when the manager is unreachable).
// Thread-safe: calls may be made from any thread.
#ifndef MODELPLANE_CLIENT_MANAGER_CLIENT_H_
#define MODELPLANE_CLIENT_MANAGER_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "modelplane/v1/model_manager.grpc.pb.h"

namespace modelplane::client {

struct ClientOptions {
  // host:port, or unix:PATH.
  std::string target = "127.0.0.1:50051";
  // Sent as `authorization: Bearer <token>` when not empty.
  std::string token;
  // TLS (MakeCredentials in client/credentials.h); null: cleartext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

class ManagerClient {
 public:
  static ManagerClient Connect(const ClientOptions& options);

  absl::StatusOr<v1::Model> Start(const std::string& model,
                                  absl::Duration timeout);
  absl::StatusOr<v1::Model> Stop(const std::string& model, bool force,
                                 absl::Duration timeout);
  absl::StatusOr<v1::Model> WaitReady(const std::string& model,
                                      absl::Duration timeout);
  absl::StatusOr<v1::Model> GetModel(const std::string& model,
                                     absl::Duration timeout);
  absl::StatusOr<v1::ListModelsResponse> ListModels(absl::Duration timeout);
  absl::StatusOr<v1::StopAllResponse> StopAll(bool force,
                                              absl::Duration timeout);
  absl::StatusOr<v1::ReloadConfigResponse> ReloadConfig(absl::Duration timeout);

  // Calls `on_event` for each event until it returns false, the stream ends
  // or `timeout` passes (InfiniteDuration: no deadline). Returns how the
  // stream ended (OK when on_event stopped it).
  absl::Status Watch(
      const v1::WatchRequest& request, absl::Duration timeout,
      const std::function<bool(const v1::WatchEvent&)>& on_event);
  absl::Status StreamLogs(
      const v1::StreamLogsRequest& request, absl::Duration timeout,
      const std::function<bool(const v1::LogChunk&)>& on_chunk);

  // The async form, for event loops: `done` runs on a gRPC thread. It is
  // gRPC's callback API, whose threads sleep 100 ms after an idle second: in
  // a process that makes such calls rarely, `done` can run up to 100 ms late
  // unless the process keeps a GrpcPollKeeper (common/grpc_poll_keeper.h)
  // alive, as modelproxy and modelmanager do.
  void StartAsync(const std::string& model, absl::Duration timeout,
                  std::function<void(absl::StatusOr<v1::Model>)> done);

  v1::ModelManager::Stub* stub() { return stub_.get(); }

 private:
  ManagerClient(std::shared_ptr<grpc::Channel> channel, std::string token);
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) const;

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ModelManager::Stub> stub_;
  std::string token_;
};

// grpc::Status as absl::Status (same codes).
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace modelplane::client

#endif  // MODELPLANE_CLIENT_MANAGER_CLIENT_H_
