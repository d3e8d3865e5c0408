#include "server/rpc/acquire_reactor.h"

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "server/rpc/convert.h"
#include "server/rpc/status_mapping.h"

namespace modelplane::rpc {
namespace {

using Bidi = grpc::ServerBidiReactor<v1::AcquireRequest, v1::AcquireResponse>;

// A field of `req` longer than the API allows, named, or nullopt.
std::optional<std::string> Oversized(const v1::AcquireRequest& req) {
  auto check = [](const std::string& value, const char* field,
                  size_t max) -> std::optional<std::string> {
    if (value.size() <= max) return std::nullopt;
    return absl::StrCat(field, " is ", value.size(), " bytes, over ", max);
  };
  std::optional<std::string> r;
  if (req.has_hello()) {
    r = check(req.hello().client_id(), "hello.client_id", kMaxClientIdBytes);
  } else if (req.has_acquire()) {
    r = check(req.acquire().model(), "acquire.model", kMaxModelNameBytes);
    if (!r) {
      r = check(req.acquire().request_id(), "acquire.request_id",
                kMaxRequestIdBytes);
    }
  } else if (req.has_release()) {
    r = check(req.release().model(), "release.model", kMaxModelNameBytes);
  }
  return r;
}

class AcquireReactor : public Bidi, public scheduler::LeaseClient {
 public:
  AcquireReactor(Manager* manager, grpc::CallbackServerContext* ctx,
                 grpc::Status admit, std::unique_ptr<StreamLimits::Slot> slot)
      : manager_(manager), peer_(ctx->peer()), slot_(std::move(slot)) {
    if (!admit.ok()) {
      finished_ = true;
      Finish(admit);
      return;
    }
    Post([this] {
      client_ = manager_->scheduler().Connect(this, peer_);
      fast_client_.store(client_);
    });
    StartRead(&request_);
  }

  // --- gRPC reactions (gRPC threads) ---

