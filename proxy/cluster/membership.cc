#include "proxy/cluster/membership.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proxy/cluster/resolver.h"

namespace modelplane::proxy::cluster {

Membership::Membership(Cluster* cluster, std::vector<std::string> targets,
                       absl::Duration interval, Log log)
    : cluster_(cluster),
      targets_(std::move(targets)),
      interval_(interval),
      log_(std::move(log)) {
  if (!log_) log_ = [](const std::string&, const char*) {};
}

Membership::~Membership() { Stop(); }

void Membership::Start() {
  Refresh();
  bool dns = false;
  for (const std::string& t : targets_) dns |= IsDnsTarget(t);
  if (dns) thread_ = std::thread([this] { Run(); });
}

void Membership::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Membership::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_);
      if (stopping_) return;
    }
    Refresh();
  }
}

void Membership::Refresh() {
  std::set<std::string> members;
  std::map<std::string, std::string> tls_names;
  for (const std::string& t : targets_) {
    if (!IsDnsTarget(t)) {
      members.insert(t);
      continue;
    }
    absl::StatusOr<DnsTarget> target = ParseDnsTarget(t);
    absl::StatusOr<std::vector<std::string>> found =
        target.ok() ? Resolve(*target, absl::Seconds(2))
                    : absl::StatusOr<std::vector<std::string>>(target.status());
    if (found.ok()) {
      errors_.erase(t);
      auto& last = resolved_[t];
      if (last != *found) {
        log_(absl::StrCat(t, " resolves to ", absl::StrJoin(*found, ", ")),
             "info");
        last = *found;
      }
    } else {
      std::string cause(found.status().message());
      if (errors_[t] != cause) {
        errors_[t] = cause;
        log_(absl::StrCat("cannot resolve ", t, ": ", cause,
                          resolved_.count(t) != 0
                              ? "; its last nodes stay"
                              : "; it has no node until it resolves"),
             "warn");
      }
    }
    auto it = resolved_.find(t);
    if (it == resolved_.end()) continue;
    members.insert(it->second.begin(), it->second.end());
    // Its managers' certificates are for the name, not the addresses.
    if (target.ok()) {
      for (const std::string& a : it->second) tls_names[a] = target->name;
    }
  }
  cluster_->SetMembers({members.begin(), members.end()}, tls_names);
}

}  // namespace modelplane::proxy::cluster
