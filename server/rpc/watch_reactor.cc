#include "server/rpc/watch_reactor.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/rpc/convert.h"
#include "server/rpc/status_mapping.h"

namespace modelplane::rpc {
namespace {

class WatchReactor : public grpc::ServerWriteReactor<v1::WatchEvent> {
 public:
  WatchReactor(Manager* manager, const v1::WatchRequest* req,
               grpc::Status admit)
      : manager_(manager) {
    if (!admit.ok()) {
      finished_ = true;
      Finish(admit);
      return;
    }
    uint64_t since = req->since_revision();
    std::vector<std::string> names(req->models().begin(), req->models().end());
    // Names resolve to ids on the loop thread, against the config in force.
    manager_->loop().Post([this, since, names] {
      std::vector<std::string> ids;
      for (const std::string& n : names) {
        const config::ModelConfig* m =
            manager_->scheduler().config()->FindModel(n);
        ids.push_back(m != nullptr ? m->id : n);  // Unknown: kept as an id.
      }
      auto alive = alive_;
      absl::StatusOr<std::shared_ptr<watch::Watcher>> w =
          manager_->hub().Subscribe(since, ids, [alive] {
            absl::MutexLock lock(&alive->mu);
            if (alive->reactor != nullptr) alive->reactor->Pump();
          });
      if (!w.ok()) {
        FinishOnce(ToGrpc(w.status()));
        return;
      }
      {
        absl::MutexLock lock(&mu_);
        watcher_ = *w;
      }
      Pump();
    });
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
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

  void OnDone() override {
    {
      absl::MutexLock lock(&alive_->mu);
      alive_->reactor = nullptr;
    }
    std::shared_ptr<watch::Watcher> w;
    {
      absl::MutexLock lock(&mu_);
      w = watcher_;
    }
    if (w) w->Cancel();
    delete this;
  }

  // Starts the next write if none is in flight and an event is ready.
  // gRPC may run reactions inline, so StartWrite and Finish are called
  // without holding mu_ (writing_ keeps one write in flight).
  void Pump() {
    mu_.Lock();
    if (writing_ || finished_ || watcher_ == nullptr) {
      mu_.Unlock();
      return;
    }
    std::optional<watch::WatchItem> item = watcher_->Next();
    if (!item) {
      bool end = manager_->shutting_down() && shutdown_seen_;
      mu_.Unlock();
      if (end) {
        FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "the manager is shutting down"));
      }
      return;
    }
    event_.Clear();
    switch (item->type) {
      case watch::WatchItem::Type::kAdded:
        event_.set_type(v1::WatchEvent::TYPE_ADDED);
        break;
      case watch::WatchItem::Type::kModified:
        event_.set_type(v1::WatchEvent::TYPE_MODIFIED);
        break;
      case watch::WatchItem::Type::kDeleted:
        event_.set_type(v1::WatchEvent::TYPE_DELETED);
        break;
      case watch::WatchItem::Type::kBookmark:
        event_.set_type(v1::WatchEvent::TYPE_BOOKMARK);
        break;
    }
    event_.set_revision(item->revision);
    if (item->model) {
      ToProto(*item->model, event_.mutable_model());
      if (item->model->status.state == actor::State::kShutdown) {
        shutdown_seen_ = true;
      }
    }
    writing_ = true;
    mu_.Unlock();
    StartWrite(&event_);
  }

 private:
  void FinishOnce(grpc::Status s) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(std::move(s));
  }

  // Lets the hub's wake callback outlive the reactor safely.
  struct Alive {
    explicit Alive(WatchReactor* r) : reactor(r) {}
    absl::Mutex mu;
    WatchReactor* reactor ABSL_GUARDED_BY(mu);
  };

  Manager* manager_;
  std::shared_ptr<Alive> alive_ = std::make_shared<Alive>(this);
  absl::Mutex mu_;
  std::shared_ptr<watch::Watcher> watcher_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_seen_ ABSL_GUARDED_BY(mu_) = false;
  v1::WatchEvent event_;
};

}  // namespace

grpc::ServerWriteReactor<v1::WatchEvent>* NewWatchReactor(
    Manager* manager, grpc::CallbackServerContext*, const v1::WatchRequest* req,
    grpc::Status admit) {
  return new WatchReactor(manager, req, std::move(admit));
}

}  // namespace modelplane::rpc