  void OnReadDone(bool ok) override {
    if (!ok) {  // Half-close, cancellation or a broken connection.
      FinishOnce(grpc::Status::OK);
      return;
    }
    v1::AcquireRequest req = request_;
    bool first = !seen_first_;
    seen_first_ = true;
    if (req.kind_case() == v1::AcquireRequest::KIND_NOT_SET ||
        (req.has_hello() && !first)) {
      FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              req.has_hello() ? "HELLO must come first"
                                              : "a message with no kind"));
      return;
    }
    // Names the manager keeps (the client id in every lease it holds, a
    // request id with every waiting ACQUIRE) are bounded: else one client's
    // megabyte ids, copied into every event of the Watch history, would
    // take the manager's memory.
    if (std::optional<std::string> too_long = Oversized(req)) {
      FinishOnce(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, *too_long));
      return;
    }
    if (!TryFast(req)) {
      if (req.has_hello()) fast_client_.store(0);  // Until reconnected.
      Post([this, req = std::move(req)] { Handle(req); });
    }
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> deferred;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      deferred.swap(deferred_finish_);
    }
    if (deferred) {
      Finish(std::move(*deferred));
      return;
    }
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "client gone"));
      return;
    }
    WriteNext();
  }

  void OnCancel() override {
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    // Release the leases on the loop, then free: the scheduler holds a
    // pointer to us until Disconnect.
    manager_->loop().Post([this] {
      if (client_ != 0) manager_->scheduler().Disconnect(client_);
      delete this;
    });
  }

  // --- LeaseClient (the loop thread) ---

  void OnQueued(const std::string& model, const std::string& request_id,
                int position) override {
    v1::AcquireResponse r;
    r.mutable_queued()->set_model(model);
    r.mutable_queued()->set_request_id(request_id);
    r.mutable_queued()->set_position(static_cast<uint32_t>(position));
    Send(std::move(r));
  }
  void OnStarting(const std::string& model,
                  const std::string& request_id) override {
    v1::AcquireResponse r;
    r.mutable_starting()->set_model(model);
    r.mutable_starting()->set_request_id(request_id);
    Send(std::move(r));
  }
  void OnGranted(const std::string& model, const std::string& request_id,
                 scheduler::LeaseId lease,
                 const std::string& upstream) override {
    Send(Granted(model, request_id, lease, upstream,
                 manager_->hub().revision()));
  }
  void OnRevoked(const std::string& model, scheduler::LeaseId lease,
                 const std::string& reason) override {
    v1::AcquireResponse r;
    r.mutable_revoked()->set_model(model);
    r.mutable_revoked()->set_lease_id(lease);
    r.mutable_revoked()->set_reason(reason);
    Send(std::move(r));
  }
  void OnFailed(const std::string& model, const std::string& request_id,
                const absl::Status& status,
                const actor::Failure* failure) override {
    v1::AcquireResponse r;
    v1::AcquireResponse::Failed* f = r.mutable_failed();
    f->set_model(model);
    f->set_request_id(request_id);
    f->set_code(static_cast<int32_t>(status.code()));
    f->set_message(std::string(status.message()));
    if (failure != nullptr) ToProto(*failure, f->mutable_failure());
    Send(std::move(r));
  }
  void OnCutOff(const std::string& reason) override {
    client_ = 0;  // The scheduler already forgot us.
    fast_client_.store(0);
    FinishOnce(grpc::Status(grpc::StatusCode::ABORTED, reason));
  }

 private:
  // Runs `fn` on the loop; counted, so the reader knows whether messages
  // of this stream still wait there.
  void Post(std::function<void()> fn) {
    posted_.fetch_add(1);
    manager_->loop().Post([this, fn = std::move(fn)] {
      fn();
      posted_.fetch_sub(1);
    });
  }

  // An ACQUIRE of a READY model, or the RELEASE of a lease the gate knows,
  // answered here on the reading thread (scheduler/grant_gate.h) — only
  // when nothing of this stream waits on the loop, so the stream's messages
  // still take effect in order.
  bool TryFast(const v1::AcquireRequest& req) {
    scheduler::ClientId client = fast_client_.load();
    if (client == 0 || posted_.load() != 0) return false;
    scheduler::GrantGate& gate = manager_->scheduler().gate();
    if (req.has_acquire()) {
      bool queued;
      {
        // GRANTED is queued before the lock is let go: the loop may absorb
        // the grant and revoke it at once, and its REVOKED (queued under
        // this lock too) must follow the GRANTED on the stream.
        absl::MutexLock lock(&mu_);
        if (finished_) return false;
        std::optional<scheduler::GrantGate::Grant> g =
            gate.TryAcquire(client, req.acquire().model(), absl::Now());
        if (!g) return false;
        // The revision read after the grant: at or after the model's (the
        // hub's lock is a leaf: it calls nothing). On overflow the lease
        // goes with the stream.
        queued =
            QueueLocked(Granted(g->model, req.acquire().request_id(), g->lease,
                                g->upstream, manager_->hub().revision()));
      }
      WriteOrEnd(queued);
      return true;
    }
    if (req.has_release() && req.release().lease_id() != 0) {
      return gate.TryRelease(
          client, req.release().model(), req.release().lease_id(),
          req.release().has_last_used() ? FromProto(req.release().last_used())
                                        : absl::Now());
    }
    return false;
  }

  void Handle(const v1::AcquireRequest& req) {
    if (client_ == 0) return;  // Cut off.
    scheduler::Scheduler& s = manager_->scheduler();
    switch (req.kind_case()) {
      case v1::AcquireRequest::kHello:
        // The name shows in Model.lease_holders; reconnect under it.
        s.Disconnect(client_);
        client_ = s.Connect(this, req.hello().client_id().empty()
                                      ? peer_
                                      : req.hello().client_id());
        fast_client_.store(client_);
        break;
      case v1::AcquireRequest::kAcquire:
        s.Acquire(client_, req.acquire().model(), req.acquire().priority(),
                  req.acquire().request_id());
        break;
      case v1::AcquireRequest::kRelease:
        s.Release(client_, req.release().model(), req.release().lease_id(),
                  req.release().has_last_used()
                      ? FromProto(req.release().last_used())
                      : absl::Now());
        break;
      default:
        break;
    }
  }

  v1::AcquireResponse Granted(const std::string& model,
                              const std::string& request_id,
                              scheduler::LeaseId lease,
                              const std::string& upstream, uint64_t revision) {
    v1::AcquireResponse r;
    v1::AcquireResponse::Granted* g = r.mutable_granted();
    g->set_model(model);
    g->set_request_id(request_id);
    g->set_lease_id(lease);
    g->set_upstream_url(upstream);
    g->set_revision(revision);
    return r;
  }

  void Send(v1::AcquireResponse r) {
    bool queued;
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      queued = QueueLocked(std::move(r));
    }
    WriteOrEnd(queued);
  }

  // Queues `r`; false when the client already left too much unread.
  bool QueueLocked(v1::AcquireResponse r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (out_.size() >= kMaxQueuedResponses) return false;
    out_.push_back(std::move(r));
    return true;
  }

  // After QueueLocked, outside mu_: write, or end the stream that overflowed.
  void WriteOrEnd(bool queued) {
    if (!queued) {
      FinishOnce(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "the client did not read its stream"));
      return;
    }
    WriteNext();
  }

  void WriteNext() {
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_ || out_.empty()) return;
      writing_ = true;
      current_ = std::move(out_.front());
      out_.pop_front();
    }
    StartWrite(&current_);
  }

  // Finishes the stream, once: at once, or, with a write in flight, when
  // it is done (gRPC takes one write or finish in flight at a time).
  void FinishOnce(grpc::Status s) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
      if (writing_) {
        deferred_finish_ = std::move(s);
        return;
      }
    }
    Finish(std::move(s));
  }

  Manager* manager_;
  std::string peer_;
  // Its place under the stream limits, given back when it is freed.
  std::unique_ptr<StreamLimits::Slot> slot_;
  scheduler::ClientId client_ = 0;  // Loop thread.
  // client_ as the reading thread may use it for the gate (0: not now).
  std::atomic<scheduler::ClientId> fast_client_{0};
  std::atomic<int> posted_{0};  // Handle calls not yet run on the loop.
  v1::AcquireRequest request_;  // Reads, one at a time.
  bool seen_first_ = false;     // Read side only.
  absl::Mutex mu_;
  std::deque<v1::AcquireResponse> out_ ABSL_GUARDED_BY(mu_);
  v1::AcquireResponse current_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // FinishOnce's status while a write was in flight.
  std::optional<grpc::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

Bidi* NewAcquireReactor(Manager* manager, grpc::CallbackServerContext* ctx,
                        grpc::Status admit,
                        std::unique_ptr<StreamLimits::Slot> slot) {
  return new AcquireReactor(manager, ctx, std::move(admit), std::move(slot));
}

}  // namespace modelplane::rpc
