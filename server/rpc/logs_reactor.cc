#include "server/rpc/logs_reactor.h"

#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "server/rpc/status_mapping.h"

namespace modelplane::rpc {
namespace {

constexpr size_t kMaxChunk = 64 << 10;

class LogsReactor : public grpc::ServerWriteReactor<v1::LogChunk> {
 public:
  LogsReactor(Manager* manager, const v1::StreamLogsRequest* req,
              grpc::Status admit)
      : manager_(manager), follow_(req->follow()) {
    if (!admit.ok()) {
      Finish(admit);
      finished_ = true;
      return;
    }
    std::string name = req->model();
    uint32_t history = req->history_bytes();
    manager_->loop().Post([this, name, history] {
      std::shared_ptr<logs::LogBuffer> log =
          name == "manager" ? manager_->log() : manager_->scheduler().Log(name);
      if (name.empty() || log == nullptr) {
        FinishOnce(grpc::Status(name.empty()
                                    ? grpc::StatusCode::INVALID_ARGUMENT
                                    : grpc::StatusCode::NOT_FOUND,
                                name.empty() ? "the request must name a model"
                                             : "unknown model '" + name + "'"));
        return;
      }
      mu_.Lock();
      log_ = log;
      offset_ = log->HistoryStart(history);
      history_end_ = log->end_offset();
      if (follow_) {
        auto alive = alive_;
        subscription_ = log->Subscribe([alive] {
          absl::MutexLock lock(&alive->mu);
          if (alive->reactor != nullptr) alive->reactor->Pump();
        });
      }
      mu_.Unlock();
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
    if (log_ != nullptr && subscription_ != 0) log_->Unsubscribe(subscription_);
    delete this;
  }

  void Pump() {
    mu_.Lock();
    if (writing_ || finished_ || log_ == nullptr) {
      mu_.Unlock();
      return;
    }
    bool in_history = offset_ < history_end_;
    logs::LogBuffer::Chunk c = log_->Read(
        &offset_, in_history
                      ? std::min<uint64_t>(kMaxChunk, history_end_ - offset_)
                      : kMaxChunk);
    if (c.data.empty() && c.dropped == 0) {
      mu_.Unlock();
      if (!follow_) FinishOnce(grpc::Status::OK);
      return;
    }
    chunk_.Clear();
    chunk_.set_data(std::move(c.data));
    chunk_.set_dropped_bytes(c.dropped);
    chunk_.set_history(in_history);
    writing_ = true;
    mu_.Unlock();
    StartWrite(&chunk_);
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

  struct Alive {
    explicit Alive(LogsReactor* r) : reactor(r) {}
    absl::Mutex mu;
    LogsReactor* reactor ABSL_GUARDED_BY(mu);
  };

  Manager* manager_;
  bool follow_;
  std::shared_ptr<Alive> alive_ = std::make_shared<Alive>(this);
  absl::Mutex mu_;
  std::shared_ptr<logs::LogBuffer> log_;
  int subscription_ = 0;
  uint64_t offset_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t history_end_ = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  v1::LogChunk chunk_;
};

}  // namespace

grpc::ServerWriteReactor<v1::LogChunk>* NewLogsReactor(
    Manager* manager, grpc::CallbackServerContext*,
    const v1::StreamLogsRequest* req, grpc::Status admit) {
  return new LogsReactor(manager, req, std::move(admit));
}

}  // namespace modelplane::rpc
