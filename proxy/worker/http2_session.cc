#include "proxy/worker/http2_session.h"

#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "proxy/worker/client_connection.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {
namespace {

http2::ServerSession::Options SessionOptions(const ProxyOptions& o) {
  http2::ServerSession::Options s;
  s.max_header_bytes = o.limits.max_header_bytes;
  s.max_body_bytes = o.limits.max_body_bytes;
  s.writable_below = o.max_buffered_response / 4;
  return s;
}

// HTTP/2 frames are produced while the socket's queue is under this (one
// Produce may overshoot it by a frame).
constexpr size_t kFlushBytes = 256 << 10;

}  // namespace

// One stream: the sink of its exchange.
class Http2Session::Stream : public ResponseSink {
 public:
  Stream(Http2Session* owner, int32_t id)
      : owner_(owner),
        id_(id),
        exchange_(owner->connection_->worker(), this,
                  owner->connection_->peer()) {}

  Exchange& exchange() { return exchange_; }

  void SendHead(int status, absl::string_view, const http1::Headers& headers,
                std::optional<uint64_t> content_length) override {
    bodiless_ =
        http1::IsBodilessStatus(status) || exchange_.head().method == "HEAD";
    owner_->session_.SubmitHead(id_, status, headers, content_length,
                                bodiless_);
    owner_->connection_->ScheduleFlush();
  }
  void SendResponse(int status, const http1::Headers& headers,
                    absl::string_view body) override {
    SendHead(status, "", headers, body.size());
    SendData(body);
  }
  void SendContinue() override {
    owner_->session_.SubmitContinue(id_);
    owner_->connection_->ScheduleFlush();
  }
  void SendData(absl::string_view data) override {
    if (bodiless_ || data.empty()) return;
    exchange_.AddSent(data.size());
    owner_->session_.SubmitData(id_, data);
    owner_->connection_->ScheduleFlush();
  }
  void SendEnd() override {
    owner_->session_.SubmitEnd(id_);
    owner_->connection_->ScheduleFlush();
  }
  void Abort() override {
    // What was buffered (an error event) goes out before the reset, as
    // HTTP/1.1 flushes before it closes.
    owner_->session_.ResetAfterData(id_, NGHTTP2_INTERNAL_ERROR);
    owner_->connection_->ScheduleFlush();
  }
  bool Congested() override {
    const ProxyOptions& o = owner_->connection_->worker()->context().options();
    if (owner_->session_.Buffered(id_) <= o.max_buffered_response) {
      return false;
    }
    owner_->session_.WantWritable(id_);
    return true;
  }

 private:
  Http2Session* owner_;
  int32_t id_;
  bool bodiless_ = false;
  Exchange exchange_;
};

Http2Session::Http2Session(ClientConnection* connection)
    : connection_(connection),
      session_(this,
               SessionOptions(connection->worker()->context().options())) {}

Http2Session::~Http2Session() = default;

void Http2Session::OnRead(absl::string_view data) {
  if (!data.empty() && !session_.Feed(data)) {
    connection_->StopReading();  // A protocol error: its GOAWAY goes out.
  }
  connection_->Flush();
}

void Http2Session::Flush() {
  size_t queued = connection_->Queued();
  if (queued < kFlushBytes) {
    std::string out;
    session_.Produce(&out, kFlushBytes - queued);
    if (connection_->closing()) return;
    connection_->Write(std::move(out));
  }
  connection_->FlushStream();
  if (connection_->closing()) return;
  if (session_.done() ||
      (connection_->draining() && session_.open_streams() == 0)) {
    // Nothing more to say (a GOAWAY went out): close once it is written.
    connection_->CloseAfterWrite();
    connection_->CloseGracefully();
    return;
  }
  connection_->UpdateTimer();
}

void Http2Session::OnWritten(size_t queued) {
  // The socket took some: more frames may go (windows permitting).
  if (queued < kFlushBytes / 2) connection_->ScheduleFlush();
}

