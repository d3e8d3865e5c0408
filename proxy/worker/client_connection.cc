#include "proxy/worker/client_connection.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "proxy/worker/http2_streams.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {
namespace {

struct WriteReq {
  uv_write_t req;
  std::string data;
};

// What an HTTP/2 client sends first (RFC 9113, 3.4).
constexpr absl::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// How long a closing connection reads and drops what the client still sends.
constexpr uint64_t kLingerMs = 2000;

// HTTP/2 frames are produced while the socket's queue is under this (one
// Produce may overshoot it by a frame).
constexpr size_t kFlushBytes = 256 << 10;

// The gathering buffer kept between responses (larger ones are freed).
constexpr size_t kKeptOutBytes = 16 << 10;

}  // namespace

ClientConnection::ClientConnection(Worker* worker)
    : worker_(worker), parser_(this, worker->context().options().limits) {
  uv_tcp_init(worker->loop().loop(), &tcp_);
  tcp_.data = this;
  timer_.Init(worker->loop().loop(), OnTimer, this);
  uv_timer_init(worker->loop().loop(), &send_timer_);
  uv_idle_init(worker->loop().loop(), &flush_);
  send_timer_.data = this;
  flush_.data = this;
}

ClientConnection::~ClientConnection() = default;

void ClientConnection::Start() {
  uv_tcp_nodelay(&tcp_, 1);
  sockaddr_storage addr{};
  int len = sizeof(addr);
  char ip[64] = "";
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) ==
      0) {
    if (addr.ss_family == AF_INET) {
      uv_ip4_name(reinterpret_cast<sockaddr_in*>(&addr), ip, sizeof(ip));
    } else {
      uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&addr), ip, sizeof(ip));
    }
  }
  peer_ = ip;
  exchange_ = std::make_unique<Exchange>(worker_, this, peer_);
  if (uv_read_start(stream(), OnAlloc, OnRead) != 0) {
    Close();
    return;
  }
  reading_client_ = true;
  UpdateTimer();
}

void ClientConnection::UpdateTimer() {
  if (closing_ || lingering_) return;
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
  // request does not touch the loop's timer heap (common/lazy_timer.h).
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

void ClientConnection::OnTimer(uv_timer_t* t) {
  auto* c = static_cast<ClientConnection*>(t->data);
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
    uv_read_stop(c->stream());
    c->reading_client_ = false;
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
    uv_read_stop(c->stream());
    c->reading_client_ = false;
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
    uv_read_stop(c->stream());
    c->reading_client_ = false;
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
    uv_read_stop(stream());
    reading_client_ = false;
    return;
  }
  Close();
}

void ClientConnection::CloseGracefully() {
  if (closing_) return;
  if (lingering_ && tunnel_) {
    // A tunnel whose client closed first: done once the upstream's last
    // bytes are out.
    if (Queued() == 0) {
      Close();
    } else {
      close_after_write_ = true;
    }
    return;
  }
  if (lingering_) return;
  if (Queued() > 0) {
    close_after_write_ = true;  // OnWrite comes back once it is out.
    return;
  }
  lingering_ = true;
  if (uv_shutdown(&shutdown_, stream(), [](uv_shutdown_t*, int) {}) != 0) {
    Close();
    return;
  }
  if (!reading_client_) {
    reading_client_ = true;
    uv_read_start(stream(), OnAlloc, OnRead);
  }
  timer_mode_ = TimerMode::kLinger;
  timer_.Arm(kLingerMs);
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
  timer_.Disarm();
  auto closed = [](uv_handle_t* h) {
    auto* c = static_cast<ClientConnection*>(h->data);
    if (--c->open_handles_ == 0) delete c;
  };
  uv_close(timer_.handle(), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&send_timer_), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&flush_), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), closed);
}

void ClientConnection::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  Worker* w = static_cast<ClientConnection*>(h->data)->worker_;
  *buf = uv_buf_init(w->read_buffer(), Worker::kReadBufferSize);
}

