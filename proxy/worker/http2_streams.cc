#include "proxy/worker/http2_streams.h"

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

}  // namespace

// One stream: the sink of its exchange.
class Http2Streams::Stream : public ResponseSink {
 public:
  Stream(Http2Streams* owner, int32_t id)
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
    owner_->session_.Reset(id_, NGHTTP2_INTERNAL_ERROR);
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
  Http2Streams* owner_;
  int32_t id_;
  bool bodiless_ = false;
  Exchange exchange_;
};

Http2Streams::Http2Streams(ClientConnection* connection)
    : connection_(connection),
      session_(this,
               SessionOptions(connection->worker()->context().options())) {}

Http2Streams::~Http2Streams() = default;

bool Http2Streams::AcceptUpgrade(absl::string_view settings,
                                 bool head_request) {
  return session_.Upgrade(settings, head_request);
}

void Http2Streams::ServeUpgraded(http1::RequestHead head) {
  Stream* s = Open(1);
  s->exchange().Begin(std::move(head));
  s->exchange().End();
}

Http2Streams::Stream* Http2Streams::Open(int32_t id) {
  auto& slot = streams_[id];
  if (slot == nullptr) slot = std::make_unique<Stream>(this, id);
  return slot.get();
}

Http2Streams::Stream* Http2Streams::Find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void Http2Streams::CancelAll() {
  for (auto& [id, s] : streams_) s->exchange().Cancel();
}

void Http2Streams::ResetStalled() {
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

void Http2Streams::OnStreamHead(int32_t id, http1::RequestHead head) {
  Open(id)->exchange().Begin(std::move(head));
}

void Http2Streams::OnStreamBody(int32_t id, absl::string_view data) {
  if (Stream* s = Find(id)) s->exchange().Body(data);
}

void Http2Streams::OnStreamEnd(int32_t id) {
  if (Stream* s = Find(id)) s->exchange().End();
}

void Http2Streams::OnStreamError(int32_t id, int status,
                                 const std::string& message) {
  Open(id)->exchange().Fail(status, message);
}

void Http2Streams::OnStreamClose(int32_t id, uint32_t) {
  // Called from Feed or Produce, never from inside an exchange: it may go.
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  std::unique_ptr<Stream> s = std::move(it->second);
  streams_.erase(it);
  s->exchange().Cancel();  // No-op if its answer was complete.
}

void Http2Streams::OnStreamWritable(int32_t id) {
  if (Stream* s = Find(id)) s->exchange().OnWritable();
}

}  // namespace modelplane::proxy
