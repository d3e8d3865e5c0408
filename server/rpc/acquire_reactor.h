// The Acquire RPC: one long-lived bidi stream per client carrying its leases
// on any number of models. Reads become scheduler calls on the actor loop;
// the scheduler's answers (QUEUED, STARTING, GRANTED, REVOKED, FAILED) queue
// up here and are written one at a time. The stream ending in any way
// releases every lease it held.
#ifndef MODELPLANE_SERVER_RPC_ACQUIRE_REACTOR_H_
#define MODELPLANE_SERVER_RPC_ACQUIRE_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include "modelplane/v1/model_manager.pb.h"
#include "server/manager.h"
#include "server/rpc/stream_limits.h"

namespace modelplane::rpc {

// Responses a client may leave unread before its stream is ended with
// RESOURCE_EXHAUSTED (its leases released).
inline constexpr size_t kMaxQueuedResponses = 4096;

// The longest names a stream may send (INVALID_ARGUMENT past them).
inline constexpr size_t kMaxClientIdBytes = 256;
inline constexpr size_t kMaxRequestIdBytes = 256;
inline constexpr size_t kMaxModelNameBytes = 1024;

grpc::ServerBidiReactor<v1::AcquireRequest, v1::AcquireResponse>*
NewAcquireReactor(Manager* manager, grpc::CallbackServerContext* ctx,
                  grpc::Status admit, std::unique_ptr<StreamLimits::Slot> slot);

}  // namespace modelplane::rpc

#endif  // MODELPLANE_SERVER_RPC_ACQUIRE_REACTOR_H_
