// A protocol spoken on a ClientConnection: HTTP/1.1 (Http1Session) or
// HTTP/2 (Http2Session), peers over the one connection type. The
// connection owns the socket (a uv::TcpStream), the timer, draining and the
// close; a session turns the client's bytes into exchanges and their
// answers into bytes, through the connection.
//
// Loop thread only; owned by its ClientConnection.
#ifndef MODELPLANE_PROXY_WORKER_SESSION_H_
#define MODELPLANE_PROXY_WORKER_SESSION_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace modelplane::proxy {

// The connection's one timer, by what it waits for.
enum class TimerMode {
  kNone,
  kIdle,       // Between requests (HTTP/2: no stream open).
  kHead,       // A request head arriving.
  kBody,       // Between a request body's reads.
  kSweep,      // HTTP/2 with streams open: stalled streams are looked for.
  kLinger,     // A tunnel whose client closed: the upstream's last bytes.
  kHandshake,  // TLS: the client's handshake (no session yet).
};

class Session {
 public:
  virtual ~Session() = default;

  // Bytes from the client (valid during the call).
  virtual void OnRead(absl::string_view data) = 0;
  // The client's FIN: true when the session goes on with it (a tunnel's
  // answer still flows); false and the connection closes.
  virtual bool OnEof() { return false; }
  // A flush is due (one was scheduled, or the socket can take more): what
  // the session has to send goes to the connection, then to the socket.
  virtual void Flush() = 0;
  // Some bytes reached the socket; `queued` still wait.
  virtual void OnWritten(size_t queued) = 0;
  // What the connection's timer should wait for now.
  virtual TimerMode WantedTimer() = 0;
  // The timer for `mode` ran out.
  virtual void OnTimer(TimerMode mode) = 0;
  // Shutdown: take no new request; the connection closes once what is in
  // flight is answered.
  virtual void Drain() = 0;
  // The connection is closing: every exchange is cancelled (they go with
  // the session, later: one may be on the stack now).
  virtual void CancelAll() = 0;
  // Whether a graceful close lingers (FIN, then the client's input read
  // and dropped); a tunnel whose client closed first just closes once its
  // last bytes are out.
  virtual bool LingerOnClose() const { return true; }
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_SESSION_H_
