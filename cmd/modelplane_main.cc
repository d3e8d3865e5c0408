// modelplane: one host's modelmanager and modelproxy in one process, the
// way `llama-swap --config config.yaml` runs (docs/operations.md).
//
//   modelplane --config config.yaml [--listen :8080] [modelproxy's flags]
//
// The manager serves gRPC on a unix socket in a private directory (0700)
// that only this process's proxy uses; the proxy takes the requests. One
// set of signals: SIGHUP reloads the config, SIGTERM or SIGINT drains the
// proxy, then stops every model. One log, in the manager's level and
// format. Exit codes: 0 after a clean stop, 2 for bad flags or config, 1
// when a port cannot be listened on. For a cluster, run modelmanager and
// modelproxy apart (docs/cluster.md).
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/lock_checks.h"
#include "common/version.h"
#include "proxy/proxy.h"
#include "proxy/proxy_flags.h"
#include "server/runtime/supervisor.h"
#include "server/serve.h"

namespace modelplane {
namespace {

constexpr int kExitInvalid = 2;

// The private directory for the manager's socket: under $XDG_RUNTIME_DIR
// when set (systemd's per-user runtime directory), else $TMPDIR or /tmp.
// Removed by the destructor.
class PrivateDir {
 public:
  PrivateDir() {
    const char* base = getenv("XDG_RUNTIME_DIR");
    if (base == nullptr || *base == '\0') base = getenv("TMPDIR");
    if (base == nullptr || *base == '\0') base = "/tmp";
    std::string templ = absl::StrCat(base, "/modelplane-XXXXXX");
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr) path_ = buf.data();  // Mode 0700.
  }
  ~PrivateDir() {
    if (path_.empty()) return;
    unlink(socket().c_str());
    rmdir(path_.c_str());
  }
  bool ok() const { return !path_.empty(); }
  std::string socket() const { return path_ + "/manager.sock"; }

 private:
  std::string path_;
};

int Main(int argc, char** argv) {
  // Before any thread: every thread inherits the mask, so these signals
  // reach only the sigwait below.
  sigset_t signals;
  BlockServeSignals(&signals);
  SkipLockOrderChecksWhenOptimized();

  FlagParser parser("modelplane --config FILE [--listen HOST:PORT] [flags]");
  ServeOptions serve;
  RegisterServeFlags(&parser, &serve, /*one_host=*/true);
  proxy::ProxyFlags proxy_flags;
  // llama-swap's default: every address, :8080 (:8443 with TLS). The log
  // says so, as llama-swap's.
  proxy_flags.listen = "";
  proxy::RegisterProxyFlags(&parser, &proxy_flags, /*with_manager=*/false);
  bool version = false;
  parser.Bool("version", &version, "print the version and the build's commit");
  absl::StatusOr<std::vector<std::string>> rest = parser.Parse(argc, argv);
  if (!rest.ok() && absl::IsNotFound(rest.status())) {
    printf("%s", parser.Usage().c_str());
    return 0;
  }
  if (rest.ok() && version) {
    printf("%s\n", VersionLine("modelplane").c_str());
    return 0;
  }
  std::string problem;
  if (!rest.ok()) {
    problem = std::string(rest.status().message());
  } else if (!rest->empty()) {
    problem = absl::StrCat("unexpected argument '", rest->front(), "'");
  } else {
    problem = CheckServeOptions(serve);
  }
  absl::StatusOr<proxy::ProxyCommandLine> cl =
      absl::InvalidArgumentError("not parsed");
  if (problem.empty()) {
    if (proxy_flags.listen.empty()) {
      proxy_flags.listen =
          proxy_flags.tls_cert_file.empty() ? ":8080" : ":8443";
    }
    cl = proxy::ProxyCommandLineFrom(proxy_flags);
    if (!cl.ok()) problem = std::string(cl.status().message());
  }
  if (!problem.empty()) {
    fprintf(stderr, "modelplane: %s\n%s", problem.c_str(),
            parser.Usage().c_str());
    return kExitInvalid;
  }

  // What the proxy would refuse (a certificate, the address, a taken
  // port), before the manager starts anything.
  if (absl::Status ok = proxy::Proxy::Check(cl->config); !ok.ok()) {
    fprintf(stderr, "modelplane: %s\n", std::string(ok.message()).c_str());
    return absl::IsInvalidArgument(ok) ? kExitInvalid : 1;
  }
  PrivateDir dir;
  if (!dir.ok()) {
    fprintf(stderr, "modelplane: cannot make a private directory: %s\n",
            strerror(errno));
    return 1;
  }
  serve.listen = "unix:" + dir.socket();
  ManagerServer manager(serve);
  if (int rc = manager.Start(); rc != 0) return rc;

  proxy::ProxyConfig config = std::move(cl->config);
  config.managers = {manager.address()};
  config.link.manager.target = manager.address();
  // Its one node, in /running, /v1/models, the metrics and the UI: not the
  // socket's path, which changes every run.
  config.node_names = {{manager.address(), "local"}};
  ManagerServer* log = &manager;
  config.link.log = [log](const std::string& line) { log->Log("info", line); };
  config.log = [log](const std::string& line, const char* level) {
    log->Log(level, line);
  };
  // The access log too: one log, in its format (JSON lines with
  // --log-format json).
  config.options.access_log_sink = [log](const std::string& line) {
    log->Log("info", line);
  };
  std::string host = config.host;
  int workers = config.workers;
  proxy::Proxy proxy(std::move(config));
  if (absl::Status started = proxy.Start(); !started.ok()) {
    manager.Log("error", std::string(started.message()));
    manager.Shutdown();  // Stops what hooks.on_startup.preload started.
    // A certificate or key that cannot be used is a bad argument.
    return absl::IsInvalidArgument(started) ? kExitInvalid : 1;
  }
  // Before it is said to listen: until the proxy has its first settings
  // (its API keys among them) from the manager, requests are 503s.
  if (!proxy.WaitForSettings(absl::Seconds(10))) {
    proxy.Log("no settings from the manager after 10 s", "warn");
  }
  proxy.Log(absl::StrCat(
      "modelplane listening on ",
      host.find(':') == std::string::npos ? host : absl::StrCat("[", host, "]"),
      ":", proxy.port(), proxy.tls() ? " (TLS)" : "", " with ", workers,
      " worker(s)"));
  if (host == "0.0.0.0" || host == "::") {
    proxy.Log(
        absl::StrCat("reachable by every host on the network; "
                     "--listen 127.0.0.1:",
                     proxy.port(), " keeps it to this one"));
  }
  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    manager.Reload();  // The config; the proxy hears of it by Watch.
    if (absl::Status s = proxy.ReloadTls(); !s.ok()) {
      manager.Log("error", "SIGHUP: " + std::string(s.message()) +
                               "; the certificate in use stays");
    }
  }
  manager.Log("info", absl::StrCat(strsignal(sig), ": draining"));
  // Stop accepting; the responses in flight finish within the budget; then
  // the models stop.
  size_t left = proxy.Drain(cl->drain);
  if (left > 0) {
    manager.Log("info",
                absl::StrCat(left, " connection(s) cut at the drain deadline"));
  }
  proxy.Stop();
  manager.Shutdown();
  return 0;
}

}  // namespace
}  // namespace modelplane

int main(int argc, char** argv) {
  // Supervisors (forks of this process) write their title over it.
  modelplane::runtime::SetProcessTitleArea(argc, argv);
  return modelplane::Main(argc, argv);
}
