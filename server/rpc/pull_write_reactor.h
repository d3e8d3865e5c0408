// The shape shared by the server-streaming RPCs (Watch, StreamLogs): one
// write in flight; the next message is pulled from the source only when the
// previous write completed, so a slow client costs the server nothing; a
// waker lets the source (on another thread) say "more is ready"; the stream
// finishes exactly once.
//
// A subclass implements Next() (and optionally Closed()). gRPC may run
// reactions inline, so StartWrite and Finish are never called with mu_ held.
#ifndef MODELPLANE_SERVER_RPC_PULL_WRITE_REACTOR_H_
#define MODELPLANE_SERVER_RPC_PULL_WRITE_REACTOR_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/rpc/stream_limits.h"

namespace modelplane::rpc {

template <typename Msg>
class PullWriteReactor : public grpc::ServerWriteReactor<Msg> {
 public:
  // Starts a write if none is in flight and Next() has a message. Any
  // thread.
  void Pump() {
    mu_.Lock();
    if (writing_ || finished_) {
      mu_.Unlock();
      return;
    }
    msg_.Clear();
    std::optional<grpc::Status> end;
    if (!Next(&msg_, &end)) {
      mu_.Unlock();
      if (end) FinishOnce(*end);
      return;
    }
    writing_ = true;
    mu_.Unlock();
    this->StartWrite(&msg_);
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> deferred;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      deferred.swap(deferred_finish_);
    }
    if (deferred) {
      this->Finish(std::move(*deferred));
      return;
    }
    if (!ok) {
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "client gone"));
      return;
    }
    Pump();
  }

  void OnCancel() override {
    FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  // Kept until the stream is done: its place under the stream limits.
  void Hold(std::unique_ptr<StreamLimits::Slot> slot) {
    slot_ = std::move(slot);
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&alive_->mu);
      alive_->reactor = nullptr;
    }
    Closed();
    Free();
  }

 protected:
  PullWriteReactor() : alive_(std::make_shared<Alive>(this)) {}

  // With mu_ held: fills `msg` and returns true, or returns false (setting
  // `end` to finish the stream with that status, or leaving it empty to
  // wait for the next Pump).
  virtual bool Next(Msg* msg, std::optional<grpc::Status>* end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // After the stream is done, before the reactor is freed: unsubscribe.
  virtual void Closed() {}
  // Frees the reactor once done. A reactor that posted work holding `this`
  // (to the manager's loop) frees itself behind that work, on that loop: a
  // client cancelling at once ends the stream before the work ran.
  virtual void Free() { delete this; }

  // A callback that pumps this reactor, safe to call after it is gone.
  std::function<void()> Waker() {
    return [alive = alive_] {
      absl::MutexLock lock(&alive->mu);
      if (alive->reactor != nullptr) alive->reactor->Pump();
    };
  }

  // Finishes the stream, once: at once, or, with a write in flight, when
  // it is done (gRPC takes one write or finish in flight at a time; a
  // Finish beside a write made it call OnDone twice).
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
    this->Finish(std::move(s));
  }

  absl::Mutex mu_;

 private:
  struct Alive {
    explicit Alive(PullWriteReactor* r) : reactor(r) {}
    absl::Mutex mu;
    PullWriteReactor* reactor ABSL_GUARDED_BY(mu);
  };

  std::shared_ptr<Alive> alive_;
  std::unique_ptr<StreamLimits::Slot> slot_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // FinishOnce's status while a write was in flight.
  std::optional<grpc::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);
  Msg msg_;
};

}  // namespace modelplane::rpc

#endif  // MODELPLANE_SERVER_RPC_PULL_WRITE_REACTOR_H_
