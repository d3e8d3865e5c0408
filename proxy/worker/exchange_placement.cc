// Exchange, where a model's request goes: its node (cluster/placement.h),
// the lease there, and placing it again on another node when it failed
// before it was sent.
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/json_string.h"
#include "common/loop_thread.h"
#include "proxy/worker/exchange.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

void Exchange::Place() {
  Placed(worker_->context().cluster().PlaceKnown(*routing_, *req_.route,
                                                 req_.tried));
}

void Exchange::Placed(absl::StatusOr<cluster::Placement> placed) {
  if (!placed.ok()) {
    req_.record.lease_error = absl::StatusCodeToString(placed.status().code());
    return RespondError(503, std::string(placed.status().message()));
  }
  if (placed->node != nullptr) return AdmitOn(*std::move(placed));
  // A cold start several nodes could make: each says what it would cost.
  LoopThread* loop = &worker_->loop();
  std::weak_ptr<bool> alive = alive_;
  uint64_t generation = generation_;
  worker_->context().cluster().PlaceCold(
      routing_, *req_.route, req_.tried,
      placed->reason == cluster::Reason::kSpillover,
      [loop](std::function<void()> fn) { loop->Post(std::move(fn)); },
      [this, alive, generation](absl::StatusOr<cluster::Placement> placed) {
        auto a = alive.lock();
        if (a == nullptr || !*a || generation != generation_) return;
        // PlaceCold names a node or says why none; never ask twice.
        if (placed.ok() && placed->node == nullptr) {
          placed = absl::UnavailableError("no node could be chosen");
        }
        Placed(std::move(placed));
      });
}

void Exchange::AdmitOn(cluster::Placement placed) {
  if (!req_.tried.empty()) placed.reason = cluster::Reason::kFailover;
  req_.record.placement = cluster::ReasonName(placed.reason);
  node_ = std::move(placed.node);
  req_.record.node = node_->name();
  std::string id = req_.route->id;
  int limit = req_.route->concurrency_limit;
  LoopThread* loop = &worker_->loop();
  std::weak_ptr<bool> alive = alive_;
  uint64_t generation = generation_;
  // An inline answer may finish this request and start a pipelined one
  // before Admit returns: its ticket must not be overwritten.
  uint64_t ticket = node_->broker().Admit(
      id, limit,
      [loop](std::function<void()> fn) { loop->Post(std::move(fn)); },
      [this, alive, generation, id,
       node = node_](absl::StatusOr<lease::Lease> lease) {
        auto a = alive.lock();
        if (a == nullptr || !*a || generation != generation_) {
          // The client left meanwhile.
          if (lease.ok()) node->broker().Finish(id);
          return;
        }
        OnLease(std::move(lease));
      });
  if (generation == generation_ && ticket != 0) {
    ticket_ = ticket;
    waiting_for_ = id;
  }
}

bool Exchange::PlaceAgain() {
  if (node_ == nullptr || req_.route == nullptr) return false;
  std::vector<std::string> tried = req_.tried;
  tried.push_back(node_->name());
  // By the nodes as they are now (the request may have waited long: nodes
  // joined or left meanwhile), the model's route looked up again.
  std::shared_ptr<const router::Snapshot> now = worker_->routing();
  const router::Route* route = now->routes().Find(req_.route->id);
  if (route == nullptr) return false;
  absl::StatusOr<cluster::Placement> placed =
      worker_->context().cluster().PlaceKnown(*now, *route, tried);
  if (!placed.ok()) return false;
  routing_ = std::move(now);
  req_.route = route;
  req_.tried = std::move(tried);
  node_.reset();
  Placed(*std::move(placed));
  return true;
}

void Exchange::OnLease(absl::StatusOr<lease::Lease> lease) {
  waiting_for_.clear();
  // Its node was lost, or is draining and refused the start: not sent
  // upstream, so another node may take it.
  if (!lease.ok() && absl::IsUnavailable(lease.status()) && PlaceAgain()) {
    return;
  }
  if (req_.loading) {
    req_.loading = false;
    StopLoadingTimer();
  }
  req_.record.lease_wait =
      absl::Nanoseconds(static_cast<int64_t>(uv_hrtime() - req_.admit_ns));
  if (lease.ok() && lease->loading > absl::ZeroDuration()) {
    req_.record.load_wait = std::min(lease->loading, *req_.record.lease_wait);
  }
  if (!lease.ok()) {
    const absl::Status& s = lease.status();
    req_.record.lease_error = absl::StatusCodeToString(s.code());
    switch (s.code()) {
      case absl::StatusCode::kResourceExhausted:
        return Respond(
            429, "application/json",
            absl::StrCat(R"({"error":{"message":)", JsonString(s.message()),
                         R"(,"type":"rate_limit_error","code":429}})"),
            {{"Retry-After", "1"}});
      case absl::StatusCode::kNotFound:
        return RespondError(404, std::string(s.message()));
      case absl::StatusCode::kDeadlineExceeded:
        return RespondError(504, std::string(s.message()));
      default:
        return RespondError(503, std::string(s.message()));
    }
  }
  if (req_.loading_state && req_.loading_head_sent) {
    // The model's own stream follows in the same body.
    SendLoadingState(absl::StrFormat(
        " done (%.1fs)\n\n",
        static_cast<double>(uv_hrtime() - req_.admit_ns) / 1e9));
  }
  leased_model_ = lease->model;
  SendUpstream(lease->upstream, "");
}

}  // namespace modelplane::proxy
