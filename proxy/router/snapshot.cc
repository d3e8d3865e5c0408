#include "proxy/router/snapshot.h"

#include <utility>

namespace modelplane::proxy::router {

std::shared_ptr<const Settings> Settings::From(const v1::DataPlaneSettings& s) {
  auto out = std::make_shared<Settings>();
  out->api_keys.insert(s.api_key_sha256().begin(), s.api_key_sha256().end());
  out->list_aliases = s.include_aliases_in_list();
  if (s.metrics_max_in_memory() > 0) {
    out->activity_limit = s.metrics_max_in_memory();
  }
  out->store_path = s.store_path();
  out->startup_profile = s.startup_profile();
  if (s.store_max_rows() > 0) out->store_max_rows = s.store_max_rows();
  for (const std::string& p : s.upstream_ignore_paths()) {
    auto re = std::make_unique<RE2>(p, RE2::Quiet);
    // The manager checked them; one this RE2 cannot take matches nothing.
    if (re->ok()) out->ignore_paths.push_back(std::move(re));
  }
  out->peers = PeerTable::Build({s.peers().begin(), s.peers().end()});
  out->selectors =
      SelectorTable::Build({s.selectors().begin(), s.selectors().end()});
  out->profiles =
      ProfileTable::Build({s.profiles().begin(), s.profiles().end()});
  return out;
}

const Settings& Snapshot::Or() const {
  static const Settings* const kNone = new Settings();
  return settings_ != nullptr ? *settings_ : *kNone;
}

RoutingState::RoutingState() {
  absl::MutexLock lock(&mu_);
  routes_ = RouteTable::Build({});
  Rebuild();
}

void RoutingState::Update(std::shared_ptr<const RouteTable> routes,
                          std::shared_ptr<const Settings> settings,
                          std::shared_ptr<const cluster::NodeSet> nodes) {
  absl::MutexLock lock(&mu_);
  if (routes != nullptr) routes_ = std::move(routes);
  if (nodes != nullptr) nodes_ = std::move(nodes);
  if (settings == nullptr) {
    Rebuild();
    return;
  }
  bool same = settings_ != nullptr;
  if (same) {
    const auto& before = settings_->profiles->routes();
    const auto& after = settings->profiles->routes();
    same = before.size() == after.size();
    for (size_t i = 0; same && i < after.size(); ++i) {
      same = *before[i] == *after[i];
    }
  }
  if (active_profile_ != nullptr) {
    active_profile_ =
        same ? settings->profiles->Find(active_profile_->name) : nullptr;
  }
  // hooks.on_startup.profile: on at the first settings, and again when a
  // reload changed it or the profiles (a switch made since stays through
  // other changes).
  if (!settings->startup_profile.empty() &&
      (!same || settings_->startup_profile != settings->startup_profile)) {
    active_profile_ = settings->profiles->Find(settings->startup_profile);
  }
  settings_ = std::move(settings);
  Rebuild();
}

bool RoutingState::SetActiveProfile(const std::string& name) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<const ProfileRoute> p;
  if (!name.empty()) {
    if (settings_ == nullptr) return false;
    p = settings_->profiles->Find(name);
    if (p == nullptr) return false;
  }
  active_profile_ = std::move(p);
  Rebuild();
  return true;
}

std::shared_ptr<const Snapshot> RoutingState::Current() const {
  return std::atomic_load_explicit(&current_, std::memory_order_acquire);
}

void RoutingState::Rebuild() {
  auto s = std::make_shared<Snapshot>();
  s->routes_ = routes_;
  s->settings_ = settings_;
  s->active_profile_ = active_profile_;
  s->nodes_ = nodes_;
  uint64_t version = version_.load(std::memory_order_relaxed) + 1;
  s->version_ = version;
  std::atomic_store_explicit(&current_,
                             std::shared_ptr<const Snapshot>(std::move(s)),
                             std::memory_order_release);
  // After the pointer: a reader that sees this version finds its snapshot
  // (or a newer one).
  version_.store(version, std::memory_order_release);
  if (on_publish_) on_publish_(*Current());
}

}  // namespace modelplane::proxy::router
