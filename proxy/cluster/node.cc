#include "proxy/cluster/node.h"

#include <algorithm>
#include <utility>

namespace modelplane::proxy::cluster {

Node::Node(std::string name, lease::LinkOptions link,
           lease::LeaseBroker::After after)
    : name_(std::move(name)),
      link_(std::make_unique<lease::ManagerLink>(std::move(link))),
      transport_(link_.get()),
      broker_(std::make_unique<lease::LeaseBroker>(
          transport_, Guarded(guard_, std::move(after)))) {}

Node::Node(std::string name, lease::LeaseTransport* transport,
           lease::LeaseBroker::After after)
    : name_(std::move(name)),
      transport_(transport),
      broker_(std::make_unique<lease::LeaseBroker>(
          transport_, Guarded(guard_, std::move(after)))) {}

Node::~Node() {
  Retire();
  absl::MutexLock lock(&guard_->mu);
  guard_->alive = false;
}

lease::LeaseBroker::After Node::Guarded(std::shared_ptr<TimerGuard> guard,
                                        lease::LeaseBroker::After after) {
  return [guard = std::move(guard), after = std::move(after)](
             absl::Duration delay, std::function<void()> fn) {
    after(delay, [guard, fn = std::move(fn)] {
      absl::MutexLock lock(&guard->mu);
      if (guard->alive) fn();
    });
  };
}

void Node::Start(lease::ManagerLink::ViewSink on_view) {
  if (link_ != nullptr) link_->Start(broker_.get(), std::move(on_view));
}

void Node::Retire() {
  retired_.store(true, std::memory_order_release);
  // Ending the streams answers the broker's waiters (OnDisconnected).
  if (link_ != nullptr) link_->Shutdown();
}

NodeSet::NodeSet(std::vector<std::shared_ptr<Node>> nodes)
    : nodes_(std::move(nodes)) {
  std::sort(nodes_.begin(), nodes_.end(),
            [](const auto& a, const auto& b) { return a->name() < b->name(); });
  for (size_t i = 0; i < nodes_.size(); ++i) {
    by_name_.emplace(nodes_[i]->name(), i);
  }
}

Node* NodeSet::Find(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : nodes_[it->second].get();
}

std::shared_ptr<Node> NodeSet::Share(absl::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : nodes_[it->second];
}

}  // namespace modelplane::proxy::cluster
