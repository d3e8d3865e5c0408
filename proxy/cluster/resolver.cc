#include "proxy/cluster/resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>

#include <algorithm>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace modelplane::proxy::cluster {
namespace {

// "host:port" or "[v6]:port" into its parts; false when malformed.
bool SplitHostPort(absl::string_view s, std::string* host, int* port,
                   bool port_required) {
  absl::string_view h = s;
  absl::string_view p;
  if (absl::ConsumePrefix(&h, "[")) {
    size_t close = h.find(']');
    if (close == absl::string_view::npos) return false;
    absl::string_view rest = h.substr(close + 1);
    h = h.substr(0, close);
    if (!rest.empty()) {
      if (!absl::ConsumePrefix(&rest, ":")) return false;
      p = rest;
    }
  } else {
    size_t colon = h.rfind(':');
    if (colon != absl::string_view::npos) {
      p = h.substr(colon + 1);
      h = h.substr(0, colon);
    }
  }
  if (h.empty()) return false;
  *host = std::string(h);
  if (p.empty()) return !port_required;
  return absl::SimpleAtoi(p, port) && *port > 0 && *port <= 65535;
}

struct Lookup {
  bool done = false;
  int status = ARES_SUCCESS;
  std::vector<std::string> addresses;
};

void OnAddrInfo(void* arg, int status, int /*timeouts*/,
                struct ares_addrinfo* result) {
  auto* l = static_cast<Lookup*>(arg);
  l->done = true;
  l->status = status;
  if (result == nullptr) return;
  for (ares_addrinfo_node* n = result->nodes; n != nullptr; n = n->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (n->ai_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(n->ai_addr);
      inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
      l->addresses.push_back(buf);
    } else if (n->ai_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(n->ai_addr);
      inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
      l->addresses.push_back(absl::StrCat("[", buf, "]"));
    }
  }
  ares_freeaddrinfo(result);
}

}  // namespace

bool IsDnsTarget(absl::string_view target) {
  return absl::StartsWith(target, "dns:");
}

absl::StatusOr<DnsTarget> ParseDnsTarget(absl::string_view target) {
  absl::string_view rest = target;
  if (!absl::ConsumePrefix(&rest, "dns:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", target, "' is not a dns: target"));
  }
  DnsTarget t;
  if (absl::ConsumePrefix(&rest, "//")) {
    size_t slash = rest.find('/');
    if (slash == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", target,
          "': write dns:///NAME:PORT, or dns://SERVER:PORT/NAME:PORT"));
    }
    absl::string_view authority = rest.substr(0, slash);
    rest = rest.substr(slash + 1);
    if (!authority.empty() &&
        !SplitHostPort(authority, &t.server, &t.server_port, false)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", target, "': the DNS server '", authority,
                       "' is not HOST[:PORT]"));
    }
    if (!t.server.empty()) {
      in6_addr a6;
      in_addr a4;
      if (inet_pton(AF_INET, t.server.c_str(), &a4) != 1 &&
          inet_pton(AF_INET6, t.server.c_str(), &a6) != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", target, "': the DNS server '", t.server,
                         "' must be an IP address"));
      }
    }
  }
  if (!SplitHostPort(rest, &t.name, &t.port, true)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", target, "': the name must be NAME:PORT"));
  }
  return t;
}

absl::StatusOr<std::vector<std::string>> Resolve(const DnsTarget& target,
                                                 absl::Duration timeout) {
  static std::once_flag init;
  std::call_once(init, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  ares_options options = {};
  int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  options.timeout = static_cast<int>(
      std::max<int64_t>(100, absl::ToInt64Milliseconds(timeout) / 2));
  options.tries = 2;
  char lookups[] = "b";  // DNS only: the server asked for is the answer.
  if (!target.server.empty()) {
    mask |= ARES_OPT_LOOKUPS;
    options.lookups = lookups;
  }
  ares_channel channel;
  int rc = ares_init_options(&channel, &options, mask);
  if (rc != ARES_SUCCESS) {
    return absl::InternalError(
        absl::StrCat("c-ares cannot start: ", ares_strerror(rc)));
  }
  if (!target.server.empty()) {
    std::string server =
        absl::StrContains(target.server, ':')
            ? absl::StrCat("[", target.server, "]:", target.server_port)
            : absl::StrCat(target.server, ":", target.server_port);
    rc = ares_set_servers_ports_csv(channel, server.c_str());
    if (rc != ARES_SUCCESS) {
      ares_destroy(channel);
      return absl::InvalidArgumentError(absl::StrCat(
          "the DNS server ", server, " is not usable: ", ares_strerror(rc)));
    }
  }
  Lookup lookup;
  ares_addrinfo_hints hints = {};
  hints.ai_family = AF_UNSPEC;
  ares_getaddrinfo(channel, target.name.c_str(), nullptr, &hints, &OnAddrInfo,
                   &lookup);
  absl::Time deadline = absl::Now() + timeout;
  while (!lookup.done && absl::Now() < deadline) {
    ares_socket_t socks[ARES_GETSOCK_MAXNUM];
    int bits = ares_getsock(channel, socks, ARES_GETSOCK_MAXNUM);
    pollfd fds[ARES_GETSOCK_MAXNUM];
    int n = 0;
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
      short events = 0;
      if (ARES_GETSOCK_READABLE(bits, i)) events |= POLLIN;
      if (ARES_GETSOCK_WRITABLE(bits, i)) events |= POLLOUT;
      if (events == 0) continue;
      fds[n].fd = socks[i];
      fds[n].events = events;
      fds[n].revents = 0;
      ++n;
    }
    timeval tv;
    timeval* tvp = ares_timeout(channel, nullptr, &tv);
    int wait_ms =
        tvp != nullptr
            ? static_cast<int>(tvp->tv_sec * 1000 + tvp->tv_usec / 1000)
            : 100;
    wait_ms = std::max(
        1, std::min<int>(wait_ms, static_cast<int>(absl::ToInt64Milliseconds(
                                      deadline - absl::Now())) +
                                      1));
    poll(fds, static_cast<nfds_t>(n), wait_ms);
    if (n == 0) {
      ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      continue;
    }
    for (int i = 0; i < n; ++i) {
      ares_process_fd(channel,
                      (fds[i].revents & (POLLIN | POLLERR | POLLHUP))
                          ? fds[i].fd
                          : ARES_SOCKET_BAD,
                      (fds[i].revents & POLLOUT) ? fds[i].fd : ARES_SOCKET_BAD);
    }
  }
  // Cancels a lookup still pending (its callback runs, with ARES_EDESTRUCTION).
  ares_destroy(channel);
  if (!lookup.done || lookup.status == ARES_ETIMEOUT ||
      lookup.status == ARES_EDESTRUCTION ||
      lookup.status == ARES_ECONNREFUSED) {
    return absl::UnavailableError(
        absl::StrCat("no answer for ", target.name, " from ",
                     target.server.empty() ? "the system's DNS" : target.server,
                     " within ", absl::FormatDuration(timeout)));
  }
  if (lookup.status != ARES_SUCCESS || lookup.addresses.empty()) {
    return absl::NotFoundError(
        absl::StrCat("DNS has no address for ", target.name,
                     lookup.status != ARES_SUCCESS
                         ? absl::StrCat(" (", ares_strerror(lookup.status), ")")
                         : ""));
  }
  std::vector<std::string> out;
  for (const std::string& a : lookup.addresses) {
    out.push_back(absl::StrCat(a, ":", target.port));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace modelplane::proxy::cluster
