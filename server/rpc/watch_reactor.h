// The Watch RPC's stream: one write in flight, the next event pulled from
// the WatchHub only when the previous write completed, so a slow watcher
// costs the manager nothing (the hub coalesces its backlog per model).
#ifndef MODELPLANE_SERVER_RPC_WATCH_REACTOR_H_
#define MODELPLANE_SERVER_RPC_WATCH_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include "modelplane/v1/model_manager.pb.h"
#include "server/manager.h"
#include "server/rpc/stream_limits.h"

namespace modelplane::rpc {

// Finishes at once with `admit` when it is not OK.
grpc::ServerWriteReactor<v1::WatchEvent>* NewWatchReactor(
    Manager* manager, grpc::CallbackServerContext* ctx,
    const v1::WatchRequest* req, grpc::Status admit,
    std::unique_ptr<StreamLimits::Slot> slot);

}  // namespace modelplane::rpc

#endif  // MODELPLANE_SERVER_RPC_WATCH_REACTOR_H_
