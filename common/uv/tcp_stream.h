// One TCP connection on a libuv loop, accepted or connected (Connect): the
// proxy's client and upstream connections stand on it.
//
//
// - gathered writes: what a callback writes is gathered in one buffer and
//   goes out in one write, once the callback is over (ScheduleFlush) or at
//   once (Flush); a large body may go by reference (WriteShared);
// - the uv_try_write fast path: with nothing queued before it, a write goes
//   straight to the socket, and only what the socket does not take is
//   queued through uv_write. (A write queued through libuv 1.44 re-arms the
//   epoll watcher once it has drained: one epoll_ctl per write.);
// - backpressure both ways: Queued() says what the peer has not taken, the
//   handler hears of each progress (OnWritten), and StopReading /
//   StartReading let TCP push back on the peer;
// - a send timeout: bytes that wait longer than it with no progress end the
//   connection (OnError(UV_ETIMEDOUT));
// - the lingering close (nginx's): FIN once everything is written, then what
//   the peer still sends is read and dropped until it closes too or the
//   linger time passes, so that unread input does not turn the close into a
//   reset that destroys the answer before the peer reads it;
// - TLS (server side, EnableServerTls): the socket's bytes go through a
//   tls::TlsEngine; the handler reads and writes plaintext as without it,
//   and hears when the handshake is done (OnStreamSecured);
// - deferred delete: Close(on_closed) closes every handle, and `on_closed`
//   runs once libuv is done with all of them, on a later turn of the loop,
//   never while one of the owner's methods is on the stack.
//
//   class Conn : public uv::TcpStream::Handler { ... };
//   stream_.Init(loop, this, read_buffer, size);
//   uv_accept(listener, stream_.stream());
//   stream_.StartReading();
//   stream_.Write("HTTP/1.1 200 OK\r\n...");   // Out after this callback.
//   stream_.Close([](void* c) { delete static_cast<Conn*>(c); }, this);
//
// Loop thread only.
#ifndef MODELPLANE_COMMON_UV_TCP_STREAM_H_
#define MODELPLANE_COMMON_UV_TCP_STREAM_H_

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "common/tls/tls.h"
#include "common/uv/handle.h"

namespace modelplane::uv {

class TcpStream {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // Bytes read; valid during the call only (the read buffer is shared).
    virtual void OnStreamRead(absl::string_view data) = 0;
    // The peer sent its FIN. Reading has stopped; writing may go on.
    virtual void OnStreamEof() = 0;
    // The connection is over: a read or write error, the send timeout
    // (UV_ETIMEDOUT), or a lingering close that ended (UV_EOF, or
    // UV_ETIMEDOUT when the linger time passed). The handler closes it.
    virtual void OnStreamError(int status) = 0;
    // Some bytes reached the socket; `queued` still wait for the peer. Also
    // from inside Flush or WriteShared, when the socket took it all.
    virtual void OnStreamWritten(size_t queued) = 0;
    // A flush asked for by ScheduleFlush is due: a handler that gathers
    // more with it (e.g. HTTP/2 frames) does so, then calls Flush().
    virtual void OnStreamFlush(TcpStream* stream) { stream->Flush(); }
    // Connect's answer: 0, or libuv's error (with client TLS: once the
    // handshake is done).
    virtual void OnStreamConnected(int status) { (void)status; }
    // TLS: the handshake is done; `alpn` is the protocol chosen ("" for
    // none). A failed handshake is OnStreamError(UV_EPROTO).
    virtual void OnStreamSecured(absl::string_view alpn) { (void)alpn; }
  };

  TcpStream() = default;
  ~TcpStream();  // Closes (without its on_closed).
  TcpStream(const TcpStream&) = delete;
  TcpStream& operator=(const TcpStream&) = delete;

  // Reads go to `read_buffer` (`size` bytes), which may be shared by every
  // stream of the loop: a read is handed on before the next one starts.
  int Init(uv_loop_t* loop, Handler* handler, char* read_buffer, size_t size);

  // Speaks TLS as the server from now on (before the first read), with
  // `ctx` (tls.h; the stream holds its own reference on it).
  void EnableServerTls(SSL_CTX* ctx);
  // Speaks TLS as the client to `host` (SNI and the name checked; tls.h)
  // once Connect's connection is made: OnStreamConnected then comes when
  // the handshake is done, or with UV_EPROTO when it failed (TlsError says
  // why).
  void EnableClientTls(SSL_CTX* ctx, const std::string& host);
  bool tls() const { return tls_ != nullptr; }
  // OpenSSL's reason for the last TLS failure ("" if none).
  std::string TlsError() const;

