// Domain types to API messages: scheduler::ModelView to modelplane.v1.Model,
// config::Value to google.protobuf.Struct/Value, times and durations.
#ifndef MODELPLANE_SERVER_RPC_CONVERT_H_
#define MODELPLANE_SERVER_RPC_CONVERT_H_

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/time/time.h"
#include "modelplane/v1/model_manager.pb.h"
#include "server/core/config/value.h"
#include "server/core/scheduler/scheduler.h"
#include "server/core/watch/watch_hub.h"

namespace modelplane::rpc {

// Model.lease_holders lists at most this many (active_leases counts all).
inline constexpr size_t kMaxLeaseHolders = 64;

void ToProto(const scheduler::ModelView& view, v1::Model* out);
// The plan, and its cost: none (no start, or nothing to evict), idle (every
// victim without holders) or busy.
void ToProto(const scheduler::StartPlan& plan, v1::PlanStartResponse* out);
void ToProto(const config::Filters& filters, v1::ModelFilters* out);
void ToProto(const config::PeerConfig& peer, v1::Peer* out);
void ToProto(const config::SelectorConfig& selector, v1::Selector* out);
void ToProto(const config::ProfileConfig& profile, v1::Profile* out);
// The config's settings a data plane applies (API keys as their SHA-256).
void ToProto(const config::Config& config, v1::DataPlaneSettings* out);
void ToProto(const actor::Failure& failure, v1::Failure* out);
void ToProto(const watch::GpuReport& gpu, v1::Gpu* out);
void ToProto(const config::Value& value, google::protobuf::Value* out);
void ToProto(absl::Time t, google::protobuf::Timestamp* out);
v1::ModelState ToProto(actor::State state);
v1::FailureReason ToProto(actor::FailureReason reason);
absl::Time FromProto(const google::protobuf::Timestamp& t);

}  // namespace modelplane::rpc

#endif  // MODELPLANE_SERVER_RPC_CONVERT_H_
