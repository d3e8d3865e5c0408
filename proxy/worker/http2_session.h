// HTTP/2 on a ClientConnection (a Session, the peer of Http1Session): an
// http2::ServerSession whose streams each carry one Exchange. A stream is the
// exchange's ResponseSink: the answer goes out as HEADERS and DATA frames as
// the stream's and the connection's windows allow; the upstream read stops
// while more than the bound waits for a stream (no unbounded buffering). A
// client RST_STREAM cancels the exchange like an HTTP/1.1 disconnect; an
// upstream that breaks mid-response resets the stream (INTERNAL_ERROR).
//
// Loop thread only; owned by its ClientConnection.
#ifndef MODELPLANE_PROXY_WORKER_HTTP2_SESSION_H_
#define MODELPLANE_PROXY_WORKER_HTTP2_SESSION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "proxy/http1/codec.h"
#include "proxy/http2/server_session.h"
#include "proxy/worker/exchange.h"
#include "proxy/worker/session.h"

namespace modelplane::proxy {

class ClientConnection;

class Http2Session : public Session, public http2::StreamVisitor {
 public:
  explicit Http2Session(ClientConnection* connection);
  ~Http2Session() override;

  // Session. Frames are made on Flush (a libuv idle callback after what
  // asked for it: every frame one event made goes out in one write, and no
  // stream is freed while its exchange is on the stack), while the
  // socket's queue is under a bound.
  void OnRead(absl::string_view data) override;
  void Flush() override;
  void OnWritten(size_t queued) override;
  // Idle with no stream open; else a sweep for stalled streams.
  TimerMode WantedTimer() override;
  void OnTimer(TimerMode mode) override;
  // GOAWAY; the connection closes once its streams are done.
  void Drain() override;

  http2::ServerSession& session() { return session_; }
  // h2c: takes the HTTP/1.1 request's HTTP2-Settings; false if malformed.
  bool AcceptUpgrade(absl::string_view settings, bool head_request);
  // Serves the upgraded request as stream 1 (after the 101 went out).
  void ServeUpgraded(http1::RequestHead head);
  // The connection is closing: every exchange is cancelled (the streams go
  // with this object).
  void CancelAll() override;
  // Resets the streams whose client took none of their answer for the send
  // timeout, and ends those whose request stopped arriving (header or body
  // timeout: 408 when its head is known, else RST_STREAM).
  void ResetStalled();

  // StreamVisitor.
  void OnStreamHead(int32_t id, http1::RequestHead head) override;
  void OnStreamBody(int32_t id, absl::string_view data) override;
  void OnStreamEnd(int32_t id) override;
  void OnStreamError(int32_t id, int status,
                     const std::string& message) override;
  void OnStreamClose(int32_t id, uint32_t error_code) override;
  void OnStreamWritable(int32_t id) override;

 private:
  class Stream;
  Stream* Open(int32_t id);
  Stream* Find(int32_t id);

  ClientConnection* connection_;
  http2::ServerSession session_;
  uint64_t streams_seen_ = 0;  // ServerSession::streams_opened() seen.
  // Declared after the session: destroyed (cancelled) before it.
  std::map<int32_t, std::unique_ptr<Stream>> streams_;
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_HTTP2_SESSION_H_