  uv_stream_t* stream() const { return tcp_.stream(); }
  uv_tcp_t* tcp() const { return tcp_.get(); }
  // The peer's IP address ("" when unknown).
  std::string PeerAddress() const;

  // Connects to `addr` (an outgoing stream): OnStreamConnected follows,
  // unless this returns libuv's error first.
  int Connect(const sockaddr* addr);

  bool StartReading();  // False on an error (the caller closes).
  void StopReading();
  bool reading() const { return reading_; }

  // Gathers `data` for the socket: out once the current callback is over.
  void Write(std::string data);
  // The same, with `append(std::string* out)` writing the bytes in place
  // (the gathering buffer is kept across writes). Returns the bytes added.
  template <typename Append>
  size_t WriteWith(Append&& append) {
    if (closing_) return 0;
    size_t before = out_.size();
    append(&out_);
    size_t n = out_.size() - before;
    if (n > 0) ScheduleFlush();
    return n;
  }
  // OnStreamFlush once the current callback is over (once, however many
  // ask).
  void ScheduleFlush();
  // A flush asked for is served now by the caller: no OnStreamFlush for it
  // (asks made after this schedule one again).
  void CancelScheduledFlush();
  // Hands what was gathered to the socket now; what the socket does not
  // take waits in libuv's queue.
  void Flush();
  // What was gathered, then `data`, then `body`, to the socket now, the
  // body by reference: what the socket does not take waits in libuv's
  // queue holding `body` (not a copy of it) until written. Returns libuv's
  // error when even queuing failed (the stream is not failed for it).
  int WriteShared(absl::string_view data,
                  const std::shared_ptr<const std::string>& body);
  // Bytes the peer has not taken: gathered, or in libuv's queue.
  size_t Queued() const;
  // Bytes in libuv's queue only.
  size_t WriteQueueSize() const;

  // Bytes that wait this long with no progress end the connection
  // (OnStreamError(UV_ETIMEDOUT)); 0: never.
  void set_send_timeout_ms(uint64_t ms) { send_timeout_ms_ = ms; }

  // A FIN once what is queued is out; reading goes on. False when it
  // cannot be sent.
  bool Shutdown();

  // The lingering close: call with nothing queued. FIN, then reads are
  // dropped until the peer closes or `linger_ms` pass (OnStreamError).
  // False when the FIN cannot be sent (the caller closes).
  bool LingeringClose(uint64_t linger_ms);
  bool lingering() const { return lingering_; }

  // Closes every handle (once); `closed(arg)` runs when libuv is done with
  // them all. No handler call is made after Close.
  void Close(Handle<uv_tcp_t>::Closed closed = nullptr, void* arg = nullptr);
  bool closing() const { return closing_; }

 private:
  struct WriteReq;
  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void OnRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  static void OnWrite(uv_write_t* req, int status);
  void AfterWrite();
  void ArmSendTimer();
  bool SendTimerArmed() const;
  void ClearOut();
  // The connection failed: the handler hears it once.
  void Fail(int status);
  // TLS: the socket's bytes into the engine, plaintext to the handler.
  void OnTlsRead(absl::string_view cipher);
  // Client TLS: the TCP connection is made; the handshake starts.
  void StartTlsClient();
  // TLS: what the engine has to send, to the socket.
  void SendTlsOutput();
  // Hands `bytes` to the socket: what it does not take is queued (the
  // gathering buffer, or TLS's).
  void Send(std::string* bytes);
  static void ClearBuffer(std::string* buffer);

  Handler* handler_ = nullptr;
  Handle<uv_tcp_t> tcp_;
  // The send timeout while bytes wait; the linger time once lingering.
  Handle<uv_timer_t> timer_;
  Handle<uv_idle_t> flush_;  // A flush is due.
  char* read_buffer_ = nullptr;
  size_t read_size_ = 0;
  std::string out_;  // Gathered for the next write.
  std::unique_ptr<tls::TlsEngine> tls_;
  std::string cipher_;  // TLS: encrypted, for the socket.
  // TLS: plaintext left in the engine when reading stopped is handed on
  // once it starts again, from this idle handle.
  Handle<uv_idle_t> tls_drain_;
  uint64_t send_timeout_ms_ = 0;
  bool reading_ = false;
  bool lingering_ = false;
  bool closing_ = false;
};

}  // namespace modelplane::uv

#endif  // MODELPLANE_COMMON_UV_TCP_STREAM_H_
