// modelproxy's command line (docs/proxy.md, "Running it"): its flags into
// a ProxyConfig, ready for Proxy (proxy.h).
//
//   absl::StatusOr<ProxyCommandLine> cl = ParseProxyFlags(argc, argv);
//   if (!cl.ok()) ... NotFound: --help (usage on stdout, exit 0); any
//                     other: the message, then the usage (exit 2) ...
#ifndef MODELPLANE_PROXY_PROXY_FLAGS_H_
#define MODELPLANE_PROXY_PROXY_FLAGS_H_

#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/credentials.h"
#include "common/flags.h"
#include "proxy/proxy.h"

namespace modelplane::proxy {

struct ProxyCommandLine {
  ProxyConfig config;  // Without its log callbacks (the caller's).
  // On SIGTERM or SIGINT, time for the responses in flight to finish.
  absl::Duration drain = absl::Seconds(30);
  std::string usage;     // For --help and errors.
  bool version = false;  // --version: print it and exit.
};

// The flags' values before they become a ProxyCommandLine.
struct ProxyFlags {
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
  std::string tls_cert_file;
  std::string tls_key_file;
  int tls_handshake_timeout_ms = 10000;
};

// Registers modelproxy's flags on `parser`, writing into `flags`; without
// `with_manager`, none of the --manager* flags (for the `modelplane`
// binary, whose manager is its own).
void RegisterProxyFlags(FlagParser* parser, ProxyFlags* flags,
                        bool with_manager);

// The command line the values make (reading the token file and making the
// manager's credentials); InvalidArgument naming the flag at fault.
absl::StatusOr<ProxyCommandLine> ProxyCommandLineFrom(const ProxyFlags& flags);

// Parses argv (reading --manager-token-file and making the manager's
// credentials). NotFound for --help; InvalidArgument naming the flag or
// argument at fault. `usage` is filled either way.
absl::StatusOr<ProxyCommandLine> ParseProxyFlags(int argc,
                                                 const char* const* argv,
                                                 std::string* usage);

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_PROXY_FLAGS_H_