TimerMode Http2Session::WantedTimer() {
  TimerMode want =
      session_.open_streams() == 0 ? TimerMode::kIdle : TimerMode::kSweep;
  // A stream opened and answered within one turn leaves the mode idle:
  // the idle wait still starts over.
  uint64_t opened = session_.streams_opened();
  if (opened != streams_seen_) {
    streams_seen_ = opened;
    if (want == TimerMode::kIdle) connection_->ForgetTimerMode();
  }
  return want;
}

void Http2Session::OnTimer(TimerMode mode) {
  if (mode == TimerMode::kSweep) {
    connection_->RestartTimer(TimerMode::kSweep);  // The sweep repeats.
    ResetStalled();
    connection_->ScheduleFlush();
    return;
  }
  // Idle with no stream open: say goodbye, then close.
  connection_->ForgetTimerMode();
  connection_->set_draining();
  session_.Shutdown();
  connection_->Flush();
}

void Http2Session::Drain() {
  session_.Shutdown();  // GOAWAY; closes once its streams are done.
  connection_->Flush();
}

bool Http2Session::AcceptUpgrade(absl::string_view settings,
                                 bool head_request) {
  return session_.Upgrade(settings, head_request);
}

void Http2Session::ServeUpgraded(http1::RequestHead head) {
  Stream* s = Open(1);
  s->exchange().Begin(std::move(head));
  s->exchange().End();
}

Http2Session::Stream* Http2Session::Open(int32_t id) {
  auto& slot = streams_[id];
  if (slot == nullptr) slot = std::make_unique<Stream>(this, id);
  return slot.get();
}

Http2Session::Stream* Http2Session::Find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void Http2Session::CancelAll() {
  for (auto& [id, s] : streams_) s->exchange().Cancel();
}

void Http2Session::ResetStalled() {
  const ProxyOptions& o = connection_->worker()->context().options();
  int64_t now = absl::GetCurrentTimeNanos();
  for (int32_t id :
       session_.Stalled(now, absl::ToInt64Nanoseconds(o.send_timeout))) {
    // The client took none of this answer: the lease and the upstream go
    // back (CANCEL closes the stream, which cancels its exchange).
    session_.Reset(id, NGHTTP2_CANCEL);
  }
  // A client that stopped sending its request (slowloris), as HTTP/1.1's
  // header and body timeouts.
  for (const http2::ServerSession::StalledRequest& r :
       session_.StalledRequests(now, absl::ToInt64Nanoseconds(o.header_timeout),
                                absl::ToInt64Nanoseconds(o.body_timeout))) {
    Stream* s = r.head_complete ? Find(r.id) : nullptr;
    if (s == nullptr) {
      session_.Reset(r.id, NGHTTP2_CANCEL);
      continue;
    }
    session_.IgnoreRequest(r.id);
    s->exchange().Fail(408, "the request body did not arrive in time");
  }
}

void Http2Session::OnStreamHead(int32_t id, http1::RequestHead head) {
  Open(id)->exchange().Begin(std::move(head));
}

void Http2Session::OnStreamBody(int32_t id, absl::string_view data) {
  if (Stream* s = Find(id)) s->exchange().Body(data);
}

void Http2Session::OnStreamEnd(int32_t id) {
  if (Stream* s = Find(id)) s->exchange().End();
}

void Http2Session::OnStreamError(int32_t id, int status,
                                 const std::string& message) {
  Open(id)->exchange().Fail(status, message);
}

void Http2Session::OnStreamClose(int32_t id, uint32_t) {
  // Called from Feed or Produce, never from inside an exchange: it may go.
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  std::unique_ptr<Stream> s = std::move(it->second);
  streams_.erase(it);
  s->exchange().Cancel();  // No-op if its answer was complete.
}

void Http2Session::OnStreamWritable(int32_t id) {
  if (Stream* s = Find(id)) s->exchange().OnWritable();
}

}  // namespace modelplane::proxy
