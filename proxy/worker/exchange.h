// One request served by modelproxy, whatever the protocol it came in: finds
// its model, holds it under the model's lease, forwards it upstream and
// passes the response on as it arrives, or answers it itself (/v1/models,
// /metrics, errors). What is about the wire (HTTP/1.1 framing and
// keep-alive, HTTP/2 frames and windows) is its ResponseSink's business.
//
//   Exchange x(worker, &sink, peer);
//   x.Begin(head); x.Body(bytes); x.End();   // The sink hears the answer.
//
// Loop thread only. Destroying an exchange that is still serving cancels it
// (counted as 499; the upstream learns at once; the lease is given back).
#ifndef MODELPLANE_PROXY_WORKER_EXCHANGE_H_
#define MODELPLANE_PROXY_WORKER_EXCHANGE_H_

#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/uv/handle.h"
#include "proxy/answers/answer.h"
#include "proxy/cluster/cluster.h"
#include "proxy/http1/codec.h"
#include "proxy/lease/lease_broker.h"
#include "proxy/router/json_scanner.h"
#include "proxy/router/multipart_scanner.h"
#include "proxy/router/route_table.h"
#include "proxy/router/router.h"
#include "proxy/router/snapshot.h"
#include "proxy/router/usage_scanner.h"
#include "proxy/upstream/upstream_pool.h"
#include "proxy/worker/metrics.h"

namespace modelplane::proxy {

class Worker;
class LocalStream;

// A body up to this is copied into the request's head buffer (one write);
// a larger one is handed to the upstream pool as it is.
inline constexpr size_t kInlineBodyBytes = 64 << 10;
// Freeing a body this large asks for the memory to go back to the system.
inline constexpr size_t kLargeBodyBytes = 1 << 20;

// Where an exchange's answer goes: an HTTP/1.1 connection or an HTTP/2
// stream.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // The final head. `content_length`: the body's length when known. The
  // sink sends no body for a HEAD request or a bodiless status.
  virtual void SendHead(int status, absl::string_view reason,
                        const http1::Headers& headers,
                        std::optional<uint64_t> content_length) = 0;
  // A head and its whole body at once (one write where it can be).
  virtual void SendResponse(int status, const http1::Headers& headers,
                            absl::string_view body) = 0;
  virtual void SendContinue() = 0;
  virtual void SendData(absl::string_view data) = 0;
  // The response is complete; the exchange is already finished (counted,
  // lease given back), and the sink may start the next request at once.
  virtual void SendEnd() = 0;
  // A broken response (the upstream died mid-way), never a clean end:
  // HTTP/1.1 closes the connection, HTTP/2 resets the stream. The exchange
  // is already finished.
  virtual void Abort() = 0;
  // More than the bound waits for the client: the exchange stops reading
  // the upstream until Exchange::OnWritable.
  virtual bool Congested() = 0;
  // What one upstream read gave is all here: a sink that can write it now
  // (rather than on the next loop turn) may. Each SSE chunk then leaves as
  // soon as it arrived.
  virtual void FlushNow() {}
  // The upstream switched protocols (a WebSocket handshake answered 101):
  // the sink sends the 101 with `headers` and from then on passes bytes
  // both ways as they are (SendData, Exchange::TunnelIn) until either side
  // closes. False when it cannot (HTTP/2 streams: no such requests reach
  // an upstream).
  virtual bool SendSwitch(const http1::Headers& headers) {
    (void)headers;
    return false;
  }
  // A paused tunnel's upstream took its bytes: read the client again.
  virtual void OnTunnelWritable() {}
};

class Exchange : public upstream::UpstreamObserver, private answers::Responder {
 public:
  Exchange(Worker* worker, ResponseSink* sink, std::string peer);
  ~Exchange() override;
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // A request: its head, body pieces, end. An exchange serves one request
  // at a time and may be begun again once its answer is complete.
  void Begin(http1::RequestHead head);
  void Body(absl::string_view data);
  void End();
  // Answers an error of the request itself (400, 408, 413, 431) before it
  // was dispatched; begins the exchange if no head was seen.
  void Fail(int status, const std::string& message);
  // The client is gone: nothing more is sent. Idempotent.
  void Cancel();
  // The sink drained below its bound: reading the upstream goes on.
  void OnWritable();
  // Bytes the sink put on the wire for this request (the access log).
  void AddSent(uint64_t n) { req_.response_bytes += n; }
  // A tunnel's client bytes, for the upstream. True when too many wait for
  // it: the sink stops reading until OnTunnelWritable.
  bool TunnelIn(absl::string_view data);
  // The tunnel's client closed its side: the upstream's side is closed
  // once what waits for it was written (a FIN, not a reset: nothing the
  // client sent last is lost), and its answer still reaches the client.
  void TunnelClientDone();

