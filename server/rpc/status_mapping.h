// The one place absl::Status becomes grpc::Status (STYLE.md): the codes are
// the same numbers in both, and the message is kept.
#ifndef MODELPLANE_SERVER_RPC_STATUS_MAPPING_H_
#define MODELPLANE_SERVER_RPC_STATUS_MAPPING_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace modelplane::rpc {

grpc::Status ToGrpc(const absl::Status& status);

}  // namespace modelplane::rpc

#endif  // MODELPLANE_SERVER_RPC_STATUS_MAPPING_H_
