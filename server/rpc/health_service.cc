#include "server/rpc/health_service.h"

#include <optional>
#include <utility>
#include <vector>

#include "server/rpc/pull_write_reactor.h"
#include "server/rpc/status_mapping.h"

namespace modelplane::rpc {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch: the watched service's status, sent again whenever it changed
// (a status that flips and flips back while a write is in flight is sent
// once, as it is now).
class HealthService::WatchReactor
    : public PullWriteReactor<HealthCheckResponse> {
 public:
  WatchReactor(HealthService* service, std::string name, grpc::Status admit,
               std::unique_ptr<StreamLimits::Slot> slot)
      : service_(service), name_(std::move(name)) {
    Hold(std::move(slot));
    if (!admit.ok()) {
      FinishOnce(admit);
      return;
    }
    subscription_ = service_->Subscribe(name_, Waker());
    subscribed_ = true;
    Pump();
  }

 private:
  bool Next(HealthCheckResponse* msg, std::optional<grpc::Status>*) override {
    Status now = service_->StatusOf(name_);
    if (sent_ && now == last_) return false;
    sent_ = true;
    last_ = now;
    msg->set_status(now);
    return true;
  }

  void Closed() override {
    if (subscribed_) service_->Unsubscribe(subscription_);
  }

  HealthService* service_;
  std::string name_;
  Watchers::iterator subscription_;
  bool subscribed_ = false;
  bool sent_ ABSL_GUARDED_BY(mu_) = false;
  Status last_ ABSL_GUARDED_BY(mu_) = HealthCheckResponse::UNKNOWN;
};

void HealthService::Set(const std::string& service, bool serving) {
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    serving_[service] = serving;
    auto [from, to] = watchers_.equal_range(service);
    for (auto it = from; it != to; ++it) wake.push_back(it->second);
  }
  // Outside the lock: a waker pumps its reactor, which asks StatusOf.
  for (auto& w : wake) w();
}

void HealthService::Shutdown() {
  std::vector<std::function<void()>> wake;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    for (auto& [name, serving] : serving_) serving = false;
    for (auto& [name, w] : watchers_) wake.push_back(w);
  }
  for (auto& w : wake) w();
}

HealthService::Status HealthService::StatusOf(const std::string& service) {
  absl::MutexLock lock(&mu_);
  auto it = serving_.find(service);
  if (it == serving_.end()) return HealthCheckResponse::SERVICE_UNKNOWN;
  return it->second ? HealthCheckResponse::SERVING
                    : HealthCheckResponse::NOT_SERVING;
}

HealthService::Watchers::iterator HealthService::Subscribe(
    const std::string& service, std::function<void()> wake) {
  absl::MutexLock lock(&mu_);
  return watchers_.emplace(service, std::move(wake));
}

void HealthService::Unsubscribe(Watchers::iterator it) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(it);
}

namespace {

// Names are "" and "model/<id>": a longer one is refused, never echoed
// (a megabyte name in grpc-message would break the client's connection).
constexpr size_t kMaxServiceName = 1024;

grpc::Status TooLong() {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "the service name is longer than 1024 bytes");
}

}  // namespace

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* ctx,
                                               const HealthCheckRequest* req,
                                               HealthCheckResponse* resp) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  if (req->service().size() > kMaxServiceName) {
    r->Finish(TooLong());
    return r;
  }
  Status s = StatusOf(req->service());
  if (s == HealthCheckResponse::SERVICE_UNKNOWN) {
    r->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                           "unknown service: " + req->service()));
    return r;
  }
  resp->set_status(s);
  r->Finish(grpc::Status::OK);
  return r;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext* ctx, const HealthCheckRequest* req) {
  grpc::Status admit = grpc::Status::OK;
  std::unique_ptr<StreamLimits::Slot> slot;
  if (req->service().size() > kMaxServiceName) {
    admit = TooLong();
  } else if (limits_ != nullptr) {
    absl::StatusOr<std::unique_ptr<StreamLimits::Slot>> s =
        limits_->Open(ctx->peer(), "Health.Watch");
    if (s.ok()) {
      slot = *std::move(s);
    } else {
      admit = ToGrpc(s.status());
    }
  }
  return new WatchReactor(this, req->service(), admit, std::move(slot));
}

}  // namespace modelplane::rpc
