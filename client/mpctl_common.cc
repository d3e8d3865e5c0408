#include "client/mpctl_common.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/json_string.h"

namespace modelplane::mpctl {

int ExitCode(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kInvalidArgument:
      return 2;
    case absl::StatusCode::kNotFound:
      return 3;
    case absl::StatusCode::kUnavailable:
      return 4;
    case absl::StatusCode::kDeadlineExceeded:
      return 5;
    case absl::StatusCode::kUnauthenticated:
      return 6;
    default:
      return 1;
  }
}

// The manager's address, for messages.
std::string manager_address;

// Why a connection failed, in a few words, from gRPC's long message.
std::string ConnectError(absl::string_view message) {
  if (absl::StrContains(message, "Connection refused")) {
    return "connection refused";
  }
  if (absl::StrContains(message, "DNS") ||
      absl::StrContains(message, "Name or service not known") ||
      absl::StrContains(message, "resolve")) {
    return "the name does not resolve";
  }
  if (absl::StrContains(message, "No such file")) return "no such socket";
  if (absl::StrContains(message, "Deadline") ||
      absl::StrContains(message, "Timeout")) {
    return "no answer";
  }
  if (absl::StrContains(message, "handshake") ||
      absl::StrContains(message, "SSL") || absl::StrContains(message, "TLS")) {
    return "the TLS handshake failed";
  }
  return std::string(message);
}

// Whether an UNAVAILABLE is the manager's own answer (it is shutting down
// or draining: its refusals say "the manager is ...", a model's "shutting
// down") rather than no answer at all.
bool AnsweredByTheManager(absl::string_view message) {
  return absl::StartsWith(message, "the manager is") ||
         absl::StrContains(message, "shutting down");
}

int Fail(const absl::Status& s) {
  if (absl::IsUnavailable(s) && !AnsweredByTheManager(s.message())) {
    // One plain sentence instead of gRPC's chain of causes.
    fprintf(stderr,
            "mpctl: cannot reach modelmanager at %s (%s); is it running, and "
            "is --manager (or $MODELPLANE_MANAGER) its address?\n",
            manager_address.c_str(), ConnectError(s.message()).c_str());
    return ExitCode(s);
  }
  fprintf(stderr, "mpctl: %s: %s\n", absl::StatusCodeToString(s.code()).c_str(),
          std::string(s.message()).c_str());
  return ExitCode(s);
}

std::string json_node;

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  if (json_node.empty() || out.size() < 2) return out;
  return absl::StrCat("{\"node\":", JsonString(json_node),
                      out.size() > 2 ? "," : "", out.substr(1));
}

const char* StateName(v1::ModelState s) {
  switch (s) {
    case v1::MODEL_STATE_STOPPED:
      return "STOPPED";
    case v1::MODEL_STATE_STARTING:
      return "STARTING";
    case v1::MODEL_STATE_READY:
      return "READY";
    case v1::MODEL_STATE_STOPPING:
      return "STOPPING";
    case v1::MODEL_STATE_FAILED:
      return "FAILED";
    case v1::MODEL_STATE_SHUTDOWN:
      return "SHUTDOWN";
    case v1::MODEL_STATE_SLEEPING:
      return "SLEEPING";
    default:
      return "?";
  }
}

std::string Short(absl::Duration d) {
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrCat(s / 60, "m", s % 60, "s");
  return absl::StrCat(s / 3600, "h", (s % 3600) / 60, "m");
}

std::string FailureText(const v1::Model& m) {
  if (!m.has_failure()) return "-";
  const v1::Failure& f = m.failure();
  std::string reason = v1::FailureReason_Name(f.reason());
  if (reason.rfind("FAILURE_REASON_", 0) == 0) reason = reason.substr(15);
  std::string exit = f.has_signal()      ? absl::StrCat(" signal ", f.signal())
                     : f.has_exit_code() ? absl::StrCat(" exit ", f.exit_code())
                                         : "";
  return absl::StrCat(reason, exit);
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// "1.3 s", "2 min 5 s".
std::string Took(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  if (d < absl::Minutes(1)) {
    return absl::StrFormat("%.1f s", absl::ToDoubleSeconds(d));
  }
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 3600) return absl::StrCat(s / 60, " min ", s % 60, " s");
  return absl::StrCat(s / 3600, " h ", (s % 3600) / 60, " min");
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(rows.empty() ? 0 : rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size())
        line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    printf("%s\n", line.c_str());
  }
}

std::vector<std::string> LsRow(const v1::Model& m, absl::Time now) {
  std::string idle = "-";
  if (m.state() == v1::MODEL_STATE_READY && m.active_leases() == 0 &&
      m.has_last_used()) {
    idle = Short(now - absl::FromUnixSeconds(m.last_used().seconds()));
  }
  std::string vram = "-", gpus = "-";
  if (m.has_gpu_memory()) {
    const v1::ModelGpuMemory& g = m.gpu_memory();
    constexpr uint64_t kMiB = 1024 * 1024;
    if (g.footprint_bytes() > 0) {
      bool declared = m.has_resources() && m.resources().vram_mib() > 0;
      vram = absl::StrCat(g.footprint_bytes() / kMiB, " MiB ",
                          declared ? "declared" : "measured");
    }
    if (g.gpus_size() > 0) gpus = absl::StrJoin(g.gpus(), ",");
  }
  return {m.id(),
          StateName(m.state()),
          m.upstream_url(),
          m.pid() ? std::to_string(m.pid()) : "-",
          std::to_string(m.active_leases()),
          std::to_string(m.queued_requests()),
          idle,
          vram,
          gpus,
          FailureText(m)};
}

void PrintGpus(const v1::ListModelsResponse& r, const std::string& prefix) {
  constexpr uint64_t kMiB = 1024 * 1024;
  for (const v1::Gpu& g : r.gpus()) {
    printf("%sGPU %u (%s): %llu MiB free of %llu MiB%s\n", prefix.c_str(),
           g.index(), g.name().c_str(),
           static_cast<unsigned long long>(g.free_bytes() / kMiB),   // NOLINT
           static_cast<unsigned long long>(g.total_bytes() / kMiB),  // NOLINT
           g.trusted() ? ""
                       : " (untrusted: a stopped model's memory has not come "
                         "back)");
  }
}

}  // namespace modelplane::mpctl
