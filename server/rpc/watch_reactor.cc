#include "server/rpc/watch_reactor.h"

#include <memory>
#include <string>
#include <vector>

#include "server/rpc/convert.h"
#include "server/rpc/pull_write_reactor.h"
#include "server/rpc/status_mapping.h"

namespace modelplane::rpc {
namespace {

v1::WatchEvent::Type TypeToProto(watch::WatchItem::Type t) {
  switch (t) {
    case watch::WatchItem::Type::kAdded:
      return v1::WatchEvent::TYPE_ADDED;
    case watch::WatchItem::Type::kModified:
      return v1::WatchEvent::TYPE_MODIFIED;
    case watch::WatchItem::Type::kDeleted:
      return v1::WatchEvent::TYPE_DELETED;
    case watch::WatchItem::Type::kBookmark:
      return v1::WatchEvent::TYPE_BOOKMARK;
    case watch::WatchItem::Type::kSettings:
      return v1::WatchEvent::TYPE_SETTINGS;
    case watch::WatchItem::Type::kGpus:
      return v1::WatchEvent::TYPE_GPUS;
  }
  return v1::WatchEvent::TYPE_UNSPECIFIED;
}

class WatchReactor : public PullWriteReactor<v1::WatchEvent> {
 public:
  WatchReactor(Manager* manager, const v1::WatchRequest* req,
               grpc::Status admit, std::unique_ptr<StreamLimits::Slot> slot)
      : manager_(manager) {
    Hold(std::move(slot));  // Before anything can end the stream.
    if (!admit.ok()) {
      FinishOnce(admit);
      return;
    }
    uint64_t since = req->since_revision();
    bool settings = req->include_settings();
    bool gpus = req->include_gpus();
    std::vector<std::string> names(req->models().begin(), req->models().end());
    // Names resolve to ids on the loop thread, against the config in force.
    manager_->loop().Post([this, since, names, settings, gpus] {
      std::vector<std::string> ids;
      for (const std::string& n : names) {
        const config::ModelConfig* m =
            manager_->scheduler().config()->FindModel(n);
        ids.push_back(m != nullptr ? m->id : n);  // Unknown: kept as an id.
      }
      absl::StatusOr<std::shared_ptr<watch::Watcher>> w =
          manager_->hub().Subscribe(since, ids, Waker(), settings, gpus);
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

 private:
  bool Next(v1::WatchEvent* event, std::optional<grpc::Status>* end) override {
    if (watcher_ == nullptr) return false;
    std::optional<watch::WatchItem> item = watcher_->Next();
    if (!item) {
      // Shutting down: end once the models' SHUTDOWN states were sent.
      if (shutdown_seen_ && manager_->shutting_down()) {
        *end = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "the manager is shutting down");
      }
      return false;
    }
    event->set_type(TypeToProto(item->type));
    event->set_revision(item->revision);
    if (item->settings != nullptr) {
      ToProto(*item->settings, event->mutable_settings());
      event->mutable_settings()->set_draining(item->draining);
    }
    if (item->gpus != nullptr) {
      for (const watch::GpuReport& g : *item->gpus) {
        ToProto(g, event->add_gpus());
      }
    }
    if (item->model) {
      ToProto(*item->model, event->mutable_model());
      shutdown_seen_ |= item->model->status.state == actor::State::kShutdown;
    }
    return true;
  }

  void Closed() override {
    std::shared_ptr<watch::Watcher> w;
    {
      absl::MutexLock lock(&mu_);
      w = watcher_;
    }
    if (w) w->Cancel();
  }
  // Behind the constructor's work on the loop (it holds `this`), and once
  // more cancelled: that work may have subscribed after Closed().
  void Free() override {
    manager_->loop().Post([this] {
      Closed();
      delete this;
    });
  }

  Manager* manager_;
  std::shared_ptr<watch::Watcher> watcher_ ABSL_GUARDED_BY(mu_);
  bool shutdown_seen_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<v1::WatchEvent>* NewWatchReactor(
    Manager* manager, grpc::CallbackServerContext*, const v1::WatchRequest* req,
    grpc::Status admit, std::unique_ptr<StreamLimits::Slot> slot) {
  return new WatchReactor(manager, req, std::move(admit), std::move(slot));
}

}  // namespace modelplane::rpc
