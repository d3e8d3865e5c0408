// HTTP/1.1 requests to upstream model servers from one worker loop, over a
// keep-alive connection pool per upstream address. A response streams to the
// observer as it arrives; a cancelled request (the client left) closes its
// connection at once, which is how llama-server learns to stop generating.
//
//   UpstreamPool pool(loop);
//   auto req = pool.Send("http://127.0.0.1:5800", wire_bytes, false, &obs);
//   req.reset();  // Cancel: the connection is closed, not pooled.
//
// Loop thread only.
#ifndef MODELPLANE_PROXY_UPSTREAM_UPSTREAM_POOL_H_
#define MODELPLANE_PROXY_UPSTREAM_UPSTREAM_POOL_H_

#include <uv.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/tls/tls.h"
#include "proxy/http1/codec.h"

namespace modelplane::proxy::upstream {

struct OutgoingRequest {
  std::string head;
  std::shared_ptr<const std::string> body;  // May be null (no body).
};

class UpstreamObserver {
 public:
  virtual ~UpstreamObserver() = default;
  virtual void OnUpstreamHead(http1::ResponseHead head) = 0;
  virtual void OnUpstreamBody(absl::string_view data) = 0;
  // One read's bytes were passed on and the response goes on.
  virtual void OnUpstreamReadDone() {}
  // After a 101 (Send with `upgrade`): OnUpstreamHead had the 101, then
  // OnUpstreamBody has the upstream's bytes of the new protocol as they
  // come, and OnUpstreamEnd when it closes. This says that what Write
  // queued went out below kTunnelBuffer.
  virtual void OnUpstreamWritable() {}
  virtual void OnUpstreamEnd() = 0;
  // `before_head`: nothing of the response was passed on (answer 502, or
  // 504 when `timed_out`: no response head within the header timeout).
  // `unsent`: not null when the request never reached the upstream (no
  // connection was made): the request, which the observer may take back
  // to send it elsewhere.
  virtual void OnUpstreamError(const std::string& message, bool before_head,
                               bool timed_out,
                               OutgoingRequest* unsent = nullptr) = 0;
};

// Waits on an upstream (zero: no limit), and how an https:// one is
// trusted.
struct Timeouts {
  absl::Duration connect;
  absl::Duration response_header;  // From the request sent to the head.
  absl::Duration idle;             // A pooled idle connection's lifetime.
  // https://: the TLS handshake's time, on top of `connect`.
  absl::Duration tls_handshake = absl::Seconds(10);
  // TCP keepalive probes on the connection after this idle time; zero:
  // none (llama-swap's timeouts.keepalive).
  absl::Duration keepalive;
  // https://: the certificates that may sign the upstream's (PEM; null:
  // the system's roots; shared, so that a request carries it uncopied), or
  // none checked at all.
  std::shared_ptr<const std::string> tls_ca_pem;
  bool tls_insecure = false;
};

// A request in flight; destroying it before the end cancels it.
class UpstreamRequest {
 public:
  virtual ~UpstreamRequest() = default;
  // Flow control: stop (and resume) reading the response while the client
  // is slow to take it.
  virtual void SetReading(bool reading) = 0;
  // After a 101: bytes for the upstream (the client's side of the new
  // protocol). Returns whether more than kTunnelBuffer now waits for the
  // upstream (the caller stops reading its client until
  // OnUpstreamWritable).
  virtual bool Write(absl::string_view data) = 0;
  // After a 101: no more bytes for the upstream; it gets a FIN once what
  // Write queued is out. Its bytes still come until it closes.
  virtual void Shutdown() = 0;
};

// Bytes a tunnel lets wait for a slow upstream before its client is paused.
inline constexpr size_t kTunnelBuffer = 1 << 20;

// What goes to the upstream: the head (request line and headers) and the
// body, which is shared, never copied: a large upload is held once, by
// whoever needs it last (a write still in flight, a retry), and freed then.

class Connection;
struct Target;

class UpstreamPool {
 public:
  explicit UpstreamPool(uv_loop_t* loop);
  // Closes the idle connections.
  ~UpstreamPool();
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // Sends `request` (a whole HTTP/1.1 request: head and body) to the
  // upstream at `base_url` (http://host:port: an IP address, localhost, or
  // a host name resolved when a connection is made).
  // A bad URL is reported to the observer before Send returns.
  // `upgrade`: the request asks to switch protocols (a WebSocket
  // handshake); after a 101 the connection is a tunnel (see
  // UpstreamObserver) and is never pooled again.
  std::unique_ptr<UpstreamRequest> Send(const std::string& base_url,
                                        OutgoingRequest request,
                                        bool head_request,
                                        UpstreamObserver* observer,
                                        const Timeouts& timeouts = {},
                                        bool upgrade = false);

  size_t idle_connections() const;

 private:
  friend class Connection;
  void ReturnIdle(Connection* c);
  void Forget(Connection* c);

  uv_loop_t* loop_;
  std::map<std::string, std::vector<Connection*>> idle_;    // By Target key.
  std::map<std::string, std::unique_ptr<Target>> targets_;  // By URL.
  // https://: a client context per way of trusting; its key goes into the
  // connections' pool key.
  tls::ClientTlsContexts tls_contexts_;
  // One read buffer for every connection of the pool: libuv calls alloc and
  // then read back to back on the loop thread, and the response parser is
  // done with the bytes when read returns. (A buffer per connection cost
  // 64 KiB per open stream.)
  std::unique_ptr<char[]> read_buffer_;
};

}  // namespace modelplane::proxy::upstream

#endif  // MODELPLANE_PROXY_UPSTREAM_UPSTREAM_POOL_H_
