#include "proxy/lease/manager_link.h"

#include <algorithm>
#include <deque>
#include <map>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace modelplane::proxy::lease {
namespace {

constexpr absl::Duration kRetry = absl::Milliseconds(200);

void ToTimestamp(absl::Time t, google::protobuf::Timestamp* out) {
  timespec ts = absl::ToTimespec(t);
  out->set_seconds(ts.tv_sec);
  out->set_nanos(static_cast<int32_t>(ts.tv_nsec));
}

// A FAILED answer as a status. A start that did not become ready within
// the model's healthCheckTimeout is DEADLINE_EXCEEDED (the proxy answers
// 504, "start timed out"); every other failure keeps the manager's code
// (FAILED_PRECONDITION: 503 with the failure in the message).
absl::Status FailedStatus(const v1::AcquireResponse::Failed& f) {
  if (f.code() == static_cast<int>(absl::StatusCode::kFailedPrecondition) &&
      f.failure().reason() == v1::FAILURE_REASON_HEALTH_CHECK_TIMEOUT) {
    return absl::DeadlineExceededError(f.message());
  }
  return absl::Status(static_cast<absl::StatusCode>(f.code()), f.message());
}

}  // namespace

// The Acquire stream. Not freed by itself: the link's thread deletes it once
// done() (gRPC no longer touches a reactor after OnDone returns).
class ManagerLink::AcquireCall
    : public grpc::ClientBidiReactor<v1::AcquireRequest, v1::AcquireResponse> {
 public:
  AcquireCall(ManagerLink* link) : link_(link), ctx_(link->Context()) {
    link->stub_->async()->Acquire(ctx_.get(), this);
    v1::AcquireRequest hello;
    hello.mutable_hello()->set_client_id(link->options_.client_id);
    Write(std::move(hello));
    StartRead(&response_);
    StartCall();
  }

  // Fully over: the link may free it (and the broker may go).
  bool done() const { return done_.load(); }
  // The stream ended: no lease holds any more (OnDone may still be running).
  bool ended() const { return ended_.load(); }
  void Cancel() { ctx_->TryCancel(); }

  void Write(v1::AcquireRequest req) {
    {
      absl::MutexLock lock(&mu_);
      if (ended_.load()) return;
      out_.push_back(std::move(req));
      if (writing_) return;
      writing_ = true;
      current_ = std::move(out_.front());
      out_.pop_front();
    }
    StartWrite(&current_);
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      if (!ok || out_.empty()) {
        writing_ = false;
        return;
      }
      current_ = std::move(out_.front());
      out_.pop_front();
    }
    StartWrite(&current_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows.
    LeaseBroker* b = link_->broker_;
    const v1::AcquireResponse& r = response_;
    switch (r.kind_case()) {
      case v1::AcquireResponse::kGranted:
        b->OnGranted(r.granted().model(), r.granted().lease_id(),
                     r.granted().upstream_url());
        break;
      case v1::AcquireResponse::kRevoked:
        b->OnRevoked(r.revoked().model(), r.revoked().lease_id());
        break;
      case v1::AcquireResponse::kFailed:
        b->OnFailed(r.failed().model(), FailedStatus(r.failed()));
        break;
      default:  // QUEUED, STARTING: the waiting requests just wait.
        break;
    }
    StartRead(&response_);
  }

  void OnDone(const grpc::Status&) override {
    // ended_ first: from now on Connected() is false, so no request queues
    // for this stream after OnDisconnected answered the waiting ones.
    LeaseBroker* broker = link_->broker_;
    ended_.store(true);
    broker->OnDisconnected();
    // Last: Shutdown waits for it before the broker is destroyed (a SIGTERM
    // while the stream ends), and the link's thread frees `this` after it.
    done_.store(true);
  }

 private:
  ManagerLink* link_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  v1::AcquireResponse response_;
  absl::Mutex mu_;
  std::deque<v1::AcquireRequest> out_ ABSL_GUARDED_BY(mu_);
  v1::AcquireRequest current_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> ended_{false};
  std::atomic<bool> done_{false};
};

// The Watch stream: keeps every model's latest state and publishes a new
// route table after the initial snapshot and after every change.
class ManagerLink::WatchCall : public grpc::ClientReadReactor<v1::WatchEvent> {
 public:
  WatchCall(ManagerLink* link) : link_(link), ctx_(link->Context()) {
    link->stub_->async()->Watch(ctx_.get(), &request_, this);
    StartRead(&event_);
    StartCall();
  }

