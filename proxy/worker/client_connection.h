// One client's HTTP/1.1 connection on a worker: reads requests (one at a
// time, pipelined ones in order), finds each one's model, holds it under the
// model's lease, forwards it upstream and streams the response back as it
// arrives (docs/proxy.md). Frees itself once its socket is closed.
//
// Loop thread only.
#ifndef MODELPLANE_PROXY_WORKER_CLIENT_CONNECTION_H_
#define MODELPLANE_PROXY_WORKER_CLIENT_CONNECTION_H_

#include <uv.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "proxy/http1/codec.h"
#include "proxy/lease/lease_broker.h"
#include "proxy/router/json_scanner.h"
#include "proxy/router/multipart_scanner.h"
#include "proxy/upstream/upstream_pool.h"
#include "proxy/worker/metrics.h"

namespace modelplane::proxy {

class Worker;

class ClientConnection : public http1::RequestVisitor,
                         public upstream::UpstreamObserver {
 public:
  explicit ClientConnection(Worker* worker);
  ~ClientConnection() override;

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  void Start();
  // Closes at once (a broken response, shutdown).
  void Close();
  // Shutdown: an idle connection closes now; one serving a request closes
  // once its response is complete.
  void Drain();

  // RequestVisitor.
  void OnRequestHead(http1::RequestHead head) override;
  void OnRequestBody(absl::string_view data) override;
  void OnRequestEnd() override;
  void OnRequestError(int status, const std::string& message) override;

  // UpstreamObserver.
  void OnUpstreamHead(http1::ResponseHead head) override;
  void OnUpstreamBody(absl::string_view data) override;
  void OnUpstreamEnd() override;
  void OnUpstreamError(const std::string& message, bool before_head,
                       bool timed_out) override;

 private:
  enum class BodyScan { kNone, kJson, kMultipart };

  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf);
  static void OnRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);
  void FeedInput();
  void Dispatch();
  void Forward(const std::string& model_name, std::string target);
  void OnLease(absl::StatusOr<lease::Lease> lease);
  void Respond(int status, const std::string& content_type,
               const std::string& body,
               const http1::Headers& extra = http1::Headers());
  void RespondError(int status, const std::string& message);
  void RespondModels();
  void RespondRunning();
  void RespondMetrics();
  // The loading head, then one comment line (timer).
  void SendLoadingComment();
  // CORS preflight (OPTIONS on any path), answered before auth.
  void RespondPreflight();
  // CORS: echoes the request's Origin into `headers` when it had one.
  void AllowOrigin(http1::Headers* headers) const;
  // Counts the request (and logs it with --access-log), then forgets it.
  void RecordRequest();
  // With apiKeys configured: the request carries one (then auth headers are
  // dropped before forwarding).
  bool Authorized();
  void Unload(const std::string& model);
  // Header-read timeout while a head arrives, body timeout between body
  // reads, idle timeout between requests, nothing while a request is served.
  void UpdateTimer();
  static void OnTimer(uv_timer_t* t);
  // The response is complete: release, then the next request.
  void FinishRequest();
  void Write(std::string data);
  static void OnWrite(uv_write_t* req, int status);
  // (Re)starts the send timeout: bytes wait and the client made progress.
  void ArmSendTimer();

  Worker* worker_;
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  uv_timer_t send_timer_;  // Armed while written bytes wait for the client.
  bool send_timer_armed_ = false;
  int open_handles_ = 3;
  enum class TimerMode {
    kNone,
    kIdle,
    kHead,
    kBody,
    kLoading
  } timer_mode_ = TimerMode::kNone;
  bool closing_ = false;
  bool draining_ = false;
  std::string peer_;
  http1::RequestParser parser_;
  std::string input_;  // Read but not yet parsed (pipelined requests).
  bool feeding_ = false;

  // The request being served.
  bool in_request_ = false;
  uint64_t request_generation_ = 0;  // Bumped by every request head.
  bool reading_client_ = false;      // uv_read_start'ed.
  bool reading_body_ = false;  // Between the head and the end of the body.
  // A streaming request waiting for its lease (loading comments are due).
  bool loading_ = false;
  uint64_t ticket_ = 0;  // The broker's, while waiting for the lease.
  // The 200 event-stream head went out before the model answered: what
  // follows (the stream, or an error as an SSE event) goes in its body.
  bool loading_head_sent_ = false;
  std::string upstream_error_;  // A non-2xx upstream body, after that head.
  bool upstream_failed_ = false;
  std::string origin_;  // The request's Origin (CORS), or "".
  http1::RequestHead head_;
  std::string body_;
  BodyScan scan_ = BodyScan::kNone;
  router::JsonScanner json_;
  std::unique_ptr<router::MultipartScanner> multipart_;
  std::string boundary_;
  std::string leased_model_;     // Non-empty while a lease admits this request.
  upstream::Timeouts timeouts_;  // The routed model's.
  std::unique_ptr<upstream::UpstreamRequest> upstream_;
  bool responding_ = false;  // The response head went out.
  http1::Framing framing_ = http1::Framing::kChunked;
  bool keep_alive_ = true;
  bool close_after_write_ = false;
  bool reading_upstream_ = true;
  // For metrics and the access log (uv_hrtime, ns).
  RequestRecord record_;
  uint64_t head_ns_ = 0;
  uint64_t admit_ns_ = 0;
  uint64_t sent_ns_ = 0;
  uint64_t response_bytes_ = 0;
  // Lets posted lease answers find out that the connection is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_CLIENT_CONNECTION_H_