  const http1::RequestHead& head() const { return req_.head; }

  // UpstreamObserver.
  void OnUpstreamHead(http1::ResponseHead head) override;
  void OnUpstreamBody(absl::string_view data) override;
  void OnUpstreamReadDone() override;
  void OnUpstreamWritable() override;
  void OnUpstreamEnd() override;
  void OnUpstreamError(const std::string& message, bool before_head,
                       bool timed_out,
                       upstream::OutgoingRequest* unsent) override;

 private:
  // kForm: application/x-www-form-urlencoded that is not JSON (read whole:
  // forms are small).
  enum class BodyScan { kNone, kJson, kMultipart, kForm };

  // The request is whole: routed (router/router.h), admitted (the key, the
  // body budget), then answered here or forwarded.
  void Dispatch();
  // What the body scan found, for the router.
  router::Request RouterRequest();
  // Carries out the router's kModel decision: filters, the lease, the
  // upstream.
  void Forward(const router::Decision& d);
  // A peer's or a selector's request: the model named in `?model=` or a
  // urlencoded form (JSON and multipart bodies go through the filters)
  // becomes `name`.
  void RenameModelInQueryAndForm(const std::string& name);
  void ForwardToPeer(const router::PeerRoute& peer, const std::string& name,
                     std::string target);
  // A WebSocket for a model with compat.ignoreWebsockets: no lease, to a
  // node where it is READY, or 409 (exchange_routing.cc).
  void ForwardIgnoredWebSocket(const router::Route& route);
  // Chooses the node for req_.route (cluster/placement.h), then asks its
  // broker for the lease; a cold start weighs the nodes' costs first
  // (exchange_placement.cc).
  void Place();
  // Carries a placement out: the lease on its node, the costs to ask, or
  // the 503 of no node.
  void Placed(absl::StatusOr<cluster::Placement> placed);
  void AdmitOn(cluster::Placement placed);
  void OnLease(absl::StatusOr<lease::Lease> lease);
  // The request failed on its node before it was sent upstream (the node
  // was lost, or refused): placed again elsewhere. False when no other
  // node can take it.
  bool PlaceAgain();
  // X-Modelplane-Node: the node that served the request.
  void TagNode(http1::Headers* headers) const;
  // Writes the request (head, then body_) to `upstream`; with `api_key`,
  // that key goes as Bearer and x-api-key instead of the client's.
  void SendUpstream(const std::string& upstream, const std::string& api_key);
  // answers::Responder: the proxy's own answers (proxy/answers/) and its
  // errors go out here (CORS added, the request counted, the response
  // ended).
  void Respond(int status, const std::string& content_type,
               const std::string& body,
               const http1::Headers& extra = http1::Headers()) override;
  void RespondError(int status, const std::string& message) override;
  Deferred Later() override;
  std::shared_ptr<answers::StreamOut> OpenStream(
      answers::StreamSpec spec) override;
  // The open stream's pieces and end, on the loop (exchange_stream.cc).
  friend class LocalStream;
  void StreamData(const std::string& data);
  void StreamEnd();
  // Ends the stream (its source let go), if one is open.
  void CloseStream();
  // CORS: echoes the request's Origin into `headers` when it had one.
  void AllowOrigin(http1::Headers* headers) const;
  // The loading head, then one comment line; re-arms the timer.
  void SendLoadingComment();
  // One reasoning_content delta (sendLoadingState).
  void SendLoadingState(absl::string_view text);
  void ArmLoadingTimer();
  void StopLoadingTimer();
  // The request is answered: counted, upstream and lease let go.
  void Finish();
  // Counts the request (and logs it with --access-log), then forgets it.
  void RecordRequest();
  // A model's request into the worker's activity log.
  void AddActivity();

  Worker* worker_;
  ResponseSink* sink_;
  // The routing snapshot current when the request began, held to its end
  // (router/snapshot.h).
  std::shared_ptr<const router::Snapshot> routing_;
  std::string peer_;
  uv::Handle<uv_timer_t> loading_timer_;  // Made when first armed.

  // Where the request is in its course (Enter checks each step in debug
  // builds): idle between requests; receiving its head and body; waiting
  // for its model's lease; upstream (sent, its answer streaming back); a
  // tunnel after a 101; streaming a local answer that stays open (the
  // event stream, a log tail). Another local answer goes from receiving to
  // idle.
  enum class Phase {
    kIdle,
    kReceiving,
    kWaiting,
    kUpstream,
    kTunnel,
    kStreaming
  };
  void Enter(Phase next);
  bool in_request() const { return phase_ != Phase::kIdle; }
  Phase phase_ = Phase::kIdle;