  bool done() const { return done_.load(); }
  void Cancel() { ctx_->TryCancel(); }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    switch (event_.type()) {
      case v1::WatchEvent::TYPE_ADDED:
      case v1::WatchEvent::TYPE_MODIFIED:
        models_[event_.model().id()] = event_.model();
        break;
      case v1::WatchEvent::TYPE_DELETED:
        models_.erase(event_.model().id());
        break;
      case v1::WatchEvent::TYPE_BOOKMARK:
        if (!synced_ && link_->options_.log) {
          link_->options_.log(absl::StrCat("connected to the model manager at ",
                                           link_->options_.target));
        }
        synced_ = true;
        link_->FetchKeys();  // Settings outside the models may have moved.
        break;
      default:
        break;
    }
    if (synced_ && link_->on_routes_) {
      std::vector<v1::Model> all;
      for (const auto& [id, m] : models_) all.push_back(m);
      link_->on_routes_(router::RouteTable::Build(all));
    }
    StartRead(&event_);
  }

  void OnDone(const grpc::Status& status) override {
    // Once per connection that had worked (not per failed retry). Before
    // done_: the link's thread may free `this` after it.
    if (synced_ && link_->options_.log && !link_->shutting_down_.load()) {
      link_->options_.log(absl::StrCat(
          "lost the model manager at ", link_->options_.target, " (",
          status.error_message().empty() ? "stream ended"
                                         : status.error_message(),
          "): leases ended, requests get 503 until it is back"));
    }
    done_.store(true);
  }

 private:
  ManagerLink* link_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  v1::WatchRequest request_;
  v1::WatchEvent event_;
  std::map<std::string, v1::Model> models_;  // gRPC reads are sequential.
  bool synced_ = false;
  std::atomic<bool> done_{false};
};

ManagerLink::ManagerLink(LinkOptions options) : options_(std::move(options)) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  channel_ = grpc::CreateCustomChannel(options_.target,
                                       options_.credentials != nullptr
                                           ? options_.credentials
                                           : grpc::InsecureChannelCredentials(),
                                       args);
  stub_ = v1::ModelManager::NewStub(channel_);
}

ManagerLink::~ManagerLink() { Shutdown(); }

void ManagerLink::Shutdown() {
  shutting_down_.store(true);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (acquire_ != nullptr) acquire_->Cancel();
    if (watch_ != nullptr) watch_->Cancel();
    for (grpc::ClientContext* ctx : key_calls_) ctx->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
  // Wait for the cancelled calls to finish before freeing them.
  while (true) {
    absl::MutexLock lock(&mu_);
    bool a = acquire_ == nullptr || acquire_->done();
    bool w = watch_ == nullptr || watch_->done();
    if (a && w && key_calls_.empty()) break;
    mu_.AwaitWithTimeout(absl::Condition::kTrue, absl::Milliseconds(5));
  }
  absl::MutexLock lock(&mu_);
  delete acquire_;
  delete watch_;
  acquire_ = nullptr;
  watch_ = nullptr;
}

std::unique_ptr<grpc::ClientContext> ManagerLink::Context() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!options_.token.empty()) {
    ctx->AddMetadata("authorization", "Bearer " + options_.token);
  }
  return ctx;
}

void ManagerLink::Start(LeaseBroker* broker, RoutesSink on_routes,
                        KeysSink on_keys) {
  broker_ = broker;
  on_routes_ = std::move(on_routes);
  on_keys_ = std::move(on_keys);
  thread_ = std::thread([this] { Run(); });
}

void ManagerLink::Run() {
  while (true) {
    bool need_acquire, need_watch, fetch_keys;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      fetch_keys = keys_retry_;
      keys_retry_ = false;
      if (acquire_ != nullptr && acquire_->done()) {
        delete acquire_;
        acquire_ = nullptr;
      }
      if (watch_ != nullptr && watch_->done()) {
        delete watch_;
        watch_ = nullptr;
      }
      need_acquire = acquire_ == nullptr;
      need_watch = watch_ == nullptr;
    }
    // Calls start outside the lock: gRPC may run reactions inline.
    AcquireCall* a = need_acquire ? new AcquireCall(this) : nullptr;
    WatchCall* w = need_watch ? new WatchCall(this) : nullptr;
    if (fetch_keys) FetchKeys();
    {
      absl::MutexLock lock(&mu_);
      if (a != nullptr) acquire_ = a;
      if (w != nullptr) watch_ = w;
      if (stopping_) {
        // Shutdown came while these started, too early to cancel them: it
        // would wait for them for ever (a SIGTERM right after the start).
        if (a != nullptr) a->Cancel();
        if (w != nullptr) w->Cancel();
        return;
      }
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), kRetry);
    }
  }
}

