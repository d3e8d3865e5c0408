#include "proxy/worker/client_connection.h"

#include <algorithm>
#include <utility>

#include "proxy/worker/http1_session.h"
#include "proxy/worker/http2_session.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {
namespace {

// What an HTTP/2 client sends first (RFC 9113, 3.4).
constexpr absl::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// How long a closing connection reads and drops what the client still sends.
constexpr uint64_t kLingerMs = 2000;

}  // namespace

ClientConnection::ClientConnection(Worker* worker) : worker_(worker) {
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
  // TLS on the listener: the context current now, for this connection's
  // life (a reload's new certificate is for the next ones).
  if (std::shared_ptr<const tls::ServerTlsContext> tls =
          worker_->context().tls()) {
    stream_.EnableServerTls(tls->get());
  }
  if (!stream_.StartReading()) {
    Close();
    return;
  }
  UpdateTimer();
}

void ClientConnection::UpdateTimer() {
  if (closing_ || stream_.lingering()) return;
  // Nothing read yet: the wait for the TLS handshake, then for a first
  // request.
  TimerMode want = session_ != nullptr          ? session_->WantedTimer()
                   : stream_.tls() && !secured_ ? TimerMode::kHandshake
                                                : TimerMode::kIdle;
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

void ClientConnection::RestartTimer(TimerMode mode) {
  timer_mode_ = mode;
  timer_.Arm(TimerMs(mode));
}

uint64_t ClientConnection::TimerMs(TimerMode mode) const {
  if (mode == TimerMode::kLinger) return kLingerMs;
  const ProxyOptions& o = worker_->context().options();
  absl::Duration d = mode == TimerMode::kHead        ? o.header_timeout
                     : mode == TimerMode::kHandshake ? o.tls_handshake_timeout
                     : mode == TimerMode::kBody      ? o.body_timeout
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
  if (c->session_ == nullptr) {
    if (c->timer_mode_ == TimerMode::kHandshake) {
      c->worker_->metrics().AddTlsHandshakeFailure(/*timed_out=*/true);
    }
    c->Close();  // Idle: not even a first request (or a TLS handshake).
    return;
  }
  c->session_->OnTimer(c->timer_mode_);
}

void ClientConnection::Drain() {
  draining_ = true;
  if (session_ != nullptr) {
    session_->Drain();
    return;
  }
  Close();  // Nothing read yet (or not enough to tell the protocol).
}

void ClientConnection::CloseGracefully() {
  if (closing_) return;
  if (session_ != nullptr && !session_->LingerOnClose()) {
    // Done once the last bytes are out.
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
  if (handed_over_ != nullptr) handed_over_->CancelAll();
  if (session_ != nullptr) session_->CancelAll();
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

void ClientConnection::SwitchSession(std::unique_ptr<Session> next) {
  handed_over_ = std::move(session_);
  session_ = std::move(next);
  timer_mode_ = TimerMode::kNone;
}

void ClientConnection::OnStreamEof() {
  if (session_ != nullptr && !closing_ && session_->OnEof()) return;
  Close();  // The client left: an upstream in flight is cancelled.
}

void ClientConnection::OnStreamError(int status) {
  // A read or write error, a client that took nothing for --send-timeout-ms
  // (the lease and the upstream go back), or a lingering close over; with
  // TLS, a handshake that failed (plaintext on the TLS port, no common
  // version or cipher, the client refusing the certificate).
  if (status == UV_EPROTO && stream_.tls() && !secured_) {
    worker_->metrics().AddTlsHandshakeFailure(/*timed_out=*/false);
  }
  Close();
}

void ClientConnection::OnStreamSecured(absl::string_view) {
  // The bytes tell HTTP/2 from HTTP/1.1 as over cleartext: a client that
  // chose "h2" by ALPN sends the connection preface first.
  secured_ = true;
  UpdateTimer();
}

void ClientConnection::OnStreamRead(absl::string_view data) {
  if (closing_) return;
  worker_->metrics().AddBytesIn(data.size());
  if (session_ != nullptr) {
    session_->OnRead(data);
    return;
  }
  if (first_bytes_.empty() && data[0] != kPreface[0]) {
    // HTTP/1.x from the first byte: parsed straight from the read buffer.
    session_ = std::make_unique<Http1Session>(this);
    session_->OnRead(data);
    return;
  }
  first_bytes_.append(data.data(), data.size());
  if (!Detect()) return;
  std::string bytes;
  bytes.swap(first_bytes_);
  session_->OnRead(bytes);
}

bool ClientConnection::Detect() {
  size_t n = std::min(first_bytes_.size(), kPreface.size());
  if (absl::string_view(first_bytes_).substr(0, n) != kPreface.substr(0, n)) {
    session_ = std::make_unique<Http1Session>(this);  // HTTP/1.x.
    return true;
  }
  if (n < kPreface.size()) return false;  // Could still be either.
  session_ = std::make_unique<Http2Session>(this);
  timer_mode_ = TimerMode::kNone;
  return true;
}

void ClientConnection::Flush() {
  if (closing_) return;
  // Whatever scheduled a flush is served by this one (what the session
  // schedules meanwhile runs on the next turn).
  stream_.CancelScheduledFlush();
  if (session_ == nullptr) return stream_.Flush();
  session_->Flush();
}

size_t ClientConnection::Write(std::string data) {
  if (closing_) return 0;
  size_t n = data.size();
  stream_.Write(std::move(data));
  return Wrote(n);
}

size_t ClientConnection::Wrote(size_t n) {
  if (n > 0) worker_->metrics().AddBytesOut(n);
  return n;
}

void ClientConnection::OnStreamWritten(size_t queued) {
  if (closing_) return;
  if (close_after_write_ && queued == 0) {
    CloseGracefully();
    return;
  }
  if (session_ != nullptr) session_->OnWritten(queued);
}

}  // namespace modelplane::proxy
