#include "proxy/worker/client_connection.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "proxy/worker/http2_streams.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {
namespace {

// What an HTTP/2 client sends first (RFC 9113, 3.4).
constexpr absl::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// How long a closing connection reads and drops what the client still sends.
constexpr uint64_t kLingerMs = 2000;

// HTTP/2 frames are produced while the socket's queue is under this (one
// Produce may overshoot it by a frame).
constexpr size_t kFlushBytes = 256 << 10;

}  // namespace

ClientConnection::ClientConnection(Worker* worker)
    : worker_(worker), parser_(this, worker->context().options().limits) {
  stream_.Init(worker->loop().loop(), this, worker->read_buffer(),
               Worker::kReadBufferSize);
  stream_.set_send_timeout_ms(static_cast<uint64_t>(std::max<int64_t>(
      1, absl::ToInt64Milliseconds(worker->context().options().send_timeout))));
  timer_.Init(worker->loop().loop(), OnTimer, this);
}

ClientConnection::~ClientConnection() = default;

void ClientConnection::Start() {
  uv_tcp_nodelay(stream_.tcp(), 1);
  peer_ = stream_.PeerAddress();
  exchange_ = std::make_unique<Exchange>(worker_, this, peer_);
  if (!stream_.StartReading()) {
    Close();
    return;
  }
  UpdateTimer();
}

void ClientConnection::UpdateTimer() {
  if (closing_ || stream_.lingering() || tunnel_client_done_) return;
  TimerMode want;
  if (h2_ != nullptr) {
    want = h2_->session().open_streams() == 0 ? TimerMode::kIdle
                                              : TimerMode::kSweep;
    // A stream opened and answered within one turn leaves the mode idle:
    // the idle wait still starts over.
    uint64_t opened = h2_->session().streams_opened();
    if (opened != h2_streams_seen_) {
      h2_streams_seen_ = opened;
      if (want == TimerMode::kIdle) timer_mode_ = TimerMode::kNone;
    }
  } else if (in_request_) {
    want = reading_body_ ? TimerMode::kBody : TimerMode::kNone;
  } else {
    want = parser_.in_head() ? TimerMode::kHead : TimerMode::kIdle;
  }
  if (want == timer_mode_) return;  // Never re-armed by a trickle of bytes.
  timer_mode_ = want;
  if (want == TimerMode::kNone) {
    timer_.Disarm();
    return;
  }
  // Lazy: a keep-alive connection moving between idle and busy on every
  // request does not touch the loop's timer heap (common/uv/lazy_timer.h).
  timer_.Arm(TimerMs(want));
}

uint64_t ClientConnection::TimerMs(TimerMode mode) const {
  const ProxyOptions& o = worker_->context().options();
  absl::Duration d = mode == TimerMode::kHead   ? o.header_timeout
                     : mode == TimerMode::kBody ? o.body_timeout
                     : mode == TimerMode::kSweep
                         ? std::min(o.send_timeout / 2, absl::Seconds(1))
                         : o.idle_timeout;
  return static_cast<uint64_t>(
      std::max<int64_t>(1, absl::ToInt64Milliseconds(d)));
}

void ClientConnection::OnTimer(void* data) {
  auto* c = static_cast<ClientConnection*>(data);
  if (c->closing_) return;
  if (c->timer_mode_ == TimerMode::kLinger) {
    c->Close();  // The client kept sending (or kept the connection) too long.
    return;
  }
  if (c->h2_ != nullptr) {
    if (c->timer_mode_ == TimerMode::kSweep) {
      c->timer_.Arm(c->TimerMs(TimerMode::kSweep));  // The sweep repeats.
      c->h2_->ResetStalled();
      c->ScheduleFlush();
      return;
    }
    // Idle with no stream open: say goodbye, then close.
    c->timer_mode_ = TimerMode::kNone;
    c->draining_ = true;
    c->h2_->session().Shutdown();
    c->Flush();
    return;
  }
  if (c->timer_mode_ == TimerMode::kBody && c->reading_body_) {
    // Nothing more is read: the rest of the body must not be dispatched.
    c->StopReading();
    c->input_.clear();
    c->reading_body_ = false;
    c->timer_mode_ = TimerMode::kNone;
    c->keep_alive_ = false;
    c->close_after_write_ = true;
    c->exchange_->Fail(408, "the request body did not arrive in time");
    return;
  }
  if (c->in_request_) return;
  if (c->timer_mode_ == TimerMode::kHead) {
    // Nothing more is read: a head completing now must not be served.
    c->StopReading();
    c->input_.clear();
    c->timer_mode_ = TimerMode::kNone;
    c->keep_alive_ = false;
    c->close_after_write_ = true;
    c->in_request_ = true;
    c->exchange_->Fail(408, "the request head did not arrive in time");
    return;
  }
  if (c->Queued() > 0) {
    // The last answer is still going out to a slow reader (the send timeout
    // watches it): close once it is written, read nothing more.
    c->close_after_write_ = true;
    c->StopReading();
    return;
  }
  c->Close();  // Idle keep-alive connection.
}

