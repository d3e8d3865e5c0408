// One client's connection on a worker. It speaks HTTP/1.1 (requests one at
// a time, pipelined ones answered in order) until the client shows it speaks
// HTTP/2: by the connection preface (prior knowledge) or by asking for
// `Upgrade: h2c`; then its streams are served by Http2Streams. Either way
// each request is an Exchange (docs/proxy.md). Its socket is a
// uv::TcpStream (common/uv/: gathered writes, backpressure, the send timeout,
// the lingering close); it frees itself once the stream is closed.
//
// Loop thread only.
#ifndef MODELPLANE_PROXY_WORKER_CLIENT_CONNECTION_H_
#define MODELPLANE_PROXY_WORKER_CLIENT_CONNECTION_H_

#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/uv/lazy_timer.h"
#include "common/uv/tcp_stream.h"
#include "proxy/http1/codec.h"
#include "proxy/worker/exchange.h"

namespace modelplane::proxy {

class Http2Streams;
class Worker;

class ClientConnection : public http1::RequestVisitor,
                         public ResponseSink,
                         private uv::TcpStream::Handler {
 public:
  explicit ClientConnection(Worker* worker);
  ~ClientConnection() override;

  uv_stream_t* stream() { return stream_.stream(); }
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
  // Writes what is gathered (HTTP/2: produces the frames due first), soon:
  // once the current callback is over.
  void ScheduleFlush();

  // RequestVisitor (HTTP/1.1).
  void OnRequestHead(http1::RequestHead head) override;
  void OnRequestBody(absl::string_view data) override;
  void OnRequestEnd() override;
  void OnRequestError(int status, const std::string& message) override;

  // ResponseSink (HTTP/1.1 framing of the exchange's answer).
  void SendHead(int status, absl::string_view reason,
                const http1::Headers& headers,
                std::optional<uint64_t> content_length) override;
  void SendResponse(int status, const http1::Headers& headers,
                    absl::string_view body) override;
  void SendContinue() override;
  void SendData(absl::string_view data) override;
  void SendEnd() override;
  void Abort() override;
  bool Congested() override;
  // HTTP/1.1 writes what an upstream read gave at once; an HTTP/2
  // connection keeps its flush for the next loop turn (a flush may end
  // streams, and the exchange calling is on the stack).
  void FlushNow() override;
  // A WebSocket handshake answered 101: the connection becomes a tunnel to
  // the upstream until either side closes.
  bool SendSwitch(const http1::Headers& headers) override;
  void OnTunnelWritable() override;

 private:
  // uv::TcpStream::Handler.
  void OnStreamRead(absl::string_view data) override;
  void OnStreamEof() override;
  void OnStreamError(int status) override;
  // Some bytes reached the socket: a close waiting for them, and a paused
  // upstream (or HTTP/2 frames) follow from what is left.
  void OnStreamWritten(size_t queued) override;
  void OnStreamFlush(uv::TcpStream*) override { Flush(); }
  static void Closed(void* c);

  void FeedInput();
  // Feeds `data` to the HTTP/1.1 parser while it takes requests (not
  // paused behind one in flight, not failed); returns the bytes it used.
  size_t Parse(absl::string_view data);
  // The first bytes are the HTTP/2 preface: from now on HTTP/2. False while
  // too few bytes have come to tell.
  bool DetectPreface();
  // `Upgrade: h2c` on a request without a body: 101, then HTTP/2.
  bool TryUpgrade();
  void StartHttp2();
  void Flush();
  // Header-read timeout while a head arrives, body timeout between body
  // reads, idle timeout between requests, nothing while a request is served.
  // HTTP/2: idle timeout with no stream open, else a sweep for stalled
  // streams.
  void UpdateTimer();
  static void OnTimer(void* data);
  // Gathers `data` for the socket (out soon: the stream's flush).
  void Write(std::string data);
  // The same, with `append(std::string* out)` writing the bytes in place: a
  // small response read from the upstream in one piece (head, body, last
  // chunk) goes out in one write, from a buffer kept across requests.
  template <typename Append>
  void WriteWith(Append&& append) {
    Wrote(stream_.WriteWith(std::forward<Append>(append)));
  }
  void Wrote(size_t n);
  // Bytes not yet taken by the client: gathered or in libuv's queue.
  size_t Queued() const { return stream_.Queued(); }
  void StopReading() { stream_.StopReading(); }
  void StartReading();

  Worker* worker_;
  uv::TcpStream stream_;
  uv::LazyTimer timer_;  // The mode's timeout (timer_mode_).
  enum class TimerMode {
    kNone,
    kIdle,
    kHead,
    kBody,
    kSweep,
    kLinger
  } timer_mode_ = TimerMode::kNone;
  uint64_t TimerMs(TimerMode mode) const;
  // The client closed its side of a tunnel: the upstream's last bytes
  // still go to it, for a while (kLinger).
  bool tunnel_client_done_ = false;
  bool closing_ = false;
  bool draining_ = false;
  std::string peer_;
  http1::RequestParser parser_;
  std::string input_;  // Read but not yet parsed (pipelined requests).
  bool feeding_ = false;
  bool first_bytes_ = true;  // Nothing parsed yet: HTTP/2 may start.

  // HTTP/1.1: the request being served.
  std::unique_ptr<Exchange> exchange_;
  bool in_request_ = false;
  bool reading_body_ = false;  // Between the head and the end of the body.
  std::optional<http1::RequestHead> upgrade_;  // An h2c upgrade asked for.
  http1::Framing framing_ = http1::Framing::kChunked;
  bool keep_alive_ = true;
  bool close_after_write_ = false;
  // Switched protocols: what the client sends goes to the exchange's
  // upstream as it is (Exchange::TunnelIn), never to the parser.
  bool tunnel_ = false;

  // HTTP/2.
  std::unique_ptr<Http2Streams> h2_;
  uint64_t h2_streams_seen_ = 0;  // ServerSession::streams_opened() seen.
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_CLIENT_CONNECTION_H_