void ClientConnection::OnRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<ClientConnection*>(s->data);
  if (n == UV_EOF && c->tunnel_ && !c->closing_ && !c->lingering_) {
    // The client closed its side of a tunnel: so does the upstream, after
    // what it still has to take; its answer still comes back, for a while
    // (a lingering close: the timer ends it).
    uv_read_stop(s);
    c->reading_client_ = false;
    c->lingering_ = true;
    c->timer_mode_ = TimerMode::kLinger;
    c->timer_.Arm(kLingerMs);
    c->exchange_->TunnelClientDone();
    return;
  }
  if (n < 0) {
    c->Close();  // The client left: an upstream in flight is cancelled.
    return;
  }
  if (n == 0 || c->closing_) return;
  if (c->lingering_) return;  // Closing: read and dropped.
  c->worker_->metrics().AddBytesIn(static_cast<uint64_t>(n));
  if (c->tunnel_) {
    if (c->exchange_->TunnelIn(absl::string_view(buf->base, n)) &&
        !c->closing_) {
      uv_read_stop(s);  // The upstream is slow to take them: TCP pushes back.
      c->reading_client_ = false;
    }
    return;
  }
  if (c->h2_ != nullptr) {
    if (!c->h2_->session().Feed(absl::string_view(buf->base, n))) {
      uv_read_stop(s);  // A protocol error: its GOAWAY goes out, then close.
      c->reading_client_ = false;
    }
    c->Flush();
    return;
  }
  absl::string_view fresh(buf->base, static_cast<size_t>(n));
  if (c->input_.empty() && !c->first_bytes_ && !c->feeding_) {
    // The usual case: parsed straight from the read buffer, and only what
    // is left (a pipelined request behind one in flight) is copied.
    c->feeding_ = true;
    fresh.remove_prefix(c->Parse(fresh));
    c->feeding_ = false;
  }
  c->input_.append(fresh.data(), fresh.size());
  if (c->input_.size() >
      c->worker_->context().options().limits.max_body_bytes + (1 << 20)) {
    uv_read_stop(s);  // Pipelined far ahead: wait until caught up.
    c->reading_client_ = false;
  }
  c->FeedInput();
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
    if (!rest.empty() && !h2_->session().Feed(rest)) {
      uv_read_stop(stream());
      reading_client_ = false;
    }
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

void ClientConnection::ScheduleFlush() {
  if (closing_ || uv_is_active(reinterpret_cast<uv_handle_t*>(&flush_))) {
    return;
  }
  uv_idle_start(&flush_, [](uv_idle_t* h) {
    uv_idle_stop(h);
    static_cast<ClientConnection*>(h->data)->Flush();
  });
}

void ClientConnection::Flush() {
  if (closing_) return;
  // Whatever scheduled a flush is served by this one.
  uv_idle_stop(&flush_);
  if (h2_ == nullptr) return WriteOut();
  size_t queued = Queued();
  if (queued < kFlushBytes) {
    std::string out;
    h2_->session().Produce(&out, kFlushBytes - queued);
    if (closing_) return;
    Write(std::move(out));
  }
  WriteOut();
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
  WriteWith([&](std::string* out) {
    if (out->empty() && out->capacity() < data.size()) {
      *out = std::move(data);
    } else {
      out->append(data);
    }
  });
}

void ClientConnection::Wrote(size_t n) {
  if (n == 0) return;
  worker_->metrics().AddBytesOut(n);
  if (h2_ == nullptr && exchange_ != nullptr) exchange_->AddSent(n);
  ScheduleFlush();
}

void ClientConnection::ClearOut() {
  if (out_.capacity() > kKeptOutBytes) {
    std::string().swap(out_);  // An idle connection keeps no big buffer.
  } else {
    out_.clear();  // Its capacity serves the next response.
  }
}

void ClientConnection::WriteOut() {
  if (closing_ || out_.empty()) return;
  size_t done = 0;
  if (tcp_.write_queue_size == 0) {
    // Straight to the socket when nothing waits before it. A write queued
    // through libuv (1.44) re-arms the epoll watcher once it has drained —
    // one epoll_ctl per write, a third of the proxy's system calls. An
    // error is left to uv_write below, which reports it in OnWrite.
    uv_buf_t buf = uv_buf_init(out_.data(), out_.size());
    int n = uv_try_write(stream(), &buf, 1);
    if (n > 0) done = static_cast<size_t>(n);
  }
  if (done == out_.size()) {
    ClearOut();
    AfterWrite();
    return;
  }
  auto* w = new WriteReq{uv_write_t{},
                         done == 0 ? std::move(out_) : out_.substr(done)};
  ClearOut();
  uv_buf_t buf = uv_buf_init(w->data.data(), w->data.size());
  if (uv_write(&w->req, stream(), &buf, 1, OnWrite) != 0) {
    delete w;
    Close();
    return;
  }
  if (!send_timer_armed_ && stream()->write_queue_size > 0) ArmSendTimer();
}

void ClientConnection::ArmSendTimer() {
  send_timer_armed_ = true;
  uv_timer_start(
      &send_timer_,
      [](uv_timer_t* t) {
        auto* c = static_cast<ClientConnection*>(t->data);
        if (c->closing_) return;
        // The client stopped reading: give the lease (and the upstream) back.
        c->Close();
      },
      static_cast<uint64_t>(
          absl::ToInt64Milliseconds(worker_->context().options().send_timeout)),
      0);
}

void ClientConnection::OnWrite(uv_write_t* req, int status) {
  std::unique_ptr<WriteReq> w(reinterpret_cast<WriteReq*>(req));
  auto* c = static_cast<ClientConnection*>(req->handle->data);
  if (c->closing_) return;
  if (status < 0) {
    c->Close();
    return;
  }
  c->AfterWrite();
}

void ClientConnection::AfterWrite() {
  size_t queued = Queued();
  if (queued > 0) {
    ArmSendTimer();  // Progress: the wait starts over.
  } else if (send_timer_armed_) {
    send_timer_armed_ = false;
    uv_timer_stop(&send_timer_);
  }
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
