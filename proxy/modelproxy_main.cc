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
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/credentials.h"
#include "common/flags.h"
#include "common/lock_checks.h"
#include "proxy/proxy.h"

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

  FlagParser flags("modelproxy [--listen HOST:PORT] [--manager ADDR] [flags]");
  std::string listen = "127.0.0.1:8080";
  std::string manager = "127.0.0.1:50051";
  std::string token_file;
  int workers = static_cast<int>(std::thread::hardware_concurrency());
  int max_body_mib = 64;
  int max_buffered_body_mib = 1024;
  int drain_seconds = 30;
  int header_timeout_ms = 30000;
  int idle_timeout_ms = 60000;
  int body_timeout_ms = 60000;
  int send_timeout_ms = 60000;
  flags.String("listen", &listen,
               "host:port to serve (default 127.0.0.1:8080)");
  flags.String("manager", &manager,
               "modelmanager address (default 127.0.0.1:50051)");
  client::TlsFiles tls;
  flags.String("manager-tls-ca", &tls.ca,
               "TLS to the manager: PEM roots that sign its certificate");
  flags.String("manager-tls-cert", &tls.cert,
               "TLS to the manager: client certificate (mTLS)");
  flags.String("manager-tls-key", &tls.key,
               "TLS to the manager: the client certificate's key");
  flags.String("manager-token-file", &token_file,
               "bearer token for the manager, if it requires one");
  flags.Int("workers", &workers, "worker threads (default: one per core)", 1);
  flags.Int("max-buffered-body-mib", &max_buffered_body_mib,
            "request bodies held in memory at once, all connections "
            "together; past it 503 (default 1024)",
            1);
  flags.Int("max-body-mib", &max_body_mib, "largest request body (default 64)",
            1);
  flags.Int("drain-seconds", &drain_seconds,
            "on SIGTERM, time for responses in flight to finish (default 30)",
            0);
  flags.Int("header-timeout-ms", &header_timeout_ms,
            "time a client has to send a request head (default 30000; 408)", 1);
  flags.Int("idle-timeout-ms", &idle_timeout_ms,
            "idle keep-alive connections close after this (default 60000)", 1);
  flags.Int("body-timeout-ms", &body_timeout_ms,
            "most time between two reads of a request body (default 60000; "
            "408)",
            1);
  flags.Int("send-timeout-ms", &send_timeout_ms,
            "a client taking none of a pending response this long is cut off "
            "(default 60000)",
            1);
  int loading_interval_ms = 1000;
  flags.Int("loading-interval-ms", &loading_interval_ms,
            "a streaming request waiting for its model gets an SSE comment "
            "this often (default 1000; 0: never)",
            0);
  bool access_log = false;
  flags.Bool("access-log", &access_log,
             "log one line per request on stderr (default off)");
  auto rest = flags.Parse(argc, argv);
  if (!rest.ok() || !rest->empty()) {
    bool help = !rest.ok() && absl::IsNotFound(rest.status());
    if (!help) {
      fprintf(stderr, "modelproxy: %s\n",
              rest.ok() ? "unexpected argument"
                        : std::string(rest.status().message()).c_str());
    }
    fputs(flags.Usage().c_str(), help ? stdout : stderr);
    return help ? 0 : 2;
  }
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    fprintf(stderr, "modelproxy: --listen must be host:port\n");
    return 2;
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]:8080
  }
  int port = std::atoi(listen.c_str() + colon + 1);
  ProxyConfig config;
  config.host = host;
  config.port = port;
  config.workers = workers;
  config.link.manager.target = manager;
  if (!token_file.empty()) {
    // A proxy without its token would know no model and answer 404s.
    absl::StatusOr<std::string> token = client::ReadTokenFile(token_file);
    if (!token.ok()) {
      fprintf(stderr, "modelproxy: --manager-token-file %s\n",
              std::string(token.status().message()).c_str());
      return 2;
    }
    config.link.manager.token = *std::move(token);
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      client::MakeCredentials(tls);
  if (!credentials.ok()) {
    fprintf(stderr, "modelproxy: %s\n",
            std::string(credentials.status().message()).c_str());
    return 2;
  }
  config.link.manager.credentials = *credentials;
  config.link.log = [](const std::string& line) { Log(line); };
  config.log = [](const std::string& line, const char* level) {
    Log(line, level);
  };
  ProxyOptions& options = config.options;
  options.limits.max_body_bytes = static_cast<uint64_t>(max_body_mib) << 20;
  options.header_timeout = absl::Milliseconds(header_timeout_ms);
  options.idle_timeout = absl::Milliseconds(idle_timeout_ms);
  options.access_log = access_log;
  options.loading_interval = absl::Milliseconds(loading_interval_ms);
  options.body_timeout = absl::Milliseconds(body_timeout_ms);
  options.send_timeout = absl::Milliseconds(send_timeout_ms);
  options.max_buffered_body_bytes = static_cast<uint64_t>(max_buffered_body_mib)
                                    << 20;

  Proxy proxy(std::move(config));
  if (absl::Status started = proxy.Start(); !started.ok()) {
    fprintf(stderr, "modelproxy: %s\n", std::string(started.message()).c_str());
    return 1;
  }
  Log(absl::StrCat("modelproxy listening on ", host, ":", proxy.port(),
                   " with ", workers, " worker(s), manager ", manager));
  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    // Routes, keys and limits come from the manager, which reloads on its
    // own SIGHUP: nothing to do here, and no reason to die.
    Log("SIGHUP: nothing to reload (the manager's reload reaches the proxy)");
  }
  Log(absl::StrCat(strsignal(sig), ": draining"));
  // Stop accepting; let the responses in flight finish, within the budget.
  size_t left = proxy.Drain(absl::Seconds(drain_seconds));
  if (left > 0) {
    Log(absl::StrCat(left, " connection(s) cut at the drain deadline"));
  }
  proxy.Stop();
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace modelplane::proxy

int main(int argc, char** argv) { return modelplane::proxy::Main(argc, argv); }
