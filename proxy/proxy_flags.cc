#include "proxy/proxy_flags.h"

#include <cstdlib>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/credentials.h"
#include "common/flags.h"
#include "proxy/cluster/resolver.h"

namespace modelplane::proxy {

absl::StatusOr<ProxyCommandLine> ParseProxyFlags(int argc,
                                                 const char* const* argv,
                                                 std::string* usage) {
  FlagParser flags(
      "modelproxy [--listen HOST:PORT] [--manager ADDR]... [flags]");
  std::string listen = "127.0.0.1:8080";
  std::vector<std::string> managers = {"127.0.0.1:50051"};
  std::string token_file;
  client::TlsFiles tls;
  int workers = static_cast<int>(std::thread::hardware_concurrency());
  int max_body_mib = 64;
  int max_buffered_body_mib = 1024;
  int drain_seconds = 30;
  int resolve_interval_ms = 5000;
  int header_timeout_ms = 30000;
  int idle_timeout_ms = 60000;
  int body_timeout_ms = 60000;
  int send_timeout_ms = 60000;
  int loading_interval_ms = 1000;
  bool access_log = false;
  flags.String("listen", &listen,
               "host:port to serve (default 127.0.0.1:8080)");
  flags.StringList("manager", &managers,
                   "modelmanager address (default 127.0.0.1:50051); given "
                   "more than once, each is a node of the cluster; "
                   "dns:///NAME:PORT or dns://SERVER:PORT/NAME:PORT: a node "
                   "per address of NAME");
  flags.Int("resolve-interval-ms", &resolve_interval_ms,
            "how often a dns: --manager is resolved again (default 5000)", 100);
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
  flags.Int("loading-interval-ms", &loading_interval_ms,
            "a streaming request waiting for its model gets an SSE comment "
            "this often (default 1000; 0: never)",
            0);
  flags.Bool("access-log", &access_log,
             "log one line per request on stderr (default off)");
  bool version = false;
  flags.Bool("version", &version, "print the version and the build's commit");
  *usage = flags.Usage();
  absl::StatusOr<std::vector<std::string>> rest = flags.Parse(argc, argv);
  if (!rest.ok()) return rest.status();
  if (version) {
    ProxyCommandLine out;
    out.version = true;
    return out;
  }
  if (!rest->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument '", rest->front(), "'"));
  }

  ProxyCommandLine out;
  out.usage = *usage;
  ProxyConfig& config = out.config;
  size_t colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]:8080
  }
  int port = 0;
  if (host.empty() ||
      !absl::SimpleAtoi(absl::string_view(listen).substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen must be host:port, not '", listen, "'"));
  }
  config.host = host;
  config.port = port;
  config.workers = workers;
  for (const std::string& m : managers) {
    if (m.empty()) return absl::InvalidArgumentError("--manager is empty");
    if (cluster::IsDnsTarget(m)) {
      absl::Status dns = cluster::ParseDnsTarget(m).status();
      if (!dns.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--manager ", dns.message()));
      }
    }
  }
  config.resolve_interval = absl::Milliseconds(resolve_interval_ms);
  config.managers = managers;
  config.link.manager.target = managers.front();
  if (!token_file.empty()) {
    // A proxy without its token would know no model and answer 404s.
    absl::StatusOr<std::string> token = client::ReadTokenFile(token_file);
    if (!token.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--manager-token-file ", token.status().message()));
    }
    config.link.manager.token = *std::move(token);
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      client::MakeCredentials(tls);
  if (!credentials.ok()) {
    return absl::InvalidArgumentError(credentials.status().message());
  }
  config.link.manager.credentials = *credentials;
  ProxyOptions& options = config.options;
  options.limits.max_body_bytes = static_cast<uint64_t>(max_body_mib) << 20;
  options.max_buffered_body_bytes = static_cast<uint64_t>(max_buffered_body_mib)
                                    << 20;
  options.header_timeout = absl::Milliseconds(header_timeout_ms);
  options.idle_timeout = absl::Milliseconds(idle_timeout_ms);
  options.body_timeout = absl::Milliseconds(body_timeout_ms);
  options.send_timeout = absl::Milliseconds(send_timeout_ms);
  options.loading_interval = absl::Milliseconds(loading_interval_ms);
  options.access_log = access_log;
  out.drain = absl::Seconds(drain_seconds);
  return out;
}

}  // namespace modelplane::proxy
