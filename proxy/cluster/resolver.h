// DNS discovery of the cluster's nodes (docs/cluster.md, "Membership"): a
// `--manager` of the form gRPC writes, `dns:///NAME:PORT` or
// `dns://SERVER[:SERVERPORT]/NAME:PORT` (also `dns:NAME:PORT`), stands for
// every A and AAAA record of NAME, each a node `ADDRESS:PORT`. Resolved
// with c-ares (Debian's libc-ares), against SERVER when given (DNS only,
// no hosts file), else the system's resolvers.
//
//   absl::StatusOr<DnsTarget> t = ParseDnsTarget("dns:///managers:50051");
//   absl::StatusOr<std::vector<std::string>> nodes =
//       Resolve(*t, absl::Seconds(2));   // {"10.0.0.7:50051", ...}
#ifndef MODELPLANE_PROXY_CLUSTER_RESOLVER_H_
#define MODELPLANE_PROXY_CLUSTER_RESOLVER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace modelplane::proxy::cluster {

struct DnsTarget {
  std::string server;    // "" : the system's resolvers.
  int server_port = 53;  // With `server`.
  std::string name;
  int port = 0;
};

// Whether `target` is a dns: target at all (else it is one address).
bool IsDnsTarget(absl::string_view target);
// InvalidArgument naming what is wrong (no port, a bad server...).
absl::StatusOr<DnsTarget> ParseDnsTarget(absl::string_view target);

// Every address of `target.name` (A and AAAA), as "ADDRESS:PORT" ("[v6]:PORT"
// for IPv6), sorted, no duplicates. NotFound when the name has none;
// Unavailable when the server did not answer within `timeout`.
absl::StatusOr<std::vector<std::string>> Resolve(const DnsTarget& target,
                                                 absl::Duration timeout);

}  // namespace modelplane::proxy::cluster

#endif  // MODELPLANE_PROXY_CLUSTER_RESOLVER_H_
