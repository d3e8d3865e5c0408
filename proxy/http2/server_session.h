// The HTTP/2 server side of a client connection, on nghttp2, bytes in and
// bytes out (no sockets): Feed() what the client sent, Produce() what is
// due to it. Requests arrive per stream as the same RequestHead the HTTP/1.1
// codec gives, so the rest of the proxy serves both alike.
//
//   ServerSession s(&visitor, ServerSession::Options{});
//   if (!s.Feed(bytes)) ...;          // Visitor: heads, bodies, ends.
//   s.SubmitHead(id, 200, headers, std::nullopt, /*end_stream=*/false);
//   s.SubmitData(id, "data: ...\n\n");
//   s.SubmitEnd(id);
//   std::string out;
//   s.Produce(&out, 64 << 10);       // Write `out` to the socket.
//
// Flow control: response bytes wait in a per-stream buffer until the
// stream's and the connection's windows let nghttp2 take them, and Produce()
// stops once it has produced about what the caller asks for (the caller
// asks for nothing while the socket is backed up). Buffered() tells the caller
// when to stop reading its source; OnStreamWritable() when to go on.
//
// Limits: SETTINGS_MAX_CONCURRENT_STREAMS (nghttp2 refuses the excess
// streams), header list size (431), body size (413), and a rapid-reset
// guard: more client RST_STREAMs than `max_resets_per_second` in a second
// ends the session with GOAWAY ENHANCE_YOUR_CALM (CVE-2023-44487).
//
// Visitor callbacks run inside Feed() and Produce(); the visitor may submit
// from them (never Feed or Produce). Single-threaded.
#ifndef MODELPLANE_PROXY_HTTP2_SERVER_SESSION_H_
#define MODELPLANE_PROXY_HTTP2_SERVER_SESSION_H_

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "proxy/http1/codec.h"

namespace modelplane::proxy::http2 {

class StreamVisitor {
 public:
  virtual ~StreamVisitor() = default;
  // A request head (pseudo-headers folded in: method, target from :path, a
  // Host header from :authority).
  virtual void OnStreamHead(int32_t id, http1::RequestHead head) = 0;
  virtual void OnStreamBody(int32_t id, absl::string_view data) = 0;
  virtual void OnStreamEnd(int32_t id) = 0;
  // The request is over a limit: answer `status` (413, 431); nothing more
  // of it arrives. May come instead of the head (431) or after it (413).
  virtual void OnStreamError(int32_t id, int status,
                             const std::string& message) = 0;
  // The stream is gone (after its response, or reset by either side when
  // `error_code` is not NO_ERROR). Only for streams the visitor heard of.
  virtual void OnStreamClose(int32_t id, uint32_t error_code) = 0;
  // A stream whose Buffered() the caller found too high has drained.
  virtual void OnStreamWritable(int32_t id) = 0;
};

class ServerSession {
 public:
  struct Options {
    uint32_t max_concurrent_streams = 100;
    size_t max_header_bytes = 64 << 10;
    uint64_t max_body_bytes = 64 << 20;
    // Request bodies: the window a stream (and the connection) opens to the
    // client.
    int32_t stream_window = 1 << 20;
    int32_t connection_window = 16 << 20;
    int max_resets_per_second = 100;
    // Below this, a stream that reported congestion is writable again.
    size_t writable_below = 256 << 10;
  };

  ServerSession(StreamVisitor* visitor, Options options);
  ~ServerSession();
  ServerSession(const ServerSession&) = delete;
  ServerSession& operator=(const ServerSession&) = delete;

  // An HTTP/1.1 request carried `Upgrade: h2c` with `settings` (its
  // HTTP2-Settings header, base64url): makes it stream 1, whose request is
  // complete. False (nothing changed) when the settings are malformed; the
  // caller then answers over HTTP/1.1. Call before anything else.
  bool Upgrade(absl::string_view settings, bool head_request);

  // What the client sent. False once the session cannot go on (a protocol
  // error): Produce() what is due (a GOAWAY), then close.
  bool Feed(absl::string_view data);
  // Appends frames due to the client to `*out` until it holds at least
  // `max_bytes` or nothing is due.
  void Produce(std::string* out, size_t max_bytes);
  // Nothing more will be read or written: close the connection (once the
  // produced bytes are out).
  bool done() const;

