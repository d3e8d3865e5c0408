// mpctl: the operator's command line for modelmanager (docs/mpctl.md).
//
//   mpctl [--manager ADDR] [--json] [--token-file F] COMMAND [ARGS]
//     ls | start M | stop M [--force] | wait M [--timeout S] | watch [M...]
//     logs M [-f] [--history BYTES] | stop-all [--force] | reload | plan M
//     drain | resume
//
// Exit codes: 0 ok, 1 the operation failed (a start failed, a model is
// FAILED), 2 usage, 3 unknown model, 4 manager unreachable or shutting
// down, 5 timed out, 6 unauthenticated.
#include <google/protobuf/util/json_util.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/credentials.h"
#include "client/manager_client.h"
#include "common/flags.h"

namespace modelplane::mpctl {
namespace {

using client::ManagerClient;

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

std::string Json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
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

int Ls(ManagerClient& c, bool json) {
  auto r = c.ListModels(absl::Seconds(10));
  if (!r.ok()) return Fail(r.status());
  if (json) {
    // Peers' keys are for data planes, not for a terminal or a log.
    for (v1::Peer& p : *r->mutable_peers()) {
      if (!p.api_key().empty()) p.set_api_key("<redacted>");
    }
    printf("%s\n", Json(*r).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {{"ID", "STATE", "UPSTREAM",
                                                 "PID", "LEASES", "QUEUED",
                                                 "IDLE", "FAILURE"}};
  absl::Time now = absl::Now();
  for (const v1::Model& m : r->models()) {
    std::string idle = "-";
    if (m.state() == v1::MODEL_STATE_READY && m.active_leases() == 0 &&
        m.has_last_used()) {
      idle = Short(now - absl::FromUnixSeconds(m.last_used().seconds()));
    }
    rows.push_back({m.id(), StateName(m.state()), m.upstream_url(),
                    m.pid() ? std::to_string(m.pid()) : "-",
                    std::to_string(m.active_leases()),
                    std::to_string(m.queued_requests()), idle, FailureText(m)});
  }
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i)
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
  if (r->draining()) printf("(draining: no model starts on this manager)\n");
  return 0;
}

// The model's latest output line (for progress), or "".
std::string LastLine(ManagerClient& c, const std::string& model) {
  v1::StreamLogsRequest req;
  req.set_model(model);
  req.set_history_bytes(1024);
  std::string text;
  (void)c.StreamLogs(req, absl::Seconds(2), [&](const v1::LogChunk& ch) {
    text += ch.data();
    return true;
  });
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
    text.pop_back();
  size_t nl = text.rfind('\n');
  return nl == std::string::npos ? text : text.substr(nl + 1);
}

int Start(ManagerClient& c, const std::string& model, absl::Duration timeout,
          bool json) {
  bool tty = isatty(STDERR_FILENO) && !json;
  absl::Time begin = absl::Now();
  absl::StatusOr<v1::Model> result = absl::UnknownError("not done");
  absl::Notification done;
  std::thread call([&] {
    result = c.Start(model, timeout);
    done.Notify();
  });
  while (tty && !done.WaitForNotificationWithTimeout(absl::Milliseconds(250))) {
    auto m = c.GetModel(model, absl::Seconds(2));
    std::string line = LastLine(c, model).substr(0, 100);
    fprintf(stderr, "\r\033[K%s %-8s %5.1fs  %s", model.c_str(),
            m.ok() ? StateName(m->state()) : "?",
            absl::ToDoubleSeconds(absl::Now() - begin), line.c_str());
    fflush(stderr);
  }
  call.join();
  if (tty) fprintf(stderr, "\r\033[K");
  if (!result.ok()) {
    int code = Fail(result.status());
    auto m = c.GetModel(model, absl::Seconds(5));
    if (m.ok() && m->has_failure()) {
      fprintf(stderr, "last output of %s:\n", model.c_str());
      for (const std::string& l : m->failure().last_lines()) {
        fprintf(stderr, "  %s\n", l.c_str());
      }
    }
    return code;
  }
  if (json) {
    printf("%s\n", Json(*result).c_str());
  } else {
    printf("%s READY pid %d at %s (%.1fs)\n", model.c_str(), result->pid(),
           result->upstream_url().c_str(),
           absl::ToDoubleSeconds(absl::Now() - begin));
  }
  return 0;
}

// `mpctl wait` that timed out: what the model is doing instead.
int WaitTimedOut(ManagerClient& c, const std::string& model,
                 absl::Duration waited) {
  auto m = c.GetModel(model, absl::Seconds(5));
  if (!m.ok()) return Fail(absl::DeadlineExceededError("timed out"));
  std::string state = StateName(m->state());
  fprintf(stderr, "mpctl: %s is %s, not READY, after %s%s\n", model.c_str(),
          state.c_str(), absl::FormatDuration(waited).c_str(),
          m->state() == v1::MODEL_STATE_STOPPED ||
                  m->state() == v1::MODEL_STATE_FAILED
              ? " (wait does not start it: mpctl start does)"
              : "");
  return 5;
}

// `mpctl plan M`: what a start would evict, without starting anything.
int Plan(ManagerClient& c, const std::string& model, bool json) {
  absl::StatusOr<v1::PlanStartResponse> p =
      c.PlanStart(model, absl::Seconds(10));
  if (!p.ok()) return Fail(p.status());
  if (json) {
    printf("%s\n", Json(*p).c_str());
    return 0;
  }
  if (p->cost() == v1::PlanStartResponse::COST_REFUSED) {
    printf("%s (%s): a start would be refused here: %s\n",
           p->model().id().c_str(), StateName(p->model().state()),
           p->refusal().c_str());
    return 0;
  }
  const char* cost = p->cost() == v1::PlanStartResponse::COST_EVICT_BUSY
                         ? "evicts a busy model"
                     : p->cost() == v1::PlanStartResponse::COST_EVICT_IDLE
                         ? "evicts idle models only"
                         : "evicts nothing";
  if (!p->needs_start()) {
    printf("%s is %s: no start needed\n", p->model().id().c_str(),
           StateName(p->model().state()));
    return 0;
  }
  printf("%s (%s): a start %s%s\n", p->model().id().c_str(),
         StateName(p->model().state()), cost,
         p->blocked() ? ", after a wait" : "");
  for (const v1::PlannedEviction& e : p->evictions()) {
    printf("  evict %s %s, %d lease holder(s)\n", e.model().c_str(),
           StateName(e.state()), e.lease_holders());
  }
  return 0;
}

int PrintModel(const absl::StatusOr<v1::Model>& m, bool json) {
  if (!m.ok()) return Fail(m.status());
  if (json) {
    printf("%s\n", Json(*m).c_str());
  } else {
    printf("%s %s\n", m->id().c_str(), StateName(m->state()));
  }
  return m->state() == v1::MODEL_STATE_FAILED ? 1 : 0;
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

// What `mpctl watch` prints for people: one line per change a person
// cares about (a state with how long the last one took, a failure with
// its reason, leases and queue), wall-clock time first; a line the same as
// the model's last one is not printed again. Revisions with --revisions.
class WatchPrinter {
 public:
  explicit WatchPrinter(bool revisions) : revisions_(revisions) {}

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
  static void Line(absl::Time at, const std::string& text) {
    printf("%s %s\n",
           absl::FormatTime("%H:%M:%E3S", at, absl::LocalTimeZone()).c_str(),
           text.c_str());
  }
  bool revisions_;
  std::map<std::string, Seen> seen_;
};

int Watch(ManagerClient& c, const std::vector<std::string>& models, bool json,
          bool revisions) {
  v1::WatchRequest req;
  for (const std::string& m : models) req.add_models(m);
  WatchPrinter printer(revisions);
  absl::Status s =
      c.Watch(req, absl::InfiniteDuration(), [&](const v1::WatchEvent& e) {
        if (json) {
          printf("%s\n", Json(e).c_str());
        } else {
          printer.Print(e);
        }
        fflush(stdout);
        return true;
      });
  return s.ok() ? 0 : Fail(s);
}

int Logs(ManagerClient& c, const std::string& model, bool follow, int history) {
  v1::StreamLogsRequest req;
  req.set_model(model);
  req.set_follow(follow);
  req.set_history_bytes(static_cast<uint32_t>(history));
  absl::Status s =
      c.StreamLogs(req, absl::InfiniteDuration(), [](const v1::LogChunk& ch) {
        if (ch.dropped_bytes() > 0) {
          printf("[%lu bytes dropped]\n",
                 static_cast<unsigned long>(ch.dropped_bytes()));
        }
        fwrite(ch.data().data(), 1, ch.data().size(), stdout);
        fflush(stdout);
        return true;
      });
  return s.ok() ? 0 : Fail(s);
}

int Main(int argc, char** argv) {
  std::vector<const char*> args(argv, argv + argc);
  for (const char*& a : args) {
    if (std::string(a) == "-f") a = "--follow";  // logs -f
  }
  FlagParser flags(
      "mpctl [flags] (ls | start M | stop M | wait M | watch [M...] | "
      "logs M | stop-all | reload | plan M | drain | resume)");
  const char* env = std::getenv("MODELPLANE_MANAGER");
  std::string manager = env != nullptr ? env : "127.0.0.1:50051";
  std::string token_file;
  bool json = false, force = false, follow = false, revisions = false;
  int timeout_s = 0;
  int history = 64 << 10;
  flags.String(
      "manager", &manager,
      "manager address (default $MODELPLANE_MANAGER or 127.0.0.1:50051)");
  flags.String("token-file", &token_file, "file holding the bearer token");
  client::TlsFiles tls;
  flags.String("tls-ca", &tls.ca,
               "TLS: PEM roots that sign the manager's certificate");
  flags.String("tls-cert", &tls.cert, "TLS: client certificate (mTLS)");
  flags.String("tls-key", &tls.key, "TLS: the client certificate's key");
  flags.Bool("json", &json, "print JSON (one object per line)");
  flags.Bool("revisions", &revisions, "watch: print each event's revision");
  flags.Bool("force", &force, "stop: do not wait for lease holders");
  flags.Bool("follow", &follow, "logs: keep printing new output (-f)");
  flags.Int("timeout", &timeout_s, "seconds to wait (start, wait)", 1);
  flags.Int("history", &history, "logs: bytes of history to show", 0);
  auto rest = flags.Parse(static_cast<int>(args.size()), args.data());
  if (!rest.ok() || rest->empty()) {
    bool help = !rest.ok() && absl::IsNotFound(rest.status());
    if (!rest.ok() && !help)
      fprintf(stderr, "mpctl: %s\n",
              std::string(rest.status().message()).c_str());
    fputs(flags.Usage().c_str(), help ? stdout : stderr);
    return help ? 0 : 2;
  }
  client::ClientOptions options;
  options.target = manager;
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = client::ReadTokenFile(token_file);
    if (!token.ok()) {
      fprintf(stderr, "mpctl: cannot read a token from %s\n",
              std::string(token.status().message()).c_str());
      return 2;
    }
    options.token = *std::move(token);
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      client::MakeCredentials(tls);
  if (!credentials.ok()) {
    fprintf(stderr, "mpctl: %s\n",
            std::string(credentials.status().message()).c_str());
    return 2;
  }
  options.credentials = *credentials;
  manager_address = manager;
  ManagerClient c = ManagerClient::Connect(options);
  const std::string& cmd = (*rest)[0];
  std::vector<std::string> operands(rest->begin() + 1, rest->end());
  auto need_model = [&]() -> bool {
    if (operands.size() == 1) return true;
    fprintf(stderr, "mpctl: %s takes exactly one model\n", cmd.c_str());
    return false;
  };
  absl::Duration timeout =
      timeout_s > 0 ? absl::Seconds(timeout_s) : absl::Minutes(10);
  if (cmd == "ls") return Ls(c, json);
  if (cmd == "start")
    return need_model() ? Start(c, operands[0], timeout, json) : 2;
  if (cmd == "stop") {
    return need_model() ? PrintModel(c.Stop(operands[0], force, timeout), json)
                        : 2;
  }
  if (cmd == "wait") {
    if (!need_model()) return 2;
    absl::StatusOr<v1::Model> m = c.WaitReady(operands[0], timeout);
    if (absl::IsDeadlineExceeded(m.status()) && !json) {
      return WaitTimedOut(c, operands[0], timeout);
    }
    return PrintModel(m, json);
  }
  if (cmd == "watch") return Watch(c, operands, json, revisions);
  if (cmd == "plan") return need_model() ? Plan(c, operands[0], json) : 2;
  if (cmd == "drain" || cmd == "resume") {
    auto r = c.Drain(cmd == "resume", absl::Seconds(10));
    if (!r.ok()) return Fail(r.status());
    if (json) {
      printf("%s\n", Json(*r).c_str());
    } else {
      printf("%s\n", r->draining()
                         ? "draining: no model starts on this manager"
                         : "not draining: models start on this manager");
    }
    return 0;
  }
  if (cmd == "logs")
    return need_model() ? Logs(c, operands[0], follow, history) : 2;
  if (cmd == "stop-all") {
    auto r = c.StopAll(force, timeout);
    if (!r.ok()) return Fail(r.status());
    if (json) {
      printf("%s\n", Json(*r).c_str());
    } else {
      for (const v1::Model& m : r->models()) {
        printf("%s %s\n", m.id().c_str(), StateName(m.state()));
      }
    }
    return 0;
  }
  if (cmd == "reload") {
    auto r = c.ReloadConfig(absl::Seconds(60));
    if (!r.ok()) return Fail(r.status());
    if (json) {
      printf("%s\n", Json(*r).c_str());
    } else {
      auto list = [](const auto& v) {
        return v.empty() ? std::string("-") : absl::StrJoin(v, ",");
      };
      printf("reloaded: added %s, removed %s, restarting %s, updated %s\n",
             list(r->added()).c_str(), list(r->removed()).c_str(),
             list(r->restarted()).c_str(), list(r->updated()).c_str());
      for (const std::string& id : r->restarted()) {
        auto why = r->restart_reasons().find(id);
        printf("restarting %s: %s\n", id.c_str(),
               why == r->restart_reasons().end() ? "its process settings "
                                                   "changed"
                                                 : why->second.c_str());
      }
      for (const std::string& w : r->warnings())
        printf("warning: %s\n", w.c_str());
    }
    return 0;
  }
  fprintf(stderr, "mpctl: unknown command '%s'\n%s", cmd.c_str(),
          flags.Usage().c_str());
  return 2;
}

}  // namespace
}  // namespace modelplane::mpctl

int main(int argc, char** argv) { return modelplane::mpctl::Main(argc, argv); }
