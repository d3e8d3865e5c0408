#include "server/rpc/logs_reactor.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "server/rpc/pull_write_reactor.h"
#include "server/rpc/status_mapping.h"

namespace modelplane::rpc {
namespace {

constexpr size_t kMaxChunk = 64 << 10;

class LogsReactor : public PullWriteReactor<v1::LogChunk> {
 public:
  LogsReactor(Manager* manager, const v1::StreamLogsRequest* req,
              grpc::Status admit, std::unique_ptr<StreamLimits::Slot> slot)
      : manager_(manager), follow_(req->follow()) {
    Hold(std::move(slot));  // Before anything can end the stream.
    if (!admit.ok()) {
      FinishOnce(admit);
      return;
    }
    std::string name = req->model();
    uint32_t history = req->history_bytes();
    manager_->loop().Post([this, name, history] {
      std::shared_ptr<logs::LogBuffer> log =
          name == "manager" ? manager_->log() : manager_->scheduler().Log(name);
      if (name.empty() || log == nullptr) {
        FinishOnce(name.empty()
                       ? grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                      "the request must name a model")
                       : grpc::Status(grpc::StatusCode::NOT_FOUND,
                                      "unknown model '" + name + "'"));
        return;
      }
      // Subscribed outside mu_: the buffer calls the waker (which takes
      // mu_) with its callback mutex held, so mu_ must never be held while
      // taking that one. A wake before log_ is set finds nothing to do.
      int subscription = follow_ ? log->Subscribe(Waker()) : 0;
      {
        absl::MutexLock lock(&mu_);
        log_ = log;
        offset_ = log->HistoryStart(history);
        history_end_ = log->end_offset();
        subscription_ = subscription;
      }
      Pump();
    });
  }

 private:
  bool Next(v1::LogChunk* chunk, std::optional<grpc::Status>* end) override {
    if (log_ == nullptr) return false;
    // Read after looking: what was appended before the close is delivered.
    std::optional<absl::Status> closed = log_->closed();
    bool in_history = offset_ < history_end_;
    logs::LogBuffer::Chunk c = log_->Read(
        &offset_, in_history
                      ? std::min<uint64_t>(kMaxChunk, history_end_ - offset_)
                      : kMaxChunk);
    if (c.data.empty() && c.dropped == 0) {
      if (!follow_) *end = grpc::Status::OK;
      if (follow_ && closed) *end = ToGrpc(*closed);
      return false;
    }
    chunk->set_data(std::move(c.data));
    chunk->set_dropped_bytes(c.dropped);
    chunk->set_history(in_history);
    return true;
  }

  void Closed() override {
    std::shared_ptr<logs::LogBuffer> log;
    int subscription;
    {
      absl::MutexLock lock(&mu_);
      log = log_;
      subscription = std::exchange(subscription_, 0);
    }
    if (log != nullptr && subscription != 0) log->Unsubscribe(subscription);
  }

  // Behind the constructor's work on the loop (it holds `this`), and once
  // more unsubscribed: that work may have subscribed after Closed().
  void Free() override {
    manager_->loop().Post([this] {
      Closed();
      delete this;
    });
  }

  Manager* manager_;
  const bool follow_;
  std::shared_ptr<logs::LogBuffer> log_ ABSL_GUARDED_BY(mu_);
  int subscription_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t offset_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t history_end_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

grpc::ServerWriteReactor<v1::LogChunk>* NewLogsReactor(
    Manager* manager, grpc::CallbackServerContext*,
    const v1::StreamLogsRequest* req, grpc::Status admit,
    std::unique_ptr<StreamLimits::Slot> slot) {
  return new LogsReactor(manager, req, std::move(admit), std::move(slot));
}

}  // namespace modelplane::rpc
