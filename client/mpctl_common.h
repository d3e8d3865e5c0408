// What mpctl's commands share: exit codes, error messages, JSON and the
// table and watch printers (docs/mpctl.md). mpctl_main.cc runs one
// manager's commands, mpctl_cluster.cc several managers'.
#ifndef MODELPLANE_CLIENT_MPCTL_COMMON_H_
#define MODELPLANE_CLIENT_MPCTL_COMMON_H_

#include <google/protobuf/message.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "modelplane/v1/model_manager.pb.h"

namespace modelplane::mpctl {

// 0 ok, 1 failed, 2 usage, 3 unknown model, 4 unreachable or shutting
// down, 5 timed out, 6 unauthenticated.
int ExitCode(const absl::Status& s);
// The manager's address, for messages.
extern std::string manager_address;
// Why a connection failed, in a few words, from gRPC's long message.
std::string ConnectError(absl::string_view message);
// Whether an UNAVAILABLE is the manager's own answer (shutting down,
// draining) rather than no answer at all.
bool AnsweredByTheManager(absl::string_view message);
// Says what went wrong on stderr; returns the exit code.
int Fail(const absl::Status& s);
// The message as one line of JSON (proto field names); while `json_node`
// is set (a command run on each node of several), with "node" first.
std::string Json(const google::protobuf::Message& m);
extern std::string json_node;
const char* StateName(v1::ModelState s);
// "5s", "3m10s", "2h5m".
std::string Short(absl::Duration d);
// "HEALTH_CHECK_TIMEOUT exit 1", or "-".
std::string FailureText(const v1::Model& m);
absl::Time FromProto(const google::protobuf::Timestamp& t);
// "1.3 s", "2 min 5 s".
std::string Took(absl::Duration d);
// Rows as aligned columns (two spaces apart), the first being the header.
void PrintTable(const std::vector<std::vector<std::string>>& rows);
// One row of `mpctl ls` for `m` (ID, STATE, UPSTREAM, PID, LEASES, QUEUED,
// IDLE, VRAM, GPU, FAILURE). VRAM: the footprint the scheduler charges it
// per GPU, declared or measured ("-": none, or no NVML).
std::vector<std::string> LsRow(const v1::Model& m, absl::Time now);
// The lines under `mpctl ls` for the manager's GPUs ("GPU 0 (name): N MiB
// free of M MiB"), none without NVML.
void PrintGpus(const v1::ListModelsResponse& r, const std::string& prefix);
inline const std::vector<std::string>& LsHeader() {
  static const auto* h = new std::vector<std::string>{
      "ID",     "STATE", "UPSTREAM", "PID", "LEASES",
      "QUEUED", "IDLE",  "VRAM",     "GPU", "FAILURE"};
  return *h;
}

// What `mpctl watch` prints for people: one line per change a person
// cares about (a state with how long the last one took, a failure with
// its reason, leases and queue), wall-clock time first; a line the same as
// the model's last one is not printed again. Revisions with --revisions.
class WatchPrinter {
 public:
  // `node`: the node the events come from, printed on each line (several
  // managers); "" for none.
  explicit WatchPrinter(bool revisions, std::string node = "")
      : revisions_(revisions), node_(std::move(node)) {}

  void Print(const v1::WatchEvent& e) {
    std::string rev =
        revisions_ ? absl::StrCat(e.revision(), " ") : std::string();
    if (e.type() == v1::WatchEvent::TYPE_BOOKMARK) {
      if (revisions_) Line(absl::Now(), absl::StrCat(rev, "BOOKMARK"));
      return;
    }
    const v1::Model& m = e.model();
    if (e.type() == v1::WatchEvent::TYPE_DELETED) {
      seen_.erase(m.id());
      Line(absl::Now(), absl::StrCat(rev, m.id(), " removed from the config"));
      return;
    }
    absl::Time since = FromProto(m.state_since());
    std::string text = absl::StrCat(m.id(), " ", StateName(m.state()));
    auto it = seen_.find(m.id());
    bool changed = it != seen_.end() && it->second.state != m.state();
    // How long a start or a stop took (the state left was one of those).
    if (changed && (it->second.state == v1::MODEL_STATE_STARTING ||
                    it->second.state == v1::MODEL_STATE_STOPPING)) {
      absl::StrAppend(&text, " in ", Took(since - it->second.since));
    }
    if (e.type() == v1::WatchEvent::TYPE_ADDED && it != seen_.end()) {
      absl::StrAppend(&text, " (added)");
    }
    if (m.pid() != 0) absl::StrAppend(&text, " pid ", m.pid());
    if (m.active_leases() > 0) {
      absl::StrAppend(&text, ", leases ", m.active_leases());
    }
    if (m.queued_requests() > 0) {
      absl::StrAppend(&text, ", queued ", m.queued_requests());
    }
    if (m.state() == v1::MODEL_STATE_FAILED && m.has_failure()) {
      absl::StrAppend(&text, ": ", FailureText(m), ": ", m.failure().message());
    }
    Seen& s = seen_[m.id()];
    bool same = it != seen_.end() && s.text == text;
    s.state = m.state();
    s.since = since;
    s.text = text;
    if (same) return;  // Nothing a person would see as new.
    Line(changed ? since : absl::Now(), rev + text);
  }

 private:
  struct Seen {
    v1::ModelState state;
    absl::Time since;
    std::string text;
  };
  void Line(absl::Time at, const std::string& text) const {
    printf("%s %s%s%s\n",
           absl::FormatTime("%H:%M:%E3S", at, absl::LocalTimeZone()).c_str(),
           node_.c_str(), node_.empty() ? "" : " ", text.c_str());
  }
  bool revisions_;
  std::string node_;
  std::map<std::string, Seen> seen_;
};

}  // namespace modelplane::mpctl

#endif  // MODELPLANE_CLIENT_MPCTL_COMMON_H_
