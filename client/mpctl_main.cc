// mpctl: the operator's command line for modelmanager (docs/mpctl.md).
//
//   mpctl [--manager ADDR]... [--node ADDR] [--json] [--token-file F]
//         COMMAND [ARGS]
//     ls | start M | stop M [--force] | wait M [--timeout S] | watch [M...]
//     logs M [-f] [--history BYTES] | stop-all [--force] | reload | plan M
//     drain [NODE] | undrain [NODE] (resume)
//
// Several --manager, or a dns: one, are a cluster (mpctl_cluster.h).
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
#include "client/mpctl_cluster.h"
#include "client/mpctl_common.h"
#include "common/flags.h"
#include "common/version.h"
#include "proxy/cluster/resolver.h"

namespace modelplane::mpctl {
namespace {

using client::ManagerClient;

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
  std::vector<std::vector<std::string>> rows = {LsHeader()};
  absl::Time now = absl::Now();
  for (const v1::Model& m : r->models()) rows.push_back(LsRow(m, now));
  PrintTable(rows);
  PrintGpus(*r, "");
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

// A command line's command and what it asks of it.
struct Command {
  std::string cmd;
  std::vector<std::string> operands;
  bool json = false, force = false, follow = false, revisions = false;
  int history = 64 << 10;
  absl::Duration timeout;
};

// A command on one manager: its exit code, or -1 for an unknown command.
int OnOne(ManagerClient& c, const Command& k) {
  const std::string& cmd = k.cmd;
  const std::vector<std::string>& operands = k.operands;
  bool json = k.json, force = k.force, follow = k.follow,
       revisions = k.revisions;
  int history = k.history;
  absl::Duration timeout = k.timeout;
  auto need_model = [&]() -> bool {
    if (operands.size() == 1) return true;
    fprintf(stderr, "mpctl: %s takes exactly one model\n", cmd.c_str());
    return false;
  };
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
  if (cmd == "drain" || cmd == "resume" || cmd == "undrain") {
    auto r = c.Drain(cmd != "drain", absl::Seconds(10));
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
  return -1;
}

// A command on several managers (mpctl_cluster.h): -1 for an unknown one.
int OnCluster(const std::vector<std::string>& targets,
              const client::ClientOptions& options, const Command& k) {
  const std::string& cmd = k.cmd;
  absl::StatusOr<std::vector<NodeAddress>> found = ResolveNodes(targets);
  if (!found.ok()) {
    fprintf(stderr, "mpctl: %s\n",
            std::string(found.status().message()).c_str());
    return ExitCode(found.status());
  }
  std::vector<ClusterNode> nodes;
  std::vector<std::string> names;
  for (const NodeAddress& n : *found) {
    client::ClientOptions o = options;
    o.target = n.address;
    // A DNS name's certificate, unless --tls-server-name says otherwise.
    if (o.tls_server_name.empty()) o.tls_server_name = n.tls_name;
    nodes.push_back({n.address, std::make_unique<ManagerClient>(
                                    ManagerClient::Connect(o))});
    names.push_back(n.address);
  }
  manager_address = absl::StrJoin(names, ", ");
  if (cmd == "ls") return ClusterLs(nodes, k.json);
  if (cmd == "watch")
    return ClusterWatch(nodes, k.operands, k.json, k.revisions);
  if (cmd == "drain" || cmd == "resume" || cmd == "undrain") {
    fprintf(stderr, "mpctl: %s takes the node (one of %s)\n", cmd.c_str(),
            manager_address.c_str());
    return 2;
  }
  bool per_model = cmd == "start" || cmd == "stop" || cmd == "wait" ||
                   cmd == "logs" || cmd == "plan";
  if (per_model && k.operands.size() != 1) {
    fprintf(stderr, "mpctl: %s takes exactly one model\n", cmd.c_str());
    return 2;
  }
  std::vector<size_t> which;
  if (cmd == "plan") {
    // Each node that has it: where would a start cost least?
    which = NodesWith(nodes, k.operands[0]);
    if (which.empty()) {
      fprintf(stderr, "mpctl: no reachable node has model '%s'\n",
              k.operands[0].c_str());
      return 3;
    }
  } else if (cmd == "stop-all" || cmd == "reload") {
    for (size_t i = 0; i < nodes.size(); ++i) which.push_back(i);
  } else if (per_model) {
    absl::StatusOr<size_t> at = NodeOf(nodes, k.operands[0]);
    if (!at.ok()) {
      fprintf(stderr, "mpctl: %s\n",
              std::string(at.status().message()).c_str());
      return ExitCode(at.status());
    }
    which.push_back(*at);
  } else {
    return -1;
  }
  int code = 0;
  for (size_t i : which) {
    // Said per node when there may be several.
    if (which.size() > 1 || !per_model || cmd == "plan") {
      if (k.json) {
        json_node = nodes[i].name;
      } else {
        printf("%s:\n", nodes[i].name.c_str());
        fflush(stdout);
      }
    }
    manager_address = nodes[i].name;
    int c = OnOne(*nodes[i].client, k);
    if (c != 0 && code == 0) code = c;
  }
  return code;
}

int Main(int argc, char** argv) {
  std::vector<const char*> args(argv, argv + argc);
  for (const char*& a : args) {
    if (std::string(a) == "-f") a = "--follow";  // logs -f
  }
  FlagParser flags(
      "mpctl [flags] (ls | start M | stop M | wait M | watch [M...] | "
      "logs M | stop-all | reload | plan M | drain [NODE] | undrain [NODE])");
  const char* env = std::getenv("MODELPLANE_MANAGER");
  std::vector<std::string> managers = {env != nullptr ? env
                                                      : "127.0.0.1:50051"};
  std::string node;
  std::string token_file;
  bool json = false, force = false, follow = false, revisions = false;
  int timeout_s = 0;
  int history = 64 << 10;
  flags.StringList(
      "manager", &managers,
      "manager address (default $MODELPLANE_MANAGER or 127.0.0.1:50051); "
      "more than once, or dns:///NAME:PORT, for several (a cluster)");
  flags.String("node", &node,
               "the node (manager address) a model command goes to, among "
               "several");
  flags.String("token-file", &token_file, "file holding the bearer token");
  client::TlsFiles tls;
  flags.String("tls-ca", &tls.ca,
               "TLS: PEM roots that sign the manager's certificate");
  flags.String("tls-cert", &tls.cert, "TLS: client certificate (mTLS)");
  flags.String("tls-key", &tls.key, "TLS: the client certificate's key");
  std::string tls_server_name;
  flags.String("tls-server-name", &tls_server_name,
               "TLS: the name the manager's certificate carries, when the "
               "address does not say it (a node's IP); dns: targets use "
               "their name");
  flags.Bool("json", &json, "print JSON (one object per line)");
  flags.Bool("revisions", &revisions, "watch: print each event's revision");
  flags.Bool("force", &force, "stop: do not wait for lease holders");
  flags.Bool("follow", &follow, "logs: keep printing new output (-f)");
  flags.Int("timeout", &timeout_s, "seconds to wait (start, wait)", 1);
  flags.Int("history", &history, "logs: bytes of history to show", 0);
  bool version = false;
  flags.Bool("version", &version, "print the version and the build's commit");
  auto rest = flags.Parse(static_cast<int>(args.size()), args.data());
  if (rest.ok() && version) {
    printf("%s\n", VersionLine("mpctl").c_str());
    return 0;
  }
  if (!rest.ok() || rest->empty()) {
    bool help = !rest.ok() && absl::IsNotFound(rest.status());
    if (!rest.ok() && !help)
      fprintf(stderr, "mpctl: %s\n",
              std::string(rest.status().message()).c_str());
    fputs(flags.Usage().c_str(), help ? stdout : stderr);
    return help ? 0 : 2;
  }
  client::ClientOptions options;
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
  options.tls_server_name = tls_server_name;
  Command k;
  k.cmd = (*rest)[0];
  k.operands.assign(rest->begin() + 1, rest->end());
  k.json = json;
  k.force = force;
  k.follow = follow;
  k.revisions = revisions;
  k.history = history;
  k.timeout = timeout_s > 0 ? absl::Seconds(timeout_s) : absl::Minutes(10);
  const std::string& cmd = k.cmd;
  auto usage = [&] {
    fprintf(stderr, "mpctl: unknown command '%s'\n%s", cmd.c_str(),
            flags.Usage().c_str());
    return 2;
  };
  bool drain = cmd == "drain" || cmd == "resume" || cmd == "undrain";
  if (drain && k.operands.size() > 1) {
    fprintf(stderr, "mpctl: %s takes at most one node\n", cmd.c_str());
    return 2;
  }
  // Which managers: --node, or the node drain names, is one; several
  // --manager, or a dns: one, are a cluster (mpctl_cluster.h).
  std::vector<std::string> targets = managers;
  if (!node.empty()) targets = {node};
  if (drain && k.operands.size() == 1) {
    targets = {k.operands[0]};
    k.operands.clear();
  }
  bool several = targets.size() > 1;
  for (const std::string& t : targets) {
    several |= proxy::cluster::IsDnsTarget(t);
  }
  if (several) {
    int code = OnCluster(targets, options, k);
    return code >= 0 ? code : usage();
  }
  options.target = targets[0];
  manager_address = targets[0];
  ManagerClient c = ManagerClient::Connect(options);
  int code = OnOne(c, k);
  return code >= 0 ? code : usage();
}

}  // namespace
}  // namespace modelplane::mpctl

int main(int argc, char** argv) { return modelplane::mpctl::Main(argc, argv); }
