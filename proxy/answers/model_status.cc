// The UI's model status: ModelStatusJson (models.h).
#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "common/json_string.h"
#include "proxy/answers/models.h"

namespace modelplane::proxy::answers {
namespace {

// llama-swap's state names, and "failed" and "sleeping".
const char* StateName(v1::ModelState state) {
  switch (state) {
    case v1::MODEL_STATE_STARTING:
      return "starting";
    case v1::MODEL_STATE_READY:
      return "ready";
    case v1::MODEL_STATE_STOPPING:
      return "stopping";
    case v1::MODEL_STATE_FAILED:
      return "failed";
    case v1::MODEL_STATE_SHUTDOWN:
      return "shutdown";
    case v1::MODEL_STATE_SLEEPING:
      return "sleeping";
    default:
      return "stopped";
  }
}

const char* ReasonName(v1::FailureReason reason) {
  switch (reason) {
    case v1::FAILURE_REASON_SPAWN_ERROR:
      return "spawn_error";
    case v1::FAILURE_REASON_EXITED_DURING_START:
      return "exited_during_start";
    case v1::FAILURE_REASON_HEALTH_CHECK_TIMEOUT:
      return "health_check_timeout";
    case v1::FAILURE_REASON_CRASHED:
      return "crashed";
    case v1::FAILURE_REASON_ABORTED:
      return "aborted";
    case v1::FAILURE_REASON_WAKE_FAILED:
      return "wake_failed";
    default:
      return "unspecified";
  }
}

// Milliseconds since the epoch, or null for an unset time.
std::string Millis(bool set, const google::protobuf::Timestamp& t) {
  if (!set) return "null";
  return absl::StrCat(
      google::protobuf::util::TimeUtil::TimestampToMilliseconds(t));
}

std::string NodeJson(const router::RouteNode& n) {
  std::string out = absl::StrCat(R"({"node":)", JsonString(n.node),
                                 R"(,"state":")", StateName(n.state), "\"");
  if (n.model == nullptr) return out + "}";
  const v1::Model& m = *n.model;
  absl::StrAppend(&out, R"(,"group":)", JsonString(m.group()), R"(,"pid":)",
                  m.pid(), R"(,"since_ms":)",
                  Millis(m.has_state_since(), m.state_since()), R"(,"ttl_s":)",
                  m.ttl().seconds(), R"(,"last_used_ms":)",
                  Millis(m.has_last_used(), m.last_used()), R"(,"leases":)",
                  m.active_leases(), R"(,"queued":)", m.queued_requests(),
                  R"(,"upstream":)", JsonString(m.upstream_url()));
  if (m.has_failure()) {
    const v1::Failure& f = m.failure();
    std::string lines;
    for (const std::string& l : f.last_lines()) {
      absl::StrAppend(&lines, lines.empty() ? "" : ",", JsonString(l));
    }
    absl::StrAppend(&out, R"(,"failure":{"reason":")", ReasonName(f.reason()),
                    R"(","message":)", JsonString(f.message()), R"(,"at_ms":)",
                    Millis(f.has_at(), f.at()), R"(,"last_lines":[)", lines,
                    "]}");
  }
  return out + "}";
}

}  // namespace

std::string ModelStatusJson(const router::Snapshot& snapshot) {
  std::string out = "[";
  bool first = true;
  for (const router::Route& r : snapshot.routes().routes()) {
    std::string aliases, nodes;
    for (const std::string& a : r.aliases) {
      absl::StrAppend(&aliases, aliases.empty() ? "" : ",", JsonString(a));
    }
    for (const router::RouteNode& n : r.nodes) {
      absl::StrAppend(&nodes, nodes.empty() ? "" : ",", NodeJson(n));
    }
    absl::StrAppend(&out, first ? "" : ",", R"({"id":)", JsonString(r.id),
                    R"(,"name":)", JsonString(r.name), R"(,"description":)",
                    JsonString(r.description), R"(,"state":")",
                    StateName(r.state), R"(","unlisted":)",
                    r.unlisted ? "true" : "false", R"(,"aliases":[)", aliases,
                    R"(],"concurrency_limit":)", r.concurrency_limit,
                    R"(,"nodes":[)", nodes, "]}");
    first = false;
  }
  for (const router::PeerRoute& p : snapshot.peers().routes()) {
    absl::StrAppend(&out, first ? "" : ",", R"({"id":)", JsonString(p.name()),
                    R"(,"peerID":)", JsonString(p.peer), "}");
    first = false;
  }
  return out + "]";
}

}  // namespace modelplane::proxy::answers
