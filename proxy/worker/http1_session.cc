#include "proxy/worker/http1_session.h"

#include <utility>

#include "proxy/worker/http2_session.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

Http1Session::Http1Session(ClientConnection* connection)
    : connection_(connection),
      parser_(this, connection->worker()->context().options().limits),
      exchange_(std::make_unique<Exchange>(connection->worker(), this,
                                           connection->peer())) {}

Http1Session::~Http1Session() = default;

void Http1Session::OnRead(absl::string_view data) {
  if (tunnel_client_done_) return;
  if (tunnel_) {
    if (exchange_->TunnelIn(data) && !connection_->closing()) {
      // The upstream is slow to take them: TCP pushes back.
      connection_->StopReading();
    }
    return;
  }
  absl::string_view fresh = data;
  if (input_.empty() && !feeding_) {
    // The usual case: parsed straight from the read buffer, and only what
    // is left (a pipelined request behind one in flight) is copied.
    feeding_ = true;
    fresh.remove_prefix(Parse(fresh));
    feeding_ = false;
  }
  input_.append(fresh.data(), fresh.size());
  if (input_.size() >
      connection_->worker()->context().options().limits.max_body_bytes +
          (1 << 20)) {
    connection_->StopReading();  // Pipelined far ahead: wait until caught up.
  }
  FeedInput();
}

bool Http1Session::OnEof() {
  if (!tunnel_ || tunnel_client_done_) return false;
  // The client closed its side of a tunnel: so does the upstream, after
  // what it still has to take; its answer still comes back, for a while
  // (the timer ends it).
  tunnel_client_done_ = true;
  connection_->RestartTimer(TimerMode::kLinger);
  exchange_->TunnelClientDone();
  return true;
}

void Http1Session::Flush() { connection_->FlushStream(); }

void Http1Session::OnWritten(size_t queued) {
  if (in_request_ && exchange_ != nullptr &&
      queued <
          connection_->worker()->context().options().max_buffered_response /
              4) {
    exchange_->OnWritable();
  }
}

TimerMode Http1Session::WantedTimer() {
  if (tunnel_client_done_) return TimerMode::kLinger;
  if (in_request_) return reading_body_ ? TimerMode::kBody : TimerMode::kNone;
  return parser_.in_head() ? TimerMode::kHead : TimerMode::kIdle;
}

void Http1Session::OnTimer(TimerMode mode) {
  if (mode == TimerMode::kBody && reading_body_) {
    // Nothing more is read: the rest of the body must not be dispatched.
    connection_->StopReading();
    input_.clear();
    reading_body_ = false;
    connection_->ForgetTimerMode();
    keep_alive_ = false;
    connection_->CloseAfterWrite();
    exchange_->Fail(408, "the request body did not arrive in time");
    return;
  }
  if (in_request_) return;
  if (mode == TimerMode::kHead) {
    // Nothing more is read: a head completing now must not be served.
    connection_->StopReading();
    input_.clear();
    connection_->ForgetTimerMode();
    keep_alive_ = false;
    connection_->CloseAfterWrite();
    in_request_ = true;
    exchange_->Fail(408, "the request head did not arrive in time");
    return;
  }
  if (connection_->Queued() > 0) {
    // The last answer is still going out to a slow reader (the send timeout
    // watches it): close once it is written, read nothing more.
    connection_->CloseAfterWrite();
    connection_->StopReading();
    return;
  }
  connection_->Close();  // Idle keep-alive connection.
}

void Http1Session::Drain() {
  if (in_request_ || parser_.in_head()) return;  // Closes after its answer.
  if (connection_->Queued() > 0) {
    // The last response is still being written: close once it is out.
    connection_->CloseAfterWrite();
    connection_->StopReading();
    return;
  }
  connection_->Close();
}

void Http1Session::CancelAll() {
  if (exchange_ != nullptr) exchange_->Cancel();
}

