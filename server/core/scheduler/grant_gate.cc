#include "server/core/scheduler/grant_gate.h"

#include <utility>

namespace modelplane::scheduler {

std::optional<GrantGate::Grant> GrantGate::TryAcquire(ClientId client,
                                                      const std::string& name,
                                                      absl::Time now) {
  absl::MutexLock lock(&mu_);
  if (config_ == nullptr || clients_.count(client) == 0) return std::nullopt;
  const config::ModelConfig* m = config_->FindModel(name);
  if (m == nullptr) return std::nullopt;
  auto open = open_.find(m->id);
  if (open == open_.end()) return std::nullopt;
  std::map<ClientId, LeaseId>& holders = holders_[m->id];
  if (holders.count(client) > 0) return std::nullopt;  // The loop answers.
  LeaseId lease = next_lease_++;
  holders[client] = lease;
  ops_.push_back(Op{Op::Kind::kGrant, client, m->id, lease, now});
  return Grant{m->id, open->second, lease};  // Absorbed lazily.
}

bool GrantGate::TryRelease(ClientId client, const std::string& name,
                           LeaseId lease, absl::Time last_used) {
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    if (config_ == nullptr || clients_.count(client) == 0) return false;
    const config::ModelConfig* m = config_->FindModel(name);
    if (m == nullptr) return false;
    auto holders = holders_.find(m->id);
    if (holders == holders_.end()) return false;
    auto held = holders->second.find(client);
    if (held == holders->second.end() || held->second != lease) return false;
    holders->second.erase(held);
    ops_.push_back(Op{Op::Kind::kRelease, client, m->id, lease, last_used});
    bool awaited = open_.count(m->id) == 0 || demand_waiting_;
    wake = awaited && !wake_pending_;
    if (wake) wake_pending_ = true;
  }
  WakeIfNeeded(wake);
  return true;
}

void GrantGate::WakeIfNeeded(bool wake) {
  if (wake && wake_) wake_();
}

void GrantGate::AddClient(ClientId client) {
  absl::MutexLock lock(&mu_);
  clients_.insert(client);
}

std::vector<GrantGate::Op> GrantGate::RemoveClient(ClientId client) {
  absl::MutexLock lock(&mu_);
  clients_.erase(client);
  // Its ops go to the scheduler, which then releases all its leases.
  for (auto& [model, holders] : holders_) holders.erase(client);
  return TakeOpsLocked();
}

std::vector<GrantGate::Op> GrantGate::TakeOps() {
  absl::MutexLock lock(&mu_);
  return TakeOpsLocked();
}

std::vector<GrantGate::Op> GrantGate::TakeOpsLocked() {
  std::vector<Op> ops;
  ops.swap(ops_);
  wake_pending_ = false;
  return ops;
}

std::vector<GrantGate::Op> GrantGate::Close(const std::string& model) {
  absl::MutexLock lock(&mu_);
  open_.erase(model);
  return TakeOpsLocked();
}

std::vector<GrantGate::Op> GrantGate::CloseAll() {
  absl::MutexLock lock(&mu_);
  open_.clear();
  return TakeOpsLocked();
}

void GrantGate::Publish(std::shared_ptr<const config::Config> config,
                        std::map<std::string, std::string> open,
                        bool demand_waiting) {
  absl::MutexLock lock(&mu_);
  config_ = std::move(config);
  open_ = std::move(open);
  demand_waiting_ = demand_waiting;
}

std::pair<LeaseId, bool> GrantGate::ClaimLease(const std::string& model,
                                               ClientId client,
                                               LeaseId replaced) {
  absl::MutexLock lock(&mu_);
  std::map<ClientId, LeaseId>& holders = holders_[model];
  auto held = holders.find(client);
  if (held != holders.end() && held->second != replaced) {
    return {held->second, false};
  }
  LeaseId lease = next_lease_++;
  holders[client] = lease;
  return {lease, true};
}

void GrantGate::EraseHolder(const std::string& model, ClientId client,
                            LeaseId lease) {
  absl::MutexLock lock(&mu_);
  auto holders = holders_.find(model);
  if (holders == holders_.end()) return;
  auto held = holders->second.find(client);
  if (held != holders->second.end() && held->second == lease) {
    holders->second.erase(held);
  }
  if (holders->second.empty()) holders_.erase(holders);
}

}  // namespace modelplane::scheduler
