#include "common/uv/tcp_stream.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"

namespace modelplane::uv {
namespace {

// The gathering buffer kept between writes (larger ones are freed).
constexpr size_t kKeptOutBytes = 16 << 10;

}  // namespace

// A write queued through libuv, with the bytes it holds (and a body it
// keeps alive). Freed in its callback, which libuv makes even when the
// stream is closed meanwhile (UV_ECANCELED; the handle's data is null then).
struct TcpStream::WriteReq {
  uv_write_t req;
  std::string data;
  std::shared_ptr<const std::string> body;
};

TcpStream::~TcpStream() { Close(); }

int TcpStream::Init(uv_loop_t* loop, Handler* handler, char* read_buffer,
                    size_t size) {
  handler_ = handler;
  read_buffer_ = read_buffer;
  read_size_ = size;
  if (int rc = tcp_.Init(loop, uv_tcp_init, this); rc != 0) return rc;
  if (int rc = timer_.Init(loop, uv_timer_init, this); rc != 0) return rc;
  return flush_.Init(loop, uv_idle_init, this);
}

std::string TcpStream::PeerAddress() const {
  sockaddr_storage addr{};
  int len = sizeof(addr);
  char ip[64] = "";
  if (tcp_ && uv_tcp_getpeername(tcp_.get(), reinterpret_cast<sockaddr*>(&addr),
                                 &len) == 0) {
    if (addr.ss_family == AF_INET) {
      uv_ip4_name(reinterpret_cast<sockaddr_in*>(&addr), ip, sizeof(ip));
    } else if (addr.ss_family == AF_INET6) {
      uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&addr), ip, sizeof(ip));
    }
  }
  return ip;
}

int TcpStream::Connect(const sockaddr* addr) {
  if (closing_) return UV_ECANCELED;
  auto* req = new uv_connect_t;
  int rc =
      uv_tcp_connect(req, tcp_.get(), addr, [](uv_connect_t* r, int status) {
        auto* self = static_cast<TcpStream*>(r->handle->data);
        delete r;
        if (self == nullptr || self->closing_) return;  // Closed meanwhile.
        if (status == 0 && self->tls_ != nullptr) {
          self->StartTlsClient();
          return;
        }
        self->handler_->OnStreamConnected(status);
      });
  if (rc != 0) delete req;
  return rc;
}

bool TcpStream::StartReading() {
  if (closing_) return false;
  if (reading_) return true;
  if (uv_read_start(stream(), OnAlloc, OnRead) != 0) return false;
  reading_ = true;
  if (tls_ != nullptr && tls_->handshake_done() && tls_->HasBuffered()) {
    // What the engine holds came before reading stopped: no socket read
    // will bring it, so it is handed on from the loop.
    uv_idle_start(tls_drain_.get(), [](uv_idle_t* h) {
      uv_idle_stop(h);
      auto* self = static_cast<TcpStream*>(h->data);
      if (self != nullptr && !self->closing_ && self->reading_) {
        self->OnTlsRead("");
      }
    });
  }
  return true;
}

void TcpStream::StopReading() {
  if (!reading_ || closing_) return;
  uv_read_stop(stream());
  reading_ = false;
}

void TcpStream::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* self = static_cast<TcpStream*>(h->data);
  *buf = uv_buf_init(self->read_buffer_, self->read_size_);
}

void TcpStream::OnRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* self = static_cast<TcpStream*>(s->data);
  if (self == nullptr || self->closing_) return;
  if (self->lingering_) {
    // Closing: what comes is dropped; its end (or an error) ends it.
    if (n < 0) self->Fail(static_cast<int>(n));
    return;
  }
  if (n == UV_EOF) {
    uv_read_stop(s);
    self->reading_ = false;
    self->handler_->OnStreamEof();
    return;
  }
  if (n < 0) {
    self->Fail(static_cast<int>(n));
    return;
  }
  if (n == 0) return;
  if (self->tls_ != nullptr) {
    self->OnTlsRead(absl::string_view(buf->base, static_cast<size_t>(n)));
    return;
  }
  self->handler_->OnStreamRead(
      absl::string_view(buf->base, static_cast<size_t>(n)));
}

void TcpStream::EnableServerTls(SSL_CTX* ctx) {
  tls_ = std::make_unique<tls::TlsEngine>(ctx);
  tls_drain_.Init(tcp_.get()->loop, uv_idle_init, this);
}

void TcpStream::EnableClientTls(SSL_CTX* ctx, const std::string& host) {
  tls_ = std::make_unique<tls::TlsEngine>(ctx, host);
  tls_drain_.Init(tcp_.get()->loop, uv_idle_init, this);
}

void TcpStream::StartTlsClient() {
  // The handshake reads whatever the handler wants later.
  if (!StartReading()) {
    handler_->OnStreamConnected(UV_EPROTO);
    return;
  }
  if (tls_->Handshake() == tls::TlsEngine::kFailed) {
    handler_->OnStreamConnected(UV_EPROTO);
    return;
  }
  SendTlsOutput();  // The ClientHello.
}

