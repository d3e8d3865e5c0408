#include "proxy/lease/manager_link.h"

#include <algorithm>
#include <deque>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace modelplane::proxy::lease {
namespace {

constexpr absl::Duration kRetry = absl::Milliseconds(200);
// The longest an /unload waits for the Watch to bring its stops.
constexpr absl::Duration kSeenBound = absl::Seconds(2);

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

// The broker's attempt number, from an ACQUIRE's request id (0: not one of
// ours, taken as the current attempt).
uint64_t AttemptOf(const std::string& request_id) {
  uint64_t n = 0;
  return absl::SimpleAtoi(request_id, &n) ? n : 0;
}

}  // namespace

ManagerLink::ManagerLink(LinkOptions options) : options_(std::move(options)) {
  options_.manager.max_reconnect_backoff = absl::Seconds(1);
  // A hung manager (SIGSTOP, a host gone without a reset) is given up
  // within about 3 s: its leases end and its models go to other nodes.
  options_.manager.keepalive_time = absl::Seconds(1);
  options_.manager.keepalive_timeout = absl::Seconds(2);
  client_ = std::make_unique<client::ManagerClient>(
      client::ManagerClient::Connect(options_.manager));
}

ManagerLink::~ManagerLink() { Shutdown(); }

void ManagerLink::Shutdown() {
  shutting_down_.store(true);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    acquire_up_.store(false);
    if (acquire_ != nullptr) acquire_->Cancel();
    if (watch_ != nullptr) watch_->Cancel();
    for (auto& weak : log_streams_) {
      if (auto h = weak.lock()) h->Cancel();
    }
    log_streams_.clear();
  }
  if (thread_.joinable()) thread_.join();
  // Wait for the cancelled calls to finish before freeing them.
  while (true) {
    absl::MutexLock lock(&mu_);
    bool a = acquire_ == nullptr || acquire_->done();
    bool w = watch_ == nullptr || watch_->done();
    if (a && w) break;
    mu_.AwaitWithTimeout(absl::Condition::kTrue, absl::Milliseconds(5));
  }
  {
    absl::MutexLock lock(&mu_);
    acquire_.reset();
    watch_.reset();
  }
  {
    absl::MutexLock lock(&seen_->mu);
    seen_->closed = true;
  }
  for (auto& fn : TakeSeen(0, true)) fn();  // Unloads still waiting.
}

void ManagerLink::Start(LeaseBroker* broker, ViewSink on_view) {
  broker_ = broker;
  on_view_ = std::move(on_view);
  thread_ = std::thread([this] { Run(); });
}

void ManagerLink::OnWatchEvent(const v1::WatchEvent& event) {
  switch (event.type()) {
    case v1::WatchEvent::TYPE_ADDED:
    case v1::WatchEvent::TYPE_MODIFIED:
      models_[event.model().id()] = event.model();
      break;
    case v1::WatchEvent::TYPE_DELETED:
      models_.erase(event.model().id());
      break;
    case v1::WatchEvent::TYPE_BOOKMARK:
      if (!synced_ && options_.log) {
        options_.log(absl::StrCat("connected to the model manager at ",
                                  options_.manager.target));
      }
      synced_ = true;
      break;
    case v1::WatchEvent::TYPE_SETTINGS:
      // In the stream's order: after the models of the reload that changed
      // them, before its bookmark (an older list never wins).
      settings_ = std::make_shared<v1::DataPlaneSettings>(event.settings());
      break;
    default:
      break;
  }
  // Before the first bookmark the view is partial: nothing is published
  // (the models and the settings of the snapshot arrive together).
  if (synced_ && on_view_) {
    std::vector<v1::Model> all;
    for (const auto& [id, m] : models_) all.push_back(m);
    on_view_(View{router::RouteTable::Build(all), settings_});
  }
  if (synced_) {
    for (auto& fn : TakeSeen(event.revision(), false)) fn();
  }
}

void ManagerLink::AfterSeen(const std::shared_ptr<Seen>& seen,
                            uint64_t revision, std::function<void()> fn) {
  {
    absl::MutexLock lock(&seen->mu);
    if (revision > seen->revision && !seen->closed) {
      seen->waiters.push_back(
          Seen::Waiter{revision, absl::Now() + kSeenBound, std::move(fn)});
      return;
    }
  }
  fn();
}