size_t Http1Session::Parse(absl::string_view data) {
  size_t used = 0;
  while (!connection_->closing() && !handed_over_ && used < data.size() &&
         !parser_.paused() && !parser_.failed()) {
    size_t n = parser_.Feed(data.substr(used));
    if (n == 0) break;
    used += n;
  }
  return used;
}

void Http1Session::FeedInput() {
  // A response may finish inside a parser callback (a local answer): the
  // loop below then goes on, instead of feeding re-entrantly.
  if (feeding_) return;
  feeding_ = true;
  input_.erase(0, Parse(input_));
  feeding_ = false;
  if (handed_over_ && !connection_->closing()) {
    // Upgraded: what follows the request is the client's HTTP/2 preface.
    std::string rest;
    rest.swap(input_);
    connection_->session()->OnRead(rest);
  }
  connection_->UpdateTimer();
}

void Http1Session::OnRequestHead(http1::RequestHead head) {
  in_request_ = true;
  reading_body_ = true;
  connection_->UpdateTimer();
  keep_alive_ = head.keep_alive && !connection_->draining();
  // A WebSocket handshake: what follows it on the connection is the new
  // protocol's or nothing, so a refused one ends the connection too.
  if (head.upgrade && http1::HasToken(head.headers, "upgrade", "websocket")) {
    keep_alive_ = false;
  }
  // RFC 7540 3.2 / RFC 9110 7.8: HTTP/1.1 only, and the upgrade named as
  // a connection option (else an intermediary passed it on unasked).
  // (Upgrade: websocket, h2c is a WebSocket handshake.)
  if (head.upgrade && head.version_minor >= 1 &&
      !http1::HasToken(head.headers, "upgrade", "websocket") &&
      http1::HasToken(head.headers, "upgrade", "h2c") &&
      http1::HasToken(head.headers, "connection", "upgrade") &&
      http1::HasToken(head.headers, "connection", "http2-settings") &&
      http1::FindHeader(head.headers, "http2-settings") != nullptr &&
      !head.chunked && head.content_length.value_or(0) == 0 &&
      !connection_->draining()) {
    upgrade_ = std::move(head);  // Decided once the request is complete.
    return;
  }
  exchange_->Begin(std::move(head));
}

void Http1Session::OnRequestBody(absl::string_view data) {
  if (connection_->timer_mode() == TimerMode::kBody) {
    connection_->RestartTimer(TimerMode::kBody);  // Progress: starts over.
  }
  exchange_->Body(data);
}

void Http1Session::OnRequestEnd() {
  reading_body_ = false;
  if (upgrade_ && TryUpgrade()) return;
  if (upgrade_) {
    exchange_->Begin(*std::move(upgrade_));  // Served over HTTP/1.1.
    upgrade_.reset();
  }
  exchange_->End();
}

bool Http1Session::TryUpgrade() {
  http1::RequestHead head = *std::move(upgrade_);
  upgrade_.reset();
  auto h2 = std::make_unique<Http2Session>(connection_);
  if (!h2->AcceptUpgrade(*http1::FindHeader(head.headers, "http2-settings"),
                         head.method == "HEAD")) {
    upgrade_ = std::move(head);
    return false;
  }
  Write(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
      "Upgrade: h2c\r\n\r\n");
  in_request_ = false;
  handed_over_ = true;
  Http2Session* next = h2.get();
  // This session stays (unused) with the connection: it is on the stack.
  connection_->SwitchSession(std::move(h2));
  next->ServeUpgraded(std::move(head));
  return true;
}

void Http1Session::OnRequestError(int status, const std::string& message) {
  keep_alive_ = false;
  connection_->CloseAfterWrite();
  in_request_ = true;
  reading_body_ = false;
  upgrade_.reset();
  exchange_->Fail(status, message);
}

void Http1Session::Write(std::string data) {
  size_t n = connection_->Write(std::move(data));
  if (n > 0 && exchange_ != nullptr) exchange_->AddSent(n);
}

}  // namespace modelplane::proxy