std::string TcpStream::TlsError() const {
  return tls_ != nullptr ? tls_->error() : "";
}

void TcpStream::OnTlsRead(absl::string_view cipher) {
  tls_->Feed(cipher);
  if (!tls_->handshake_done()) {
    tls::TlsEngine::HandshakeResult r = tls_->Handshake();
    SendTlsOutput();  // Its messages (or the alert that ends it).
    if (closing_) return;
    if (r == tls::TlsEngine::kFailed) {
      if (tls_->client()) {
        handler_->OnStreamConnected(UV_EPROTO);
      } else {
        Fail(UV_EPROTO);
      }
      return;
    }
    if (r == tls::TlsEngine::kMore) return;
    if (tls_->client()) {
      handler_->OnStreamConnected(0);
      if (closing_) return;
      Flush();  // What was written before the handshake was done.
      if (closing_) return;
    } else {
      handler_->OnStreamSecured(tls_->alpn());
      if (closing_) return;
      Flush();  // Anything the handler wrote before the handshake was done.
      if (closing_) return;
    }
  }
  // The plaintext, a read buffer's worth at a time, while the handler
  // reads (it may stop, or close, from its callback).
  while (reading_ && !closing_ && !lingering_) {
    long n = tls_->Read(read_buffer_, read_size_);
    if (n > 0) {
      handler_->OnStreamRead(
          absl::string_view(read_buffer_, static_cast<size_t>(n)));
      // Nothing more fed: no SSL_read that could only say so.
      if (!tls_->HasBuffered()) break;
      continue;
    }
    if (n == tls::TlsEngine::kClosed) {
      // The peer's close_notify: its end, as a FIN is.
      SendTlsOutput();
      if (closing_) return;
      uv_read_stop(stream());
      reading_ = false;
      handler_->OnStreamEof();
      return;
    }
    if (n == tls::TlsEngine::kError) {
      SendTlsOutput();
      Fail(UV_EPROTO);
      return;
    }
    break;
  }
  if (!closing_) SendTlsOutput();  // Tickets, key updates.
}

void TcpStream::SendTlsOutput() {
  if (closing_) return;
  tls_->TakeOutput(&cipher_);
  if (!cipher_.empty()) Send(&cipher_);
}

void TcpStream::Write(std::string data) {
  WriteWith([&](std::string* out) {
    if (out->empty() && out->capacity() < data.size()) {
      *out = std::move(data);
    } else {
      out->append(data);
    }
  });
}

void TcpStream::ScheduleFlush() {
  if (closing_ || uv_is_active(flush_.handle())) return;
  uv_idle_start(flush_.get(), [](uv_idle_t* h) {
    uv_idle_stop(h);
    auto* self = static_cast<TcpStream*>(h->data);
    self->handler_->OnStreamFlush(self);
  });
}

size_t TcpStream::Queued() const { return out_.size() + WriteQueueSize(); }

size_t TcpStream::WriteQueueSize() const {
  return tcp_ ? tcp_.get()->write_queue_size : 0;
}

int TcpStream::WriteShared(absl::string_view data,
                           const std::shared_ptr<const std::string>& body) {
  if (closing_) return UV_ECANCELED;
  CancelScheduledFlush();  // What was gathered goes now.
  if (tls_ != nullptr) {
    // Encrypted, so copied: the body cannot go by reference.
    out_.append(data.data(), data.size());
    if (body != nullptr) out_.append(*body);
    Flush();
    return 0;
  }
  absl::string_view parts[3] = {
      out_, data, body != nullptr ? absl::string_view(*body) : ""};
  if (WriteQueueSize() == 0) {
    // Straight to the socket when it takes it all (the usual case): no
    // copy. An error is left to uv_write below.
    uv_buf_t bufs[3];
    unsigned int n = 0;
    for (absl::string_view p : parts) {
      if (!p.empty()) {
        bufs[n++] = uv_buf_init(const_cast<char*>(p.data()), p.size());
      }
    }
    int wrote = n == 0 ? 0 : uv_try_write(stream(), bufs, n);
    size_t done = wrote > 0 ? static_cast<size_t>(wrote) : 0;
    for (absl::string_view& p : parts) {
      size_t k = std::min(done, p.size());
      p.remove_prefix(k);
      done -= k;
    }
  }
  if (parts[0].empty() && parts[1].empty() && parts[2].empty()) {
    ClearOut();
    AfterWrite();
    return 0;
  }
  auto* w = new WriteReq{uv_write_t{}, absl::StrCat(parts[0], parts[1]),
                         parts[2].empty() ? nullptr : body};
  ClearOut();
  uv_buf_t bufs[2];
  unsigned int n = 0;
  if (!w->data.empty()) bufs[n++] = uv_buf_init(w->data.data(), w->data.size());
  if (!parts[2].empty()) {
    bufs[n++] =
        uv_buf_init(const_cast<char*>(parts[2].data()), parts[2].size());
  }
  int rc = uv_write(&w->req, stream(), bufs, n, OnWrite);
  if (rc != 0) {
    delete w;
    return rc;
  }
  if (!SendTimerArmed() && WriteQueueSize() > 0) ArmSendTimer();
  return 0;
}

