// The StreamLogs RPC: history from a model's LogBuffer (or the manager's
// own, for "manager"), then, with follow, live output. A reader that falls
// behind gets `dropped_bytes`, never back-pressure on the model's pipes.
#ifndef MODELPLANE_SERVER_RPC_LOGS_REACTOR_H_
#define MODELPLANE_SERVER_RPC_LOGS_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include "modelplane/v1/model_manager.pb.h"
#include "server/manager.h"
#include "server/rpc/stream_limits.h"

namespace modelplane::rpc {

grpc::ServerWriteReactor<v1::LogChunk>* NewLogsReactor(
    Manager* manager, grpc::CallbackServerContext* ctx,
    const v1::StreamLogsRequest* req, grpc::Status admit,
    std::unique_ptr<StreamLimits::Slot> slot);

}  // namespace modelplane::rpc

#endif  // MODELPLANE_SERVER_RPC_LOGS_REACTOR_H_