  // Everything one request holds that is plain data, reset whole by Begin.
  struct RequestState {
    http1::RequestHead head;
    std::string origin;  // The request's Origin (CORS), or "".
    // Decided on the head: 401 (no valid API key), 503 (the keys are not
    // known yet), 400 (rejection_message), or 0. A refused request's body
    // is dropped as it arrives.
    int rejection = 0;
    std::string rejection_message;
    // The body would pass the budget: refused (503), its bytes dropped.
    bool over_budget = false;
    BodyScan scan = BodyScan::kNone;
    bool form = false;     // Labelled application/x-www-form-urlencoded.
    bool renamed = false;  // A pin or a selector changed the model's name.
    // kModel: the route (in routing_), and the nodes it already failed on
    // before it was sent.
    const router::Route* route = nullptr;
    std::vector<std::string> tried;
    size_t sent_body = 0;  // The body's size as sent upstream.
    router::JsonScanner json;
    std::unique_ptr<router::MultipartScanner> multipart;
    std::string boundary;
    // A WebSocket handshake (GET with Upgrade: websocket and Connection:
    // upgrade): the Upgrade value, passed on to the upstream. Else empty.
    std::string websocket;
    // A streaming request waiting for its lease (loading comments due).
    bool loading = false;
    // The 200 event-stream head went out before the model answered: what
    // follows (the stream, or an error as an SSE event) goes in its body.
    bool loading_head_sent = false;
    // The model's sendLoadingState, for a chat completion: loading
    // progress goes out as reasoning_content deltas, not SSE comments.
    bool loading_state = false;
    int loading_state_ticks = 0;
    int loading_state_position = 0;
    bool head_sent = false;       // The response head went out.
    bool event_stream = false;    // It is text/event-stream (SSE).
    upstream::Timeouts timeouts;  // The routed model's.
    std::string upstream_error;   // A non-2xx upstream body, after that head.
    // A model's request answered with an error: what it said (activity).
    std::string error;
    bool upstream_failed = false;
    bool reading_upstream = true;
    // The model's reported token counts, looked for in a 2xx answer that
    // is not content-encoded (modelproxy_tokens_total).
    bool scan_usage = false;
    router::UsageScanner usage;
    // For metrics and the access log (uv_hrtime, ns).
    RequestRecord record;
    uint64_t head_ns = 0;
    // An event stream's first bytes from the model (its first token).
    uint64_t first_token_ns = 0;
    uint64_t admit_ns = 0;
    uint64_t sent_ns = 0;
    uint64_t response_bytes = 0;
  };
  RequestState req_;

  uint64_t generation_ = 0;  // Bumped by every Begin.
  uint64_t sends_ = 0;       // Bumped by every SendUpstream.

  // What the request holds of others: the broker's ticket or lease, a
  // lease watch, the upstream request, the body and its charge on the
  // process's BodyBudget. Kept apart from RequestState because each must be
  // given back (Finish, Cancel, DropBody), never dropped by a reset.
  uint64_t ticket_ = 0;  // The broker's, while waiting for the lease.
  // The model it waits for (withdrawn if the client leaves first).
  std::string waiting_for_;
  // The body: its buffer and its charge are handed over to the upstream or
  // given back (DropBody).
  std::string body_;
  // What body_ holds of the BodyBudget (released by DropBody, or handed
  // over with the body to the upstream).
  uint64_t charged_ = 0;
  // Brings body_'s charge on the budget up to `n` bytes (one atomic
  // operation per read); false past the bound.
  bool ChargeBody(uint64_t n);
  // Frees body_ (a large buffer is given back, not kept for the next
  // request) and its charge.
  void DropBody();
  // A filter rewrote body_: its charge follows its new size (taken even
  // past the bound: the bytes are already held).
  void ChargeFiltered();
  // The node the request was placed on: its broker holds the ticket, the
  // lease and the lease watch. Held until Finish.
  std::shared_ptr<cluster::Node> node_;
  std::string leased_model_;  // Non-empty while a lease admits this request.
  std::unique_ptr<upstream::UpstreamRequest> upstream_;
  // The tunnel's LeaseBroker::WatchLease id: it ends when the lease goes.
  uint64_t lease_watch_ = 0;
  // Registers that: a revoked or lost lease closes the tunnel.
  void WatchTunnelLease();
  // The open streaming answer (kStreaming), its spec, its registration
  // with the context (for the drain) and the bytes it skipped for a slow
  // reader since the last piece that went out.
  std::shared_ptr<LocalStream> stream_;
  answers::StreamSpec stream_spec_;
  uint64_t stream_id_ = 0;
  uint64_t stream_skipped_ = 0;
  // Lets posted answers (lease, unload) find out that this request is gone.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_EXCHANGE_H_
