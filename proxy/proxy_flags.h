// modelproxy's command line (docs/proxy.md, "Running it"): its flags into
// a ProxyConfig, ready for Proxy (proxy.h).
//
//   absl::StatusOr<ProxyCommandLine> cl = ParseProxyFlags(argc, argv);
//   if (!cl.ok()) ... NotFound: --help (usage on stdout, exit 0); any
//                     other: the message, then the usage (exit 2) ...
#ifndef MODELPLANE_PROXY_PROXY_FLAGS_H_
#define MODELPLANE_PROXY_PROXY_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proxy/proxy.h"

namespace modelplane::proxy {

struct ProxyCommandLine {
  ProxyConfig config;  // Without its log callbacks (the caller's).
  // On SIGTERM or SIGINT, time for the responses in flight to finish.
  absl::Duration drain = absl::Seconds(30);
  std::string usage;     // For --help and errors.
  bool version = false;  // --version: print it and exit.
};

// Parses argv (reading --manager-token-file and making the manager's
// credentials). NotFound for --help; InvalidArgument naming the flag or
// argument at fault. `usage` is filled either way.
absl::StatusOr<ProxyCommandLine> ParseProxyFlags(int argc,
                                                 const char* const* argv,
                                                 std::string* usage);

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_PROXY_FLAGS_H_