void ClientConnection::Drain() {
  draining_ = true;
  if (h2_ != nullptr) {
    h2_->session().Shutdown();  // GOAWAY; closes once its streams are done.
    Flush();
    return;
  }
  if (in_request_ || parser_.in_head()) return;  // Closes after its answer.
  if (Queued() > 0) {
    // The last response is still being written: close once it is out.
    close_after_write_ = true;
    StopReading();
    return;
  }
  Close();
}

void ClientConnection::CloseGracefully() {
  if (closing_) return;
  if (tunnel_client_done_) {
    // A tunnel whose client closed first: done once the upstream's last
    // bytes are out.
    if (Queued() == 0) {
      Close();
    } else {
      close_after_write_ = true;
    }
    return;
  }
  if (stream_.lingering()) return;
  if (Queued() > 0) {
    close_after_write_ = true;  // OnStreamWritten comes once it is out.
    return;
  }
  // FIN, then what the client still sends is dropped until it closes or
  // kLingerMs pass (OnStreamError).
  timer_mode_ = TimerMode::kNone;
  timer_.Disarm();
  if (!stream_.LingeringClose(kLingerMs)) Close();
}

void ClientConnection::Close() {
  if (closing_) return;
  closing_ = true;
  // Cancels what is in flight (counted as 499, upstreams cut, leases given
  // back). The exchanges themselves go with the connection: one may be on
  // the stack now.
  if (exchange_ != nullptr) exchange_->Cancel();
  if (h2_ != nullptr) h2_->CancelAll();
  worker_->Forget(this);
  timer_.Close();
  // Deleted once libuv is done with the socket: never while one of its
  // methods (or an exchange's) is on the stack.
  stream_.Close(Closed, this);
}

void ClientConnection::Closed(void* c) {
  delete static_cast<ClientConnection*>(c);
}

void ClientConnection::StartReading() {
  if (!closing_ && !stream_.StartReading()) Close();
}

void ClientConnection::OnStreamEof() {
  if (tunnel_ && !closing_ && !tunnel_client_done_) {
    // The client closed its side of a tunnel: so does the upstream, after
    // what it still has to take; its answer still comes back, for a while
    // (the timer ends it).
    tunnel_client_done_ = true;
    timer_mode_ = TimerMode::kLinger;
    timer_.Arm(kLingerMs);
    exchange_->TunnelClientDone();
    return;
  }
  Close();  // The client left: an upstream in flight is cancelled.
}

void ClientConnection::OnStreamError(int) {
  // A read or write error, a client that took nothing for --send-timeout-ms
  // (the lease and the upstream go back), or a lingering close over.
  Close();
}

void ClientConnection::OnStreamRead(absl::string_view data) {
  if (closing_ || tunnel_client_done_) return;
  worker_->metrics().AddBytesIn(data.size());
  if (tunnel_) {
    if (exchange_->TunnelIn(data) && !closing_) {
      StopReading();  // The upstream is slow to take them: TCP pushes back.
    }
    return;
  }
  if (h2_ != nullptr) {
    if (!h2_->session().Feed(data)) {
      StopReading();  // A protocol error: its GOAWAY goes out, then close.
    }
    Flush();
    return;
  }
  absl::string_view fresh = data;
  if (input_.empty() && !first_bytes_ && !feeding_) {
    // The usual case: parsed straight from the read buffer, and only what
    // is left (a pipelined request behind one in flight) is copied.
    feeding_ = true;
    fresh.remove_prefix(Parse(fresh));
    feeding_ = false;
  }
  input_.append(fresh.data(), fresh.size());
  if (input_.size() >
      worker_->context().options().limits.max_body_bytes + (1 << 20)) {
    StopReading();  // Pipelined far ahead: wait until caught up.
  }
  FeedInput();
}

bool ClientConnection::DetectPreface() {
  size_t n = std::min(input_.size(), kPreface.size());
  if (absl::string_view(input_).substr(0, n) != kPreface.substr(0, n)) {
    first_bytes_ = false;  // HTTP/1.x.
    return true;
  }
  if (n < kPreface.size()) return false;  // Could still be either.
  first_bytes_ = false;
  StartHttp2();
  return true;
}

void ClientConnection::StartHttp2() {
  h2_ = std::make_unique<Http2Streams>(this);
  timer_mode_ = TimerMode::kNone;
}

