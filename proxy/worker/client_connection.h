// One client's connection on a worker: the socket (a uv::TcpStream from
// common/uv/: gathered writes, backpressure, the send timeout, the
// lingering close), the connection's timer, draining and the close. What
// is spoken on it is a Session (session.h): HTTP/1.1 (Http1Session) until
// the client shows it speaks HTTP/2, by the connection preface (prior
// knowledge, told from the first bytes here) or by asking for
// `Upgrade: h2c` (Http1Session hands over); then Http2Session. Either way
// each request is an Exchange (docs/proxy.md). Frees itself once its
// stream is closed.
//
// Loop thread only.
#ifndef MODELPLANE_PROXY_WORKER_CLIENT_CONNECTION_H_
#define MODELPLANE_PROXY_WORKER_CLIENT_CONNECTION_H_

#include <uv.h>

#include <memory>
#include <string>
#include <utility>

#include "common/uv/lazy_timer.h"
#include "common/uv/tcp_stream.h"
#include "proxy/worker/session.h"

namespace modelplane::proxy {

class Worker;

class ClientConnection : private uv::TcpStream::Handler {
 public:
  explicit ClientConnection(Worker* worker);
  ~ClientConnection() override;

  uv_stream_t* stream() { return stream_.stream(); }
  uv_tcp_t* tcp() { return stream_.tcp(); }
  void Start();
  // Closes at once (a broken response, shutdown).
  void Close();
  // Closes once everything written is out: FIN first, then what the client
  // still sends is read and dropped until it closes too or 2 s pass
  // (nginx's lingering close), so that unread input does not turn the close
  // into a reset that can destroy the answer before the client reads it.
  void CloseGracefully();
  // Shutdown: an idle connection closes now; one serving a request closes
  // once its response is complete (HTTP/2: GOAWAY, then once its streams
  // are done).
  void Drain();

  Worker* worker() { return worker_; }
  const std::string& peer() const { return peer_; }
  bool closing() const { return closing_; }
  bool draining() const { return draining_; }
  void set_draining() { draining_ = true; }
  // Closes gracefully once nothing waits for the client.
  void CloseAfterWrite() { close_after_write_ = true; }
  bool close_after_write() const { return close_after_write_; }

  // Gathers `data` for the socket (out soon: the stream's flush). Returns
  // the bytes gathered.
  size_t Write(std::string data);
  // The same, with `append(std::string* out)` writing the bytes in place: a
  // small response read from the upstream in one piece (head, body, last
  // chunk) goes out in one write, from a buffer kept across requests.
  template <typename Append>
  size_t WriteWith(Append&& append) {
    return Wrote(stream_.WriteWith(std::forward<Append>(append)));
  }
  // The session's Flush, once the current callback is over.
  void ScheduleFlush() { stream_.ScheduleFlush(); }
  // The session's Flush now (a scheduled one is served by it).
  void Flush();
  // What was gathered, to the socket now.
  void FlushStream() { stream_.Flush(); }
  // Bytes not yet taken by the client: gathered or in libuv's queue.
  size_t Queued() const { return stream_.Queued(); }
  void StopReading() { stream_.StopReading(); }
  void StartReading();

  // The timer follows the session's WantedTimer (re-armed only when the
  // mode changes: never by a trickle of bytes).
  void UpdateTimer();
  // Re-arms the timer for `mode` from now (progress, a repeating sweep).
  void RestartTimer(TimerMode mode);
  // The next UpdateTimer arms the timer afresh even for the same mode.
  void ForgetTimerMode() { timer_mode_ = TimerMode::kNone; }
  TimerMode timer_mode() const { return timer_mode_; }

  // An HTTP/1.1 request asked for h2c and was answered 101: `next` speaks
  // from now on. The session that handed over stays (unused) until the
  // connection goes: it is on the stack.
  void SwitchSession(std::unique_ptr<Session> next);
  Session* session() { return session_.get(); }

 private:
  // uv::TcpStream::Handler.
  void OnStreamRead(absl::string_view data) override;
  void OnStreamEof() override;
  void OnStreamError(int status) override;
  // Some bytes reached the socket: a close waiting for them, and the
  // session (a paused upstream, HTTP/2 frames) follow from what is left.
  void OnStreamWritten(size_t queued) override;
  void OnStreamFlush(uv::TcpStream*) override { Flush(); }
  void OnStreamSecured(absl::string_view alpn) override;
  static void Closed(void* c);

  // The first bytes tell the protocol: HTTP/2's preface, or HTTP/1.x.
  // False while too few have come to tell.
  bool Detect();
  size_t Wrote(size_t n);
  uint64_t TimerMs(TimerMode mode) const;
  static void OnTimer(void* data);

  Worker* worker_;
  uv::TcpStream stream_;
  uv::LazyTimer timer_;  // The mode's timeout (timer_mode_).
  TimerMode timer_mode_ = TimerMode::kNone;
  std::string peer_;
  std::string first_bytes_;  // Read before the protocol is known.
  std::unique_ptr<Session> session_;
  std::unique_ptr<Session> handed_over_;  // An upgrade's HTTP/1.1 session.
  bool closing_ = false;
  bool draining_ = false;
  bool close_after_write_ = false;
  bool secured_ = false;  // TLS: the handshake is done.
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_CLIENT_CONNECTION_H_
