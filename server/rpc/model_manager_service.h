// modelplane.v1.ModelManager over gRPC's callback API: a thin adapter from
// RPCs to the Manager (server/manager.h). Nothing here blocks a gRPC thread:
// each call posts its work to the actor loop and finishes from there.
//
// Auth: with a token set, every RPC must carry `authorization: Bearer
// <token>` (else UNAUTHENTICATED); the health service is not covered.
#ifndef MODELPLANE_SERVER_RPC_MODEL_MANAGER_SERVICE_H_
#define MODELPLANE_SERVER_RPC_MODEL_MANAGER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "modelplane/v1/model_manager.grpc.pb.h"
#include "server/manager.h"
#include "server/rpc/stream_limits.h"

namespace modelplane::rpc {

class ModelManagerService final : public v1::ModelManager::CallbackService {
 public:
  // `manager` (and `limits`, when set) outlive the service. An empty
  // `auth_token` disables auth; null `limits` bounds no stream.
  ModelManagerService(Manager* manager, std::string auth_token,
                      StreamLimits* limits = nullptr)
      : manager_(manager),
        auth_token_(std::move(auth_token)),
        limits_(limits) {}

  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* ctx,
                                  const v1::StartRequest* req,
                                  v1::Model* resp) override;
  grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext* ctx,
                                 const v1::StopRequest* req,
                                 v1::Model* resp) override;
  grpc::ServerUnaryReactor* WaitReady(grpc::CallbackServerContext* ctx,
                                      const v1::WaitReadyRequest* req,
                                      v1::Model* resp) override;
  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(
      grpc::CallbackServerContext* ctx, const v1::WatchRequest* req) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* ctx,
                                       const v1::ListModelsRequest* req,
                                       v1::ListModelsResponse* resp) override;
  grpc::ServerUnaryReactor* GetModel(grpc::CallbackServerContext* ctx,
                                     const v1::GetModelRequest* req,
                                     v1::Model* resp) override;
  grpc::ServerUnaryReactor* PlanStart(grpc::CallbackServerContext* ctx,
                                      const v1::PlanStartRequest* req,
                                      v1::PlanStartResponse* resp) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* ctx,
                                  const v1::DrainRequest* req,
                                  v1::DrainResponse* resp) override;
  grpc::ServerWriteReactor<v1::LogChunk>* StreamLogs(
      grpc::CallbackServerContext* ctx,
      const v1::StreamLogsRequest* req) override;
  grpc::ServerUnaryReactor* StopAll(grpc::CallbackServerContext* ctx,
                                    const v1::StopAllRequest* req,
                                    v1::StopAllResponse* resp) override;
  grpc::ServerUnaryReactor* ReloadConfig(
      grpc::CallbackServerContext* ctx, const v1::ReloadConfigRequest* req,
      v1::ReloadConfigResponse* resp) override;
  grpc::ServerBidiReactor<v1::AcquireRequest, v1::AcquireResponse>* Acquire(
      grpc::CallbackServerContext* ctx) override;

 private:
  // OK, UNAUTHENTICATED, or UNAVAILABLE while shutting down.
  grpc::Status Admit(grpc::CallbackServerContext* ctx) const;
  // A place for a Watch, StreamLogs or Acquire stream under the limits, or
  // RESOURCE_EXHAUSTED.
  grpc::Status Place(grpc::CallbackServerContext* ctx, absl::string_view rpc,
                     std::unique_ptr<StreamLimits::Slot>* slot);

  // A unary call answered by a scheduler callback (Start, WaitReady, Stop),
  // cancelled with the caller. `begin` runs on the loop thread and returns
  // the waiter to cancel (0: none).
  using WaitFn = std::function<scheduler::WaiterId(
      scheduler::Scheduler&, const std::string&,
      scheduler::Scheduler::ModelDone)>;
  grpc::ServerUnaryReactor* Wait(grpc::CallbackServerContext* ctx,
                                 const std::string& model, v1::Model* resp,
                                 WaitFn begin);

  Manager* manager_;
  std::string auth_token_;
  StreamLimits* limits_;
};

}  // namespace modelplane::rpc

#endif  // MODELPLANE_SERVER_RPC_MODEL_MANAGER_SERVICE_H_