size_t ClientConnection::Parse(absl::string_view data) {
  size_t used = 0;
  while (!closing_ && h2_ == nullptr && used < data.size() &&
         !parser_.paused() && !parser_.failed()) {
    size_t n = parser_.Feed(data.substr(used));
    if (n == 0) break;
    used += n;
  }
  return used;
}

void ClientConnection::FeedInput() {
  // A response may finish inside a parser callback (a local answer): the
  // loop below then goes on, instead of feeding re-entrantly.
  if (feeding_) return;
  feeding_ = true;
  if (first_bytes_ && !DetectPreface()) {
    feeding_ = false;
    return;
  }
  input_.erase(0, Parse(input_));
  feeding_ = false;
  if (!closing_ && h2_ != nullptr) {
    // Upgraded: what follows the request is the client's HTTP/2 preface.
    std::string rest;
    rest.swap(input_);
    if (!rest.empty() && !h2_->session().Feed(rest)) StopReading();
    Flush();
  }
  UpdateTimer();
}

void ClientConnection::OnRequestHead(http1::RequestHead head) {
  in_request_ = true;
  reading_body_ = true;
  UpdateTimer();
  keep_alive_ = head.keep_alive && !draining_;
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
      !head.chunked && head.content_length.value_or(0) == 0 && !draining_) {
    upgrade_ = std::move(head);  // Decided once the request is complete.
    return;
  }
  exchange_->Begin(std::move(head));
}

void ClientConnection::OnRequestBody(absl::string_view data) {
  if (timer_mode_ == TimerMode::kBody) {  // Progress: the gap starts over.
    timer_.Arm(TimerMs(TimerMode::kBody));
  }
  exchange_->Body(data);
}

void ClientConnection::OnRequestEnd() {
  reading_body_ = false;
  if (upgrade_ && TryUpgrade()) return;
  if (upgrade_) {
    exchange_->Begin(*std::move(upgrade_));  // Served over HTTP/1.1.
    upgrade_.reset();
  }
  exchange_->End();
}

bool ClientConnection::TryUpgrade() {
  http1::RequestHead head = *std::move(upgrade_);
  upgrade_.reset();
  auto h2 = std::make_unique<Http2Streams>(this);
  if (!h2->AcceptUpgrade(*http1::FindHeader(head.headers, "http2-settings"),
                         head.method == "HEAD")) {
    upgrade_ = std::move(head);
    return false;
  }
  Write(
      "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
      "Upgrade: h2c\r\n\r\n");
  in_request_ = false;
  first_bytes_ = false;
  h2_ = std::move(h2);  // exchange_ stays unused: it may be on the stack.
  timer_mode_ = TimerMode::kNone;
  h2_->ServeUpgraded(std::move(head));
  return true;
}

void ClientConnection::OnRequestError(int status, const std::string& message) {
  keep_alive_ = false;
  close_after_write_ = true;
  in_request_ = true;
  reading_body_ = false;
  upgrade_.reset();
  exchange_->Fail(status, message);
}

void ClientConnection::ScheduleFlush() { stream_.ScheduleFlush(); }

void ClientConnection::Flush() {
  if (closing_) return;
  // Whatever scheduled a flush is served by this one (what the frames
  // produced below schedule runs on the next turn).
  stream_.CancelScheduledFlush();
  if (h2_ == nullptr) return stream_.Flush();
  size_t queued = Queued();
  if (queued < kFlushBytes) {
    std::string out;
    h2_->session().Produce(&out, kFlushBytes - queued);
    if (closing_) return;
    Write(std::move(out));
  }
  stream_.Flush();
  if (closing_) return;
  http2::ServerSession& s = h2_->session();
  if (s.done() || (draining_ && s.open_streams() == 0)) {
    // Nothing more to say (a GOAWAY went out): close once it is written.
    close_after_write_ = true;
    CloseGracefully();
    return;
  }
  UpdateTimer();
}

void ClientConnection::Write(std::string data) {
  size_t n = data.size();
  if (closing_) return;
  stream_.Write(std::move(data));
  Wrote(n);
}

void ClientConnection::Wrote(size_t n) {
  if (n == 0) return;
  worker_->metrics().AddBytesOut(n);
  if (h2_ == nullptr && exchange_ != nullptr) exchange_->AddSent(n);
}

void ClientConnection::OnStreamWritten(size_t queued) {
  if (closing_) return;
  if (close_after_write_ && queued == 0) {
    CloseGracefully();
    return;
  }
  if (h2_ != nullptr) {
    // The socket took some: more frames may go (windows permitting).
    if (queued < kFlushBytes / 2) ScheduleFlush();
    return;
  }
  if (in_request_ && exchange_ != nullptr &&
      queued < worker_->context().options().max_buffered_response / 4) {
    exchange_->OnWritable();
  }
}

}  // namespace modelplane::proxy
