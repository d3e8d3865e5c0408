// An exchange's streaming local answer (answers::StreamOut): the event
// stream, a log tail. Its source writes from any thread; each piece is
// posted to the exchange's loop and goes out there, unless the stream has
// ended meanwhile (the client left, the proxy drains, a slow reader was
// cut). A reader slower than the stream never holds the source: past the
// sink's bound (--max-buffered-response), it is cut with a marker or its
// pieces are skipped and said (answers::StreamSpec).
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/loop_thread.h"
#include "proxy/worker/exchange.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

class LocalStream : public answers::StreamOut,
                    public std::enable_shared_from_this<LocalStream> {
 public:
  LocalStream(LoopThread* loop, Exchange* exchange)
      : loop_(loop), exchange_(exchange) {}

  void Write(std::string data) override {
    // Posted under the lock that Close takes: once closed (on the loop,
    // before the exchange or its loop can go), nothing more is posted.
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    loop_->Post([self = shared_from_this(), data = std::move(data)] {
      if (self->closed()) return;
      self->exchange_->StreamData(data);
    });
  }

  void End() override {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    loop_->Post([self = shared_from_this()] {
      if (self->closed()) return;
      self->exchange_->StreamEnd();
    });
  }

  bool closed() const override {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

  // The exchange's loop: the stream is over.
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

 private:
  LoopThread* const loop_;
  Exchange* const exchange_;
  mutable absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

std::shared_ptr<answers::StreamOut> Exchange::OpenStream(
    answers::StreamSpec spec) {
  auto stream = std::make_shared<LocalStream>(&worker_->loop(), this);
  http1::Headers headers;
  headers.emplace_back("Content-Type", spec.content_type);
  headers.insert(headers.end(), spec.headers.begin(), spec.headers.end());
  AllowOrigin(&headers);
  req_.head_sent = true;
  req_.record.status = 200;
  stream_ = stream;
  stream_spec_ = std::move(spec);
  stream_skipped_ = 0;
  Enter(Phase::kStreaming);
  sink_->SendHead(200, "OK", headers, std::nullopt);
  sink_->FlushNow();
  if (req_.head.method == "HEAD") {
    // The head is the whole answer: the stream ends at once (its source
    // learns through on_close, posted: the handler still holds it).
    StreamEnd();
    return stream;
  }
  stream_id_ = worker_->context().AddStream(stream);
  return stream;
}

void Exchange::StreamData(const std::string& data) {
  if (phase_ != Phase::kStreaming) return;
  if (sink_->Congested()) {
    if (stream_spec_.slow == answers::StreamSpec::Slow::kCut) {
      // Past the bound already: the marker goes last, and the stream ends.
      worker_->metrics().AddSlowStreamReader();
      sink_->SendData(stream_spec_.marker);
      StreamEnd();
      return;
    }
    if (stream_skipped_ == 0) worker_->metrics().AddSlowStreamReader();
    stream_skipped_ += data.size();
    return;
  }
  if (stream_skipped_ > 0 && stream_spec_.skipped) {
    sink_->SendData(stream_spec_.skipped(stream_skipped_));
    stream_skipped_ = 0;
  }
  sink_->SendData(data);
  sink_->FlushNow();
}

void Exchange::StreamEnd() {
  if (phase_ != Phase::kStreaming) return;
  Finish();
  sink_->SendEnd();
}

void Exchange::CloseStream() {
  if (stream_ == nullptr) return;
  stream_->Close();
  stream_.reset();
  if (stream_id_ != 0) {
    worker_->context().RemoveStream(stream_id_);
    stream_id_ = 0;
  }
  std::function<void()> on_close = std::move(stream_spec_.on_close);
  stream_spec_ = answers::StreamSpec();
  // Later, on this loop: the handler that opened the stream may still be
  // running (a HEAD request ends it at once).
  if (on_close) worker_->loop().Post(std::move(on_close));
}

}  // namespace modelplane::proxy