std::vector<std::function<void()>> ManagerLink::TakeSeen(uint64_t revision,
                                                         bool everyone) {
  std::vector<std::function<void()>> ready;
  absl::Time now = absl::Now();
  absl::MutexLock lock(&seen_->mu);
  if (everyone) {
    seen_->revision = 0;  // The next stream may be another history.
  } else {
    seen_->revision = std::max(seen_->revision, revision);
  }
  auto& waiters = seen_->waiters;
  for (auto it = waiters.begin(); it != waiters.end();) {
    if (everyone || it->revision <= seen_->revision || it->deadline <= now) {
      ready.push_back(std::move(it->fn));
      it = waiters.erase(it);
    } else {
      ++it;
    }
  }
  return ready;
}

void ManagerLink::Run() {
  while (true) {
    bool need_acquire, need_watch;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (acquire_ != nullptr && acquire_->done()) acquire_.reset();
      if (watch_ != nullptr && watch_->done()) watch_.reset();
      need_acquire = acquire_ == nullptr;
      need_watch = watch_ == nullptr;
    }
    // Calls start outside the lock: gRPC may run reactions inline.
    std::unique_ptr<client::AcquireStream> a;
    if (need_acquire) {
      LeaseBroker* b = broker_;
      a = client_->AcquireAsync(
          options_.client_id,
          {[b](const v1::AcquireResponse& r) {
             switch (r.kind_case()) {
               case v1::AcquireResponse::kGranted:
                 b->OnGranted(r.granted().model(), r.granted().lease_id(),
                              r.granted().upstream_url());
                 break;
               case v1::AcquireResponse::kRevoked:
                 b->OnRevoked(r.revoked().model(), r.revoked().lease_id());
                 break;
               case v1::AcquireResponse::kFailed:
                 b->OnFailed(r.failed().model(),
                             AttemptOf(r.failed().request_id()),
                             FailedStatus(r.failed()));
                 break;
               case v1::AcquireResponse::kStarting:
                 // The waiters' load wait begins (their queue wait ends).
                 b->OnStarting(r.starting().model());
                 break;
               default:  // QUEUED: the waiting requests just wait.
                 break;
             }
           },
           // The stream is marked ended before this runs: from then on
           // Connected() is false, so no request queues for this stream
           // after OnDisconnected answered the waiting ones.
           [this, b](const absl::Status& status) {
             acquire_up_.store(false);
             b->OnDisconnected();
             LogRefusal("Acquire", status);
           }});
    }
    std::unique_ptr<client::WatchStream> w;
    if (need_watch) {
      // The last stream is done: nothing else touches these now.
      models_.clear();
      settings_ = nullptr;
      synced_ = false;
      v1::WatchRequest request;
      request.set_include_settings(true);
      w = client_->WatchAsync(
          request,
          {[this](const v1::WatchEvent& e) { OnWatchEvent(e); },
           [this](const absl::Status& status) {
             LogRefusal("Watch", status);
             if (synced_ && on_view_ && !shutting_down_.load()) {
               on_view_(View{nullptr, nullptr, false});
             }
             // Unloads waiting for this stream's view answer now (after
             // the view says the manager is lost).
             for (auto& fn : TakeSeen(0, true)) fn();
             // Once per connection that had worked (not per failed retry).
             if (synced_ && options_.log && !shutting_down_.load()) {
               options_.log(absl::StrCat(
                   "lost the model manager at ", options_.manager.target, " (",
                   status.message().empty() ? "stream ended"
                                            : std::string(status.message()),
                   "): leases ended; its models go to other nodes that have "
                   "them, "
                   "or get 503, until it is back"));
             }
           }});
    }
    bool ended_while_up = false;
    {
      absl::MutexLock lock(&mu_);
      if (a != nullptr) {
        acquire_ = std::move(a);
        // Up, unless it ended already: its end stored false before this
        // store, or sets ended() before the check below (ended() is set
        // before the end's reaction runs), so a stream never stays up
        // ended.
        if (!acquire_->ended()) {
          acquire_up_.store(true);
          if (acquire_->ended()) {
            acquire_up_.store(false);
            // Its end may have answered the waiting requests before the
            // store above, and a request may have queued while it showed
            // up: they are answered below.
            ended_while_up = true;
          }
        }
      }
      if (w != nullptr) watch_ = std::move(w);
    }
    if (ended_while_up) broker_->OnDisconnected();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) {
        // Shutdown came while these started, too early to cancel them: it
        // would wait for them for ever (a SIGTERM right after the start).
        if (need_acquire && acquire_ != nullptr) acquire_->Cancel();
        if (need_watch && watch_ != nullptr) watch_->Cancel();
        return;
      }
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), kRetry);
    }
    // Unloads past their bound answer (a revision the stream never brings).
    for (auto& fn : TakeSeen(0, false)) fn();
  }
}

