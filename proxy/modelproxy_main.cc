// modelproxy: the data plane of modelplane (docs/proxy.md).
//
//   modelproxy --listen 127.0.0.1:8080 --manager 127.0.0.1:50051 --workers 2
//
// Inference clients talk to it (OpenAI-style HTTP/1.1 and HTTP/2
// cleartext); it finds each request's model, holds the model under a lease
// from modelmanager and streams the upstream's response back. This file
// parses flags and runs a `Proxy` (proxy.h) until SIGTERM or SIGINT.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/lock_checks.h"
#include "common/version.h"
#include "proxy/proxy.h"
#include "proxy/proxy_flags.h"

namespace modelplane::proxy {
namespace {

void Log(const std::string& line, const char* level = "info") {
  std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone());
  fprintf(stderr, "%s %s %s\n", ts.c_str(), level, line.c_str());
  fflush(stderr);
}

int Main(int argc, char** argv) {
  // First of all, before anything can start a thread (gRPC starts its own
  // as soon as credentials are made): every thread inherits the mask, so
  // these signals reach only the sigwait below. A thread that did not block
  // them could take a SIGTERM (and kill the process without a drain) or
  // swallow a SIGHUP.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  SkipLockOrderChecksWhenOptimized();

  std::string usage;
  absl::StatusOr<ProxyCommandLine> cl = ParseProxyFlags(argc, argv, &usage);
  if (!cl.ok()) {
    bool help = absl::IsNotFound(cl.status());
    if (!help) {
      fprintf(stderr, "modelproxy: %s\n",
              std::string(cl.status().message()).c_str());
    }
    fputs(usage.c_str(), help ? stdout : stderr);
    return help ? 0 : 2;
  }
  if (cl->version) {
    printf("%s\n", VersionLine("modelproxy").c_str());
    return 0;
  }
  ProxyConfig config = std::move(cl->config);
  config.link.log = [](const std::string& line) { Log(line); };
  config.log = [](const std::string& line, const char* level) {
    Log(line, level);
  };
  std::string host = config.host;
  int workers = config.workers;
  std::string manager = config.link.manager.target;

  Proxy proxy(std::move(config));
  if (absl::Status started = proxy.Start(); !started.ok()) {
    fprintf(stderr, "modelproxy: %s\n", std::string(started.message()).c_str());
    // A certificate or key that cannot be used is a bad argument.
    return absl::IsInvalidArgument(started) ? 2 : 1;
  }
  proxy.Log(absl::StrCat("modelproxy listening on ", host, ":", proxy.port(),
                         proxy.tls() ? " (TLS)" : "", " with ", workers,
                         " worker(s), manager ", manager));
  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    // Routes, keys and limits come from the manager, which reloads on its
    // own SIGHUP; the proxy's own file is the TLS certificate.
    if (!proxy.tls()) {
      proxy.Log(
          "SIGHUP: nothing to reload (the manager's reload reaches the "
          "proxy)");
      continue;
    }
    if (absl::Status s = proxy.ReloadTls(); !s.ok()) {
      proxy.Log("SIGHUP: " + std::string(s.message()) +
                    "; the certificate in use stays",
                "error");
    }
  }
  proxy.Log(absl::StrCat(strsignal(sig), ": draining"));
  // Stop accepting; let the responses in flight finish, within the budget.
  size_t left = proxy.Drain(cl->drain);
  if (left > 0) {
    proxy.Log(absl::StrCat(left, " connection(s) cut at the drain deadline"));
  }
  proxy.Stop();
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace modelplane::proxy

int main(int argc, char** argv) { return modelplane::proxy::Main(argc, argv); }
