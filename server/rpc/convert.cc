#include "server/rpc/convert.h"

#include <algorithm>
#include <cmath>

#include "common/sha256.h"

namespace modelplane::rpc {
namespace {

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  int64_t seconds = absl::ToInt64Seconds(d);
  out->set_seconds(seconds);
  out->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(d - absl::Seconds(seconds))));
}

void ToStruct(const config::Value& v, google::protobuf::Struct* out) {
  if (v.kind() != config::Value::Kind::kObject) return;
  for (const auto& [key, member] : v.AsObject()) {
    ToProto(member, &(*out->mutable_fields())[key]);
  }
}

}  // namespace

void ToProto(absl::Time t, google::protobuf::Timestamp* out) {
  if (t == absl::Time() || t == absl::InfinitePast()) return;
  timespec ts = absl::ToTimespec(t);
  out->set_seconds(ts.tv_sec);
  out->set_nanos(static_cast<int32_t>(ts.tv_nsec));
}

v1::FailureReason ToProto(actor::FailureReason r) {
  switch (r) {
    case actor::FailureReason::kSpawnError:
      return v1::FAILURE_REASON_SPAWN_ERROR;
    case actor::FailureReason::kExitedDuringStart:
      return v1::FAILURE_REASON_EXITED_DURING_START;
    case actor::FailureReason::kHealthCheckTimeout:
      return v1::FAILURE_REASON_HEALTH_CHECK_TIMEOUT;
    case actor::FailureReason::kCrashed:
      return v1::FAILURE_REASON_CRASHED;
    case actor::FailureReason::kWakeFailed:
      return v1::FAILURE_REASON_WAKE_FAILED;
  }
  return v1::FAILURE_REASON_UNSPECIFIED;
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

v1::ModelState ToProto(actor::State state) {
  switch (state) {
    case actor::State::kStopped:
      return v1::MODEL_STATE_STOPPED;
    case actor::State::kStarting:
      return v1::MODEL_STATE_STARTING;
    case actor::State::kReady:
      return v1::MODEL_STATE_READY;
    case actor::State::kStopping:
      return v1::MODEL_STATE_STOPPING;
    case actor::State::kFailed:
      return v1::MODEL_STATE_FAILED;
    case actor::State::kShutdown:
      return v1::MODEL_STATE_SHUTDOWN;
    case actor::State::kSleeping:
      return v1::MODEL_STATE_SLEEPING;
  }
  return v1::MODEL_STATE_UNSPECIFIED;
}

void ToProto(const config::Value& value, google::protobuf::Value* out) {
  switch (value.kind()) {
    case config::Value::Kind::kNull:
      out->set_null_value(google::protobuf::NULL_VALUE);
      break;
    case config::Value::Kind::kBool:
      out->set_bool_value(value.AsBool());
      break;
    case config::Value::Kind::kInt:
      out->set_number_value(static_cast<double>(value.AsInt()));
      break;
    case config::Value::Kind::kDouble:
      if (std::isfinite(value.AsDouble())) {
        out->set_number_value(value.AsDouble());
      } else {
        out->set_null_value(google::protobuf::NULL_VALUE);
      }
      break;
    case config::Value::Kind::kString:
      out->set_string_value(value.AsString());
      break;
    case config::Value::Kind::kArray:
      for (const config::Value& e : value.AsArray()) {
        ToProto(e, out->mutable_list_value()->add_values());
      }
      out->mutable_list_value();
      break;
    case config::Value::Kind::kObject:
      ToStruct(value, out->mutable_struct_value());
      break;
  }
}

void ToProto(const watch::GpuReport& gpu, v1::Gpu* out) {
  out->set_index(static_cast<uint32_t>(gpu.index));
  out->set_name(gpu.name);
  out->set_uuid(gpu.uuid);
  out->set_total_bytes(gpu.total_bytes);
  out->set_used_bytes(gpu.used_bytes);
  out->set_free_bytes(
      gpu.total_bytes > gpu.used_bytes ? gpu.total_bytes - gpu.used_bytes : 0);
  out->set_trusted(gpu.trusted);
}

void ToProto(const actor::Failure& f, v1::Failure* out) {
  out->set_reason(ToProto(f.reason));
  if (f.exit && f.exit->signal > 0) {
    out->set_signal(f.exit->signal);
  } else if (f.exit) {
    out->set_exit_code(f.exit->exit_code);
  }
  out->set_message(f.message);
  for (const std::string& l : f.last_lines) out->add_last_lines(l);
  ToProto(f.at, out->mutable_at());
}

void ToProto(const scheduler::StartPlan& plan, v1::PlanStartResponse* out) {
  ToProto(plan.model, out->mutable_model());
  out->set_needs_start(plan.needs_start);
  out->set_blocked(plan.blocked);
  v1::PlanStartResponse::Cost cost = v1::PlanStartResponse::COST_NONE;
  for (const scheduler::StartPlan::Eviction& e : plan.evictions) {
    v1::PlannedEviction* p = out->add_evictions();
    p->set_model(e.model);
    p->set_state(ToProto(e.state));
    p->set_lease_holders(e.holders);
    cost =
        std::max(cost, e.holders > 0 ? v1::PlanStartResponse::COST_EVICT_BUSY
                                     : v1::PlanStartResponse::COST_EVICT_IDLE);
  }
  if (!plan.refusal.ok()) {
    cost = v1::PlanStartResponse::COST_REFUSED;
    out->set_refusal(std::string(plan.refusal.message()));
  }
  out->set_cost(cost);
}

void ToProto(const scheduler::ModelView& view, v1::Model* out) {
  const config::ModelConfig& c = *view.config;
  out->set_id(c.id);
  out->set_name(c.name);
  out->set_description(c.description);
  for (const std::string& a : c.aliases) out->add_aliases(a);
  out->set_group(c.group == config::kDefaultGroup ? "" : c.group);
  out->set_unlisted(c.unlisted);
  out->set_state(ToProto(view.status.state));
  out->set_upstream_url(c.proxy);
  for (const std::string& w : c.argv) out->add_argv(w);
  out->set_ignore_websockets(c.ignore_websockets);
  if (!c.tls.ca_file.empty() || c.tls.insecure_skip_verify) {
    out->mutable_tls()->set_ca_file(c.tls.ca_file);
    out->mutable_tls()->set_ca_pem(c.tls.ca_pem);
    out->mutable_tls()->set_insecure_skip_verify(c.tls.insecure_skip_verify);
  }
  if (!c.capabilities.empty()) {
    v1::Capabilities* caps = out->mutable_capabilities();
    for (const std::string& i : c.capabilities.in)
      caps->add_input_modalities(i);
    for (const std::string& o : c.capabilities.out) {
      caps->add_output_modalities(o);
    }
    caps->set_tools(c.capabilities.tools);
    caps->set_reranker(c.capabilities.reranker);
    caps->set_context(static_cast<uint64_t>(c.capabilities.context));
  }
  out->set_pid(view.status.pid);
  ToProto(view.status.state_since, out->mutable_state_since());
  out->set_active_leases(static_cast<uint32_t>(view.leases.size()));
  // The oldest holders only: every event (and the Watch history keeps
  // 1024) carries the list, which thousands of holders would make large.
  size_t shown = 0;
  for (const scheduler::LeaseView& l : view.leases) {
    if (++shown > kMaxLeaseHolders) break;
    v1::LeaseHolder* h = out->add_lease_holders();
    h->set_client_id(l.client_name);
    h->set_lease_id(l.lease);
    ToProto(l.granted_at, h->mutable_granted_at());
  }
  out->set_queued_requests(static_cast<uint32_t>(std::max(view.queued, 0)));
  // Unset while the model has never been READY (as the proto says).
  if (view.status.last_used > absl::UnixEpoch()) {
    ToProto(view.status.last_used, out->mutable_last_used());
  }
  SetDuration(c.ttl, out->mutable_ttl());
  out->set_revision(view.revision);
  if (view.status.failure) {
    ToProto(*view.status.failure, out->mutable_failure());
  }
  if (c.metadata.kind() == config::Value::Kind::kObject) {
    ToStruct(c.metadata, out->mutable_metadata());
  }
  out->set_concurrency_limit(static_cast<uint32_t>(c.concurrency_limit));
  v1::UpstreamTimeouts* t = out->mutable_upstream_timeouts();
  SetDuration(c.timeouts.connect, t->mutable_connect());
  SetDuration(c.timeouts.response_header, t->mutable_response_header());
  SetDuration(c.timeouts.idle_connection, t->mutable_idle_connection());
  SetDuration(c.timeouts.tls_handshake, t->mutable_tls_handshake());
  SetDuration(c.timeouts.keepalive, t->mutable_keepalive());
  SetDuration(c.timeouts.expect_continue, t->mutable_expect_continue());
  out->set_use_model_name(c.use_model_name);
  out->set_send_loading_state(c.send_loading_state);
  out->mutable_replicas()->set_max(static_cast<uint32_t>(c.replicas.max));
  SetDuration(c.replicas.spillover_after,
              out->mutable_replicas()->mutable_spillover_after());
  ToProto(c.filters, out->mutable_filters());
  if (c.resources.set) {
    v1::ModelResources* r = out->mutable_resources();
    r->set_vram_mib(static_cast<uint64_t>(c.resources.vram_mib));
    for (int g : c.resources.gpus) r->add_gpus(static_cast<uint32_t>(g));
    r->set_gpu_count(static_cast<uint32_t>(c.resources.gpu_count));
  }
  if (view.memory_known) {
    v1::ModelGpuMemory* m = out->mutable_gpu_memory();
    m->set_footprint_bytes(view.footprint);
    m->set_measured_bytes(view.memory.measured);
    m->set_used_bytes(view.memory.used);
    for (int g : view.memory.gpus) m->add_gpus(static_cast<uint32_t>(g));
  }
}

void ToProto(const config::Filters& f, v1::ModelFilters* out) {
  for (const std::string& p : f.strip_params) out->add_strip_params(p);
  if (f.set_params.kind() == config::Value::Kind::kObject) {
    ToStruct(f.set_params, out->mutable_set_params());
    out->set_set_params_json(f.set_params.ToJson());
  }
  for (const auto& [name, params] : f.set_params_by_id) {
    ToStruct(params, &(*out->mutable_set_params_by_id())[name]);
    (*out->mutable_set_params_by_id_json())[name] = params.ToJson();
  }
}

void ToProto(const config::SelectorConfig& s, v1::Selector* out) {
  out->set_id(s.id);
  out->set_strategy(s.strategy);
  for (const std::string& t : s.targets) out->add_targets(t);
  out->set_spillover(static_cast<uint32_t>(s.spillover));
  out->set_name(s.name);
  out->set_description(s.description);
  out->set_unlisted(s.unlisted);
  if (s.metadata.kind() == config::Value::Kind::kObject) {
    ToStruct(s.metadata, out->mutable_metadata());
  }
}

void ToProto(const config::ProfileConfig& p, v1::Profile* out) {
  out->set_name(p.name);
  out->set_description(p.description);
  for (const auto& [from, to] : p.pins) (*out->mutable_pins())[from] = to;
}

void ToProto(const config::Config& c, v1::DataPlaneSettings* out) {
  for (const std::string& key : c.api_keys) {
    out->add_api_key_sha256(Sha256Hex(key));
  }
  out->set_include_aliases_in_list(c.include_aliases_in_list);
  out->set_metrics_max_in_memory(
      static_cast<uint32_t>(c.metrics_max_in_memory));
  out->set_store_path(c.store_path);
  out->set_store_max_rows(static_cast<uint64_t>(c.store_max_rows));
  out->set_startup_profile(c.startup_profile);
  for (const std::string& p : c.upstream_ignore_paths) {
    out->add_upstream_ignore_paths(p);
  }
  for (const config::PeerConfig& p : c.peers) ToProto(p, out->add_peers());
  for (const config::SelectorConfig& s : c.selectors) {
    ToProto(s, out->add_selectors());
  }
  for (const config::ProfileConfig& p : c.profiles) {
    ToProto(p, out->add_profiles());
  }
}

void ToProto(const config::PeerConfig& p, v1::Peer* out) {
  out->set_id(p.id);
  out->set_proxy(p.proxy);
  for (const std::string& m : p.models) out->add_models(m);
  out->set_api_key(p.api_key);
  ToProto(p.filters, out->mutable_filters());
  v1::UpstreamTimeouts* t = out->mutable_upstream_timeouts();
  SetDuration(p.timeouts.connect, t->mutable_connect());
  SetDuration(p.timeouts.response_header, t->mutable_response_header());
  SetDuration(p.timeouts.idle_connection, t->mutable_idle_connection());
  SetDuration(p.timeouts.tls_handshake, t->mutable_tls_handshake());
  SetDuration(p.timeouts.keepalive, t->mutable_keepalive());
  SetDuration(p.timeouts.expect_continue, t->mutable_expect_continue());
  out->mutable_tls()->set_ca_file(p.tls.ca_file);
  out->mutable_tls()->set_ca_pem(p.tls.ca_pem);
  out->mutable_tls()->set_insecure_skip_verify(p.tls.insecure_skip_verify);
}

}  // namespace modelplane::rpc
