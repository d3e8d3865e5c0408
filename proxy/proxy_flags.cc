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

void RegisterProxyFlags(FlagParser* parser, ProxyFlags* f, bool with_manager) {
  FlagParser& flags = *parser;
  flags.String(
      "listen", &f->listen,
      absl::StrCat("host:port to serve (default ",
                   f->listen.empty() ? ":8080, or :8443 with TLS" : f->listen,
                   "; :PORT is every IPv4 address, as 0.0.0.0:PORT)"));
  if (with_manager) {
    flags.StringList("manager", &f->managers,
                     "modelmanager address (default 127.0.0.1:50051); given "
                     "more than once, each is a node of the cluster; "
                     "dns:///NAME:PORT or dns://SERVER:PORT/NAME:PORT: a node "
                     "per address of NAME");
    flags.Int("resolve-interval-ms", &f->resolve_interval_ms,
              "how often a dns: --manager is resolved again (default 5000)",
              100);
    flags.String("manager-tls-ca", &f->tls.ca,
                 "TLS to the manager: PEM roots that sign its certificate");
    flags.String("manager-tls-cert", &f->tls.cert,
                 "TLS to the manager: client certificate (mTLS)");
    flags.String("manager-tls-key", &f->tls.key,
                 "TLS to the manager: the client certificate's key");
    flags.String("manager-token-file", &f->token_file,
                 "bearer token for the manager, if it requires one");
  }
  flags.Int("workers", &f->workers, "worker threads (default: one per core)",
            1);
  flags.Int("max-buffered-body-mib", &f->max_buffered_body_mib,
            "request bodies held in memory at once, all connections "
            "together; past it 503 (default 1024)",
            1);
  flags.Int("max-body-mib", &f->max_body_mib,
            "largest request body (default 64)", 1);
  flags.Int("drain-seconds", &f->drain_seconds,
            "on SIGTERM, time for responses in flight to finish (default 30)",
            0);
  flags.Int("header-timeout-ms", &f->header_timeout_ms,
            "time a client has to send a request head (default 30000; 408)", 1);
  flags.Int("idle-timeout-ms", &f->idle_timeout_ms,
            "idle keep-alive connections close after this (default 60000)", 1);
  flags.Int("body-timeout-ms", &f->body_timeout_ms,
            "most time between two reads of a request body (default 60000; "
            "408)",
            1);
  flags.Int("send-timeout-ms", &f->send_timeout_ms,
            "a client taking none of a pending response this long is cut off "
            "(default 60000)",
            1);
  flags.Int("loading-interval-ms", &f->loading_interval_ms,
            "a streaming request waiting for its model gets an SSE comment "
            "this often (default 1000; 0: never)",
            0);
  flags.Bool("access-log", &f->access_log,
             "log one line per request on stderr (default off)");
  flags.String("tls-cert-file", &f->tls_cert_file,
               "serve HTTPS only on --listen with this PEM certificate "
               "chain (llama-swap's flag; re-read on SIGHUP)");
  flags.String("tls-key-file", &f->tls_key_file,
               "the certificate's PEM private key (with --tls-cert-file)");
  flags.Int("tls-handshake-timeout-ms", &f->tls_handshake_timeout_ms,
            "a TLS handshake not done within this closes the connection "
            "(default 10000)",
            1);
}

absl::StatusOr<ProxyCommandLine> ProxyCommandLineFrom(const ProxyFlags& f) {
  ProxyCommandLine out;
  ProxyConfig& config = out.config;
  const std::string& listen = f.listen;
  size_t colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]:8080
  }
  // Go's ":8080" (llama-swap's default form): every address. IPv4's, so
  // that the same command works where IPv6 is off; [::]:PORT adds IPv6.
  if (colon == 0) host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";  // The listener takes IPs.
  int port = 0;
  if (host.empty() ||
      !absl::SimpleAtoi(absl::string_view(listen).substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen must be host:port, not '", listen, "'"));
  }
  if (f.tls_cert_file.empty() != f.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert-file and --tls-key-file go together");
  }
  config.tls_cert_file = f.tls_cert_file;
  config.tls_key_file = f.tls_key_file;
  config.host = host;
  config.port = port;
  config.workers = f.workers;
  for (const std::string& m : f.managers) {
    if (m.empty()) return absl::InvalidArgumentError("--manager is empty");
    if (cluster::IsDnsTarget(m)) {
      absl::Status dns = cluster::ParseDnsTarget(m).status();
      if (!dns.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--manager ", dns.message()));
      }
    }
  }
  if (f.managers.empty()) {
    return absl::InvalidArgumentError("no --manager");
  }
  config.resolve_interval = absl::Milliseconds(f.resolve_interval_ms);
  config.managers = f.managers;
  config.link.manager.target = f.managers.front();
  if (!f.token_file.empty()) {
    // A proxy without its token would know no model and answer 404s.
    absl::StatusOr<std::string> token = client::ReadTokenFile(f.token_file);
    if (!token.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--manager-token-file ", token.status().message()));
    }
    config.link.manager.token = *std::move(token);
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      client::MakeCredentials(f.tls);
  if (!credentials.ok()) {
    return absl::InvalidArgumentError(credentials.status().message());
  }
  config.link.manager.credentials = *credentials;
  ProxyOptions& options = config.options;
  options.limits.max_body_bytes = static_cast<uint64_t>(f.max_body_mib) << 20;
  options.max_buffered_body_bytes =
      static_cast<uint64_t>(f.max_buffered_body_mib) << 20;
  options.header_timeout = absl::Milliseconds(f.header_timeout_ms);
  options.idle_timeout = absl::Milliseconds(f.idle_timeout_ms);
  options.body_timeout = absl::Milliseconds(f.body_timeout_ms);
  options.send_timeout = absl::Milliseconds(f.send_timeout_ms);
  options.loading_interval = absl::Milliseconds(f.loading_interval_ms);
  options.access_log = f.access_log;
  options.tls_handshake_timeout =
      absl::Milliseconds(f.tls_handshake_timeout_ms);
  out.drain = absl::Seconds(f.drain_seconds);
  return out;
}

absl::StatusOr<ProxyCommandLine> ParseProxyFlags(int argc,
                                                 const char* const* argv,
                                                 std::string* usage) {
  FlagParser flags(
      "modelproxy [--listen HOST:PORT] [--manager ADDR]... [flags]");
  ProxyFlags f;
  RegisterProxyFlags(&flags, &f, /*with_manager=*/true);
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
  absl::StatusOr<ProxyCommandLine> out = ProxyCommandLineFrom(f);
  if (out.ok()) out->usage = *usage;
  return out;
}

}  // namespace modelplane::proxy