void ManagerLink::LogRefusal(const char* stream, const absl::Status& status) {
  // The manager answered but refused the stream (its stream limits, a
  // wrong token): said once per cause, not on every retry. An unreachable
  // manager is said when a working connection is lost.
  if (status.ok() || absl::IsUnavailable(status) || absl::IsCancelled(status) ||
      !options_.log || shutting_down_.load()) {
    return;
  }
  std::string cause = absl::StrCat(absl::StatusCodeToString(status.code()),
                                   ": ", status.message());
  {
    absl::MutexLock lock(&refusal_mu_);
    if (cause == last_refusal_) return;
    last_refusal_ = cause;
  }
  options_.log(absl::StrCat("the model manager at ", options_.manager.target,
                            " refused the ", stream, " stream (", cause,
                            "); retrying"));
}

void ManagerLink::Unload(
    const std::string& model,
    std::function<void(absl::StatusOr<std::vector<std::string>>)> done) {
  // Answered once the view holds the stops (their models' revisions):
  // llama-swap's /running right after its /unload lists none of them.
  // The callbacks hold the shared state, not the link: a Stop may answer
  // after the link is gone (its node retired, the proxy shut down).
  auto answer = [seen = seen_, done](std::vector<std::string> ids,
                                     uint64_t revision) {
    AfterSeen(seen, revision,
              [done, ids = std::move(ids)]() mutable { done(std::move(ids)); });
  };
  if (model.empty()) {
    client_->StopAllAsync(false, absl::Minutes(2),
                          [answer = std::move(answer), done = std::move(done)](
                              absl::StatusOr<v1::StopAllResponse> r) {
                            if (!r.ok()) return done(r.status());
                            std::vector<std::string> ids;
                            uint64_t revision = 0;
                            for (const v1::Model& m : r->models()) {
                              ids.push_back(m.id());
                              revision = std::max(revision, m.revision());
                            }
                            answer(std::move(ids), revision);
                          });
  } else {
    client_->StopAsync(model, false, absl::Minutes(2),
                       [answer = std::move(answer),
                        done = std::move(done)](absl::StatusOr<v1::Model> r) {
                         if (!r.ok()) return done(r.status());
                         answer(std::vector<std::string>{r->id()},
                                r->revision());
                       });
  }
}

void ManagerLink::PlanStart(
    const std::string& model, absl::Duration timeout,
    std::function<void(absl::StatusOr<v1::PlanStartResponse>)> done) {
  client_->PlanStartAsync(model, timeout, std::move(done));
}

void ManagerLink::Start(const std::string& model, absl::Duration timeout,
                        std::function<void(absl::StatusOr<v1::Model>)> done) {
  client_->StartAsync(model, timeout, std::move(done));
}

std::shared_ptr<client::CallHandle> ManagerLink::StreamLogs(
    const v1::StreamLogsRequest& request, client::LogStream::Handlers h) {
  absl::MutexLock lock(&mu_);
  if (stopping_) {
    if (h.on_end) h.on_end(absl::UnavailableError("the proxy is stopping"));
    return std::make_shared<client::CallHandle>();
  }
  std::shared_ptr<client::CallHandle> handle =
      client_->StreamLogsAsync(request, std::move(h));
  // Forget the ended ones as new ones come.
  log_streams_.erase(std::remove_if(log_streams_.begin(), log_streams_.end(),
                                    [](const auto& w) { return w.expired(); }),
                     log_streams_.end());
  log_streams_.push_back(handle);
  return handle;
}

bool ManagerLink::Connected() { return acquire_up_.load(); }

void ManagerLink::SendAcquire(const std::string& model, uint64_t attempt) {
  v1::AcquireRequest req;
  req.mutable_acquire()->set_model(model);
  req.mutable_acquire()->set_request_id(absl::StrCat(attempt));
  absl::MutexLock lock(&mu_);
  if (acquire_ != nullptr) acquire_->Send(std::move(req));
}

void ManagerLink::SendCancel(const std::string& model) {
  v1::AcquireRequest req;
  req.mutable_release()->set_model(model);
  req.mutable_release()->set_lease_id(0);  // Cancels the pending ACQUIREs.
  absl::MutexLock lock(&mu_);
  if (acquire_ != nullptr) acquire_->Send(std::move(req));
}

void ManagerLink::SendRelease(const std::string& model, uint64_t lease,
                              absl::Time last_used) {
  v1::AcquireRequest req;
  req.mutable_release()->set_model(model);
  req.mutable_release()->set_lease_id(lease);
  ToTimestamp(last_used == absl::Time() ? absl::Now() : last_used,
              req.mutable_release()->mutable_last_used());
  absl::MutexLock lock(&mu_);
  if (acquire_ != nullptr) acquire_->Send(std::move(req));
}

}  // namespace modelplane::proxy::lease