void ManagerLink::Unload(
    const std::string& model,
    std::function<void(absl::StatusOr<std::vector<std::string>>)> done) {
  struct Call {
    std::unique_ptr<grpc::ClientContext> ctx;
    v1::StopRequest stop;
    v1::Model stopped;
    v1::StopAllRequest stop_all;
    v1::StopAllResponse all;
  };
  auto* call = new Call{Context(), {}, {}, {}, {}};
  call->ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(2)));
  auto finish = [call, done = std::move(done)](grpc::Status s) {
    std::unique_ptr<Call> owned(call);
    if (!s.ok()) {
      done(absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        s.error_message()));
      return;
    }
    std::vector<std::string> ids;
    if (owned->stop.model().empty()) {
      for (const v1::Model& m : owned->all.models()) ids.push_back(m.id());
    } else {
      ids.push_back(owned->stopped.id());
    }
    done(std::move(ids));
  };
  if (model.empty()) {
    stub_->async()->StopAll(call->ctx.get(), &call->stop_all, &call->all,
                            std::move(finish));
  } else {
    call->stop.set_model(model);
    stub_->async()->Stop(call->ctx.get(), &call->stop, &call->stopped,
                         std::move(finish));
  }
}

void ManagerLink::FetchKeys() {
  if (!on_keys_) return;
  struct Call {
    std::unique_ptr<grpc::ClientContext> ctx;
    v1::ListModelsRequest req;
    v1::ListModelsResponse resp;
  };
  auto* call = new Call{Context(), {}, {}};
  call->ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  uint64_t number;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      delete call;
      return;
    }
    key_calls_.push_back(call->ctx.get());
    number = ++keys_started_;
  }
  stub_->async()->ListModels(
      call->ctx.get(), &call->req, &call->resp,
      [this, call, number](grpc::Status s) {
        std::unique_ptr<Call> owned(call);
        if (s.ok()) {
          // Checked and applied under one lock: two replies on two gRPC
          // threads apply in call order or not at all.
          absl::MutexLock lock(&keys_mu_);
          if (number > keys_applied_) {
            keys_applied_ = number;
            on_keys_(Globals{
                std::vector<std::string>(owned->resp.api_key_sha256().begin(),
                                         owned->resp.api_key_sha256().end()),
                owned->resp.include_aliases_in_list(),
                std::vector<std::string>(
                    owned->resp.upstream_ignore_paths().begin(),
                    owned->resp.upstream_ignore_paths().end()),
                std::vector<v1::Peer>(owned->resp.peers().begin(),
                                      owned->resp.peers().end()),
                std::vector<v1::Selector>(owned->resp.selectors().begin(),
                                          owned->resp.selectors().end()),
                std::vector<v1::Profile>(owned->resp.profiles().begin(),
                                         owned->resp.profiles().end())});
          }
        }
        absl::MutexLock lock(&mu_);
        key_calls_.erase(
            std::find(key_calls_.begin(), key_calls_.end(), owned->ctx.get()));
        // Until the proxy knows the keys it serves nothing: try again soon.
        if (!s.ok()) keys_retry_ = true;
      });
}

bool ManagerLink::Connected() {
  absl::MutexLock lock(&mu_);
  return acquire_ != nullptr && !acquire_->ended();
}

void ManagerLink::SendAcquire(const std::string& model) {
  v1::AcquireRequest req;
  req.mutable_acquire()->set_model(model);
  req.mutable_acquire()->set_request_id(model);
  absl::MutexLock lock(&mu_);
  if (acquire_ != nullptr) acquire_->Write(std::move(req));
}

void ManagerLink::SendRelease(const std::string& model, uint64_t lease,
                              absl::Time last_used) {
  v1::AcquireRequest req;
  req.mutable_release()->set_model(model);
  req.mutable_release()->set_lease_id(lease);
  ToTimestamp(last_used == absl::Time() ? absl::Now() : last_used,
              req.mutable_release()->mutable_last_used());
  absl::MutexLock lock(&mu_);
  if (acquire_ != nullptr) acquire_->Write(std::move(req));
}

}  // namespace modelplane::proxy::lease