  // Responses. Ignored for streams that are gone. `headers` as from an
  // HTTP/1.1 upstream: names are lower-cased, hop-by-hop ones dropped.
  void SubmitHead(int32_t id, int status, const http1::Headers& headers,
                  std::optional<uint64_t> content_length, bool end_stream);
  void SubmitContinue(int32_t id);
  void SubmitData(int32_t id, absl::string_view data);
  void SubmitEnd(int32_t id);
  // A broken response (INTERNAL_ERROR) or a refused one.
  void Reset(int32_t id, uint32_t error_code);
  // A broken response whose buffered bytes go out first (an error event,
  // what the upstream sent before it broke): RST_STREAM once they are sent
  // (at once when none wait).
  void ResetAfterData(int32_t id, uint32_t error_code);
  // Response bytes of stream `id` not yet handed to nghttp2. When this is
  // over the caller's bound it should call WantWritable and pause.
  size_t Buffered(int32_t id) const;
  void WantWritable(int32_t id);
  // Streams with buffered bytes that made no progress for `limit_ns`.
  std::vector<int32_t> Stalled(int64_t now_ns, int64_t limit_ns) const;
  // Streams whose request is not complete and has not moved (no HEADERS or
  // DATA frame) for `head_limit_ns` while its head is incomplete, or
  // `body_limit_ns` while its body is: a silent client (slowloris).
  struct StalledRequest {
    int32_t id;
    bool head_complete;  // The visitor heard of it.
  };
  std::vector<StalledRequest> StalledRequests(int64_t now_ns,
                                              int64_t head_limit_ns,
                                              int64_t body_limit_ns) const;
  // The rest of this stream's request is ignored (it was answered).
  void IgnoreRequest(int32_t id);
  // Streams opened so far (the connection's idle timer starts over when it
  // moves).
  uint64_t streams_opened() const { return streams_opened_; }

  // Graceful shutdown: GOAWAY(NO_ERROR) naming the last stream taken; those
  // finish, new ones are refused.
  void Shutdown();
  size_t open_streams() const { return streams_.size(); }
  bool calmed() const { return calmed_; }

 private:
  struct Stream {
    int32_t id = 0;
    size_t header_bytes = 0;
    http1::RequestHead head;
    std::string authority;
    uint64_t body_bytes = 0;
    bool known = false;   // The visitor heard of it.
    bool failed = false;  // Over a limit: the rest of the request ignored.
    bool request_done = false;
    bool deferred = false;
    bool ended = false;  // SubmitEnd: EOF once the buffer is empty.
    bool want_writable = false;
    // ResetAfterData: RST_STREAM with this code once `out` is sent.
    bool reset_pending = false;
    uint32_t reset_code = 0;
    int64_t request_progress_ns = 0;  // Latest HEADERS or DATA frame.
    std::string out;
    size_t out_offset = 0;
    int64_t progress_ns = 0;
  };

  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame,
                            void* user);
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame,
                      const uint8_t* name, size_t namelen, const uint8_t* value,
                      size_t valuelen, uint8_t flags, void* user);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame,
                         void* user);
  static int OnDataChunk(nghttp2_session*, uint8_t flags, int32_t id,
                         const uint8_t* data, size_t len, void* user);
  static int OnFrameSend(nghttp2_session*, const nghttp2_frame* frame,
                         void* user);
  static int OnStreamClosed(nghttp2_session*, int32_t id, uint32_t error_code,
                            void* user);
  static ssize_t ReadData(nghttp2_session*, int32_t id, uint8_t* buf,
                          size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void* user);

  // The server's SETTINGS (after an upgrade, if any).
  void Start();
  Stream* Find(int32_t id) const;
  void HeadComplete(Stream* s);
  void RequestEnded(Stream* s);
  void Fail(Stream* s, int status, const std::string& message);
  void CountReset();

  StreamVisitor* visitor_;
  Options options_;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::unique_ptr<Stream>> streams_;
  mutable Stream* last_found_ = nullptr;  // Find's last answer.
  std::vector<int32_t> writable_;         // To tell the visitor after Produce.
  int64_t reset_window_start_ns_ = 0;
  int resets_in_window_ = 0;
  bool calmed_ = false;
  bool started_ = false;
  uint64_t streams_opened_ = 0;
  // Request body bytes of the streams still open: bounded by
  // max_body_bytes per connection, as on HTTP/1.1 (nghttp2 opens the
  // windows again as soon as DATA arrives).
  uint64_t open_body_bytes_ = 0;
  bool fatal_ = false;
};

}  // namespace modelplane::proxy::http2

#endif  // MODELPLANE_PROXY_HTTP2_SERVER_SESSION_H_