void TcpStream::ClearOut() { ClearBuffer(&out_); }

void TcpStream::ClearBuffer(std::string* buffer) {
  if (buffer->capacity() > kKeptOutBytes) {
    std::string().swap(*buffer);  // An idle connection keeps no big buffer.
  } else {
    buffer->clear();  // Its capacity serves the next write.
  }
}

void TcpStream::CancelScheduledFlush() {
  if (!closing_) uv_idle_stop(flush_.get());
}

void TcpStream::Flush() {
  if (closing_ || out_.empty()) return;
  if (tls_ != nullptr) {
    if (!tls_->handshake_done()) return;  // Written once it is.
    if (!tls_->Encrypt(out_, &cipher_)) {
      Fail(UV_EPROTO);
      return;
    }
    ClearOut();
    Send(&cipher_);
    return;
  }
  Send(&out_);
}

void TcpStream::Send(std::string* bytes) {
  size_t done = 0;
  if (tcp_.get()->write_queue_size == 0) {
    // Straight to the socket when nothing waits before it. An error is
    // left to uv_write below, which reports it in OnWrite.
    uv_buf_t buf = uv_buf_init(bytes->data(), bytes->size());
    int n = uv_try_write(stream(), &buf, 1);
    if (n > 0) done = static_cast<size_t>(n);
  }
  if (done == bytes->size()) {
    ClearBuffer(bytes);
    AfterWrite();
    return;
  }
  auto* w = new WriteReq{uv_write_t{},
                         done == 0 ? std::move(*bytes) : bytes->substr(done),
                         nullptr};
  ClearBuffer(bytes);
  uv_buf_t buf = uv_buf_init(w->data.data(), w->data.size());
  if (int rc = uv_write(&w->req, stream(), &buf, 1, OnWrite); rc != 0) {
    delete w;
    Fail(rc);
    return;
  }
  if (!SendTimerArmed() && WriteQueueSize() > 0) ArmSendTimer();
}

void TcpStream::OnWrite(uv_write_t* req, int status) {
  std::unique_ptr<WriteReq> w(reinterpret_cast<WriteReq*>(req));
  auto* self = static_cast<TcpStream*>(req->handle->data);
  if (self == nullptr || self->closing_) return;
  if (status < 0) {
    self->Fail(status);
    return;
  }
  self->AfterWrite();
}

void TcpStream::AfterWrite() {
  size_t queued = Queued();
  if (queued > 0) {
    ArmSendTimer();  // Progress: the wait starts over.
  } else if (SendTimerArmed()) {
    uv_timer_stop(timer_.get());
  }
  handler_->OnStreamWritten(queued);
}

bool TcpStream::SendTimerArmed() const {
  // The one timer is the send timeout's until the lingering close.
  return !lingering_ && uv_is_active(timer_.handle());
}

void TcpStream::ArmSendTimer() {
  if (send_timeout_ms_ == 0 || lingering_) return;
  uv_timer_start(
      timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<TcpStream*>(t->data);
        // The peer stopped reading.
        self->Fail(UV_ETIMEDOUT);
      },
      send_timeout_ms_, 0);
}

bool TcpStream::Shutdown() {
  if (closing_) return false;
  if (tls_ != nullptr) {
    // close_notify before the FIN, so the peer knows the end is ours.
    tls_->Shutdown();
    SendTlsOutput();
    if (closing_) return false;
  }
  auto* req = new uv_shutdown_t;
  if (uv_shutdown(req, stream(), [](uv_shutdown_t* r, int) { delete r; }) !=
      0) {
    delete req;
    return false;
  }
  return true;
}

bool TcpStream::LingeringClose(uint64_t linger_ms) {
  if (closing_) return false;
  if (lingering_) return true;
  if (!Shutdown()) return false;
  lingering_ = true;
  uv_timer_start(
      timer_.get(),
      [](uv_timer_t* t) {
        // The peer kept sending (or kept the connection) too long.
        static_cast<TcpStream*>(t->data)->Fail(UV_ETIMEDOUT);
      },
      linger_ms, 0);
  if (!reading_ && uv_read_start(stream(), OnAlloc, OnRead) == 0) {
    reading_ = true;
  }
  return true;
}

void TcpStream::Fail(int status) {
  if (closing_) return;
  handler_->OnStreamError(status);
}

void TcpStream::Close(Handle<uv_tcp_t>::Closed closed, void* arg) {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  timer_.Close();
  flush_.Close();
  tls_drain_.Close();
  tcp_.Close(closed, arg);
}

}  // namespace modelplane::uv
