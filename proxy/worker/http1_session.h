// HTTP/1.1 on a ClientConnection: requests one at a time, pipelined ones
// answered in order, each an Exchange whose ResponseSink this is (the
// answer framed: Content-Length, chunked, until close; nothing for HEAD
// and bodiless statuses). A request for `Upgrade: h2c` hands the
// connection over to an Http2Session; a WebSocket handshake answered 101
// makes the connection a tunnel to the upstream until either side closes.
//
// Loop thread only; owned by its ClientConnection.
#ifndef MODELPLANE_PROXY_WORKER_HTTP1_SESSION_H_
#define MODELPLANE_PROXY_WORKER_HTTP1_SESSION_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "proxy/http1/codec.h"
#include "proxy/worker/client_connection.h"
#include "proxy/worker/exchange.h"
#include "proxy/worker/session.h"

namespace modelplane::proxy {

class Http1Session : public Session,
                     public http1::RequestVisitor,
                     public ResponseSink {
 public:
  explicit Http1Session(ClientConnection* connection);
  ~Http1Session() override;

  // Session.
  void OnRead(absl::string_view data) override;
  bool OnEof() override;
  void Flush() override;
  void OnWritten(size_t queued) override;
  TimerMode WantedTimer() override;
  void OnTimer(TimerMode mode) override;
  void Drain() override;
  void CancelAll() override;
  bool LingerOnClose() const override { return !tunnel_client_done_; }

  // RequestVisitor.
  void OnRequestHead(http1::RequestHead head) override;
  void OnRequestBody(absl::string_view data) override;
  void OnRequestEnd() override;
  void OnRequestError(int status, const std::string& message) override;

  // ResponseSink (http1_session_sink.cc).
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
  // Writes what an upstream read gave at once.
  void FlushNow() override;
  // A WebSocket handshake answered 101: the connection becomes a tunnel to
  // the upstream until either side closes.
  bool SendSwitch(const http1::Headers& headers) override;
  void OnTunnelWritable() override;

 private:
  void FeedInput();
  // Feeds `data` to the parser while it takes requests (not paused behind
  // one in flight, not failed, not handed over); returns the bytes it used.
  size_t Parse(absl::string_view data);
  // `Upgrade: h2c` on a request without a body: 101, then HTTP/2.
  bool TryUpgrade();
  // Gathers for the connection, counted as the exchange's bytes sent.
  void Write(std::string data);
  template <typename Append>
  void WriteWith(Append&& append);

  ClientConnection* connection_;
  http1::RequestParser parser_;
  std::string input_;  // Read but not yet parsed (pipelined requests).
  bool feeding_ = false;
  // The request being served.
  std::unique_ptr<Exchange> exchange_;
  bool in_request_ = false;
  bool reading_body_ = false;  // Between the head and the end of the body.
  std::optional<http1::RequestHead> upgrade_;  // An h2c upgrade asked for.
  bool handed_over_ = false;                   // To HTTP/2, by an upgrade.
  http1::Framing framing_ = http1::Framing::kChunked;
  bool keep_alive_ = true;
  // Switched protocols: what the client sends goes to the exchange's
  // upstream as it is (Exchange::TunnelIn), never to the parser.
  bool tunnel_ = false;
  // The client closed its side of a tunnel: the upstream's last bytes still
  // go to it, for a while (TimerMode::kLinger).
  bool tunnel_client_done_ = false;
};

template <typename Append>
void Http1Session::WriteWith(Append&& append) {
  size_t n = connection_->WriteWith(std::forward<Append>(append));
  if (n > 0 && exchange_ != nullptr) exchange_->AddSent(n);
}

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_HTTP1_SESSION_H_
