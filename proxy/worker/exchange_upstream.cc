// Exchange, its upstream side: the request written to the model, the
// response passed on as it arrives (and counted: status, first byte,
// usage), and a WebSocket tunnel's bytes both ways after a 101.
#include <algorithm>
#include <functional>
#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/json_string.h"
#include "common/loop_thread.h"
#include "proxy/worker/exchange.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

void Exchange::SendUpstream(const std::string& upstream,
                            const std::string& api_key) {
  absl::string_view host = upstream;
  host.remove_prefix(std::min(host.size(), host.find("//") + 2));
  host = host.substr(0, host.find('/'));
  // The head written straight into the request, and a small body after it
  // (one allocation, one write); a large one is handed over as it is,
  // never copied (held once: body_budget.h).
  bool share = body_.size() > kInlineBodyBytes;
  std::string request;
  request.reserve(256 + req_.head.target.size() + (share ? 0 : body_.size()));
  // A WebSocket handshake has no body and keeps its Upgrade.
  http1::Framing framing = req_.websocket.empty()
                               ? http1::Framing::kContentLength
                               : http1::Framing::kNoBody;
  if (api_key.empty()) {
    http1::AppendRequestHead(&request, req_.head.method, req_.head.target,
                             req_.head.headers, {"host", "expect"},
                             {{"Host", host}, {"X-Forwarded-For", peer_}},
                             framing, body_.size(), req_.websocket);
  } else {
    // A peer's key, as llama-swap sends it, instead of the client's.
    std::string bearer = absl::StrCat("Bearer ", api_key);
    http1::AppendRequestHead(&request, req_.head.method, req_.head.target,
                             req_.head.headers,
                             {"host", "expect", "authorization", "x-api-key"},
                             {{"Host", host},
                              {"X-Forwarded-For", peer_},
                              {"Authorization", bearer},
                              {"x-api-key", api_key}},
                             framing, body_.size(), req_.websocket);
  }
  std::shared_ptr<const std::string> body;
  if (framing != http1::Framing::kNoBody && share) {
    // Its charge goes with it: given back when the upstream is done with
    // it (the last write, or a retry), not when this request ends.
    ProxyContext* context = &worker_->context();
    uint64_t charged = std::exchange(charged_, 0);
    body = std::shared_ptr<const std::string>(
        new std::string(std::move(body_)),
        [context, charged](const std::string* b) {
          bool large = b->capacity() >= kLargeBodyBytes;
          delete b;
          context->bodies().Release(charged);
          if (large) context->FreedLargeBody();
        });
    body_.clear();
  } else if (framing != http1::Framing::kNoBody) {
    request.append(body_);
  }
  req_.sent_body = body != nullptr ? body->size() : body_.size();
  Enter(Phase::kUpstream);
  req_.reading_upstream = true;
  req_.sent_ns = uv_hrtime();
  // Send may answer inline (a bad URL, no descriptor left): the request is
  // then finished, and a pipelined one may already be on its way.
  // Or fail inline with the request unsent, placed again, and sent to
  // another node before this returns: only this send's handle is kept.
  uint64_t generation = generation_;
  uint64_t send = ++sends_;
  auto sent = worker_->pool().Send(
      upstream, upstream::OutgoingRequest{std::move(request), std::move(body)},
      req_.head.method == "HEAD", this, req_.timeouts, !req_.websocket.empty());
  if (in_request() && generation == generation_ && send == sends_ &&
      phase_ != Phase::kWaiting) {
    upstream_ = std::move(sent);
  }
}

void Exchange::OnUpstreamHead(http1::ResponseHead head) {
  req_.head_sent = true;
  req_.record.time_to_first_byte =
      absl::Nanoseconds(static_cast<int64_t>(uv_hrtime() - req_.sent_ns));
  if (head.status == 101) {  // Only when req_.websocket asked for it.
    if (!http1::HasToken(head.headers, "upgrade", req_.websocket)) {
      return RespondError(
          502, "the upstream switched to another protocol than websocket");
    }
    req_.record.status = 101;
    Enter(Phase::kTunnel);
    // The upstream's headers as they are (no CORS: WebSockets have none).
    if (!sink_->SendSwitch(head.headers)) {
      Finish();
      sink_->Abort();
      return;
    }
    WatchTunnelLease();
    return;
  }
  // (count_tokens answers {"input_tokens": N} for tokens no one generated.)
  req_.scan_usage =
      head.status >= 200 && head.status < 300 &&
      !absl::EndsWith(req_.record.route, "/messages/count_tokens") &&
      http1::FindHeader(head.headers, "content-encoding") == nullptr;
  if (req_.loading_head_sent) {
    // The 200 head is out: the stream goes on in its body; an error answer
    // is kept (bounded) and sent as one SSE event at its end.
    req_.upstream_failed = head.status < 200 || head.status >= 300;
    if (req_.upstream_failed) req_.record.status = head.status;
    return;
  }
  req_.record.status = head.status;
  http1::Headers headers = std::move(head.headers);
  const std::string* type = http1::FindHeader(headers, "content-type");
  if (type != nullptr && absl::StrContains(*type, "text/event-stream")) {
    headers.emplace_back("X-Accel-Buffering", "no");
    req_.event_stream = true;
  }
  AllowOrigin(&headers);
  TagNode(&headers);
  std::optional<uint64_t> length;
  if (head.content_length && !head.chunked) length = head.content_length;
  sink_->SendHead(head.status, head.reason, headers, length);
}

void Exchange::OnUpstreamBody(absl::string_view data) {
  if (req_.upstream_failed) {
    if (req_.upstream_error.size() < (64 << 10)) {
      req_.upstream_error.append(data.data(), data.size());
    }
    return;
  }
  if (req_.scan_usage) req_.usage.Feed(data);
  if (req_.record.status >= 400 && req_.upstream_error.size() < 4096 &&
      !req_.record.model.empty()) {
    // An error passed on as it came: its start, for the activity log.
    req_.upstream_error.append(
        data.data(), std::min(data.size(), 4096 - req_.upstream_error.size()));
  }
  if (req_.first_token_ns == 0 && req_.event_stream &&
      req_.record.status >= 200 && req_.record.status < 300) {
    req_.first_token_ns = uv_hrtime();  // A 2xx stream's first bytes.
  }
  sink_->SendData(data);
  if (in_request() && req_.reading_upstream && sink_->Congested()) {
    req_.reading_upstream = false;  // The client is slow: let TCP push back.
    if (upstream_) upstream_->SetReading(false);
  }
}

void Exchange::OnUpstreamReadDone() {
  if (in_request() && req_.head_sent && !req_.upstream_failed) {
    sink_->FlushNow();
  }
}

void Exchange::WatchTunnelLease() {
  if (leased_model_.empty() || !in_request()) return;  // A peer's: no lease.
  LoopThread* loop = &worker_->loop();
  std::weak_ptr<bool> alive = alive_;
  uint64_t generation = generation_;
  lease_watch_ = node_->broker().WatchLease(
      leased_model_,
      [loop](std::function<void()> fn) { loop->Post(std::move(fn)); },
      [this, alive, generation] {
        auto a = alive.lock();
        if (a == nullptr || !*a || generation != generation_ ||
            phase_ != Phase::kTunnel || !in_request()) {
          return;
        }
        // The model is going (a swap, a stop, the manager lost): the tunnel
        // ends with its lease instead of holding the swap up.
        lease_watch_ = 0;  // Told: nothing to unwatch.
        Finish();
        sink_->Abort();
      });
}

bool Exchange::TunnelIn(absl::string_view data) {
  if (!in_request() || phase_ != Phase::kTunnel || !upstream_) return false;
  return upstream_->Write(data);
}

void Exchange::TunnelClientDone() {
  if (in_request() && phase_ == Phase::kTunnel && upstream_)
    upstream_->Shutdown();
}

void Exchange::OnUpstreamWritable() {
  if (in_request() && phase_ == Phase::kTunnel) sink_->OnTunnelWritable();
}

void Exchange::OnUpstreamEnd() {
  if (req_.upstream_failed) {
    std::string body = std::move(req_.upstream_error);
    req_.upstream_failed = false;
    upstream_.reset();
    return Respond(req_.record.status, "application/json", body);
  }
  Finish();
  sink_->SendEnd();
}

void Exchange::OnUpstreamError(const std::string& message, bool before_head,
                               bool timed_out,
                               upstream::OutgoingRequest* unsent) {
  if (unsent != nullptr && node_ != nullptr && !leased_model_.empty() &&
      req_.websocket.empty()) {
    // The model could not be reached (its node went down with it): the
    // request never left, so another node may serve it (each node once).
    std::string body =
        unsent->body != nullptr
            ? *unsent->body
            : unsent->head.substr(unsent->head.size() - req_.sent_body);
    upstream_.reset();
    node_->broker().Finish(leased_model_);
    leased_model_.clear();
    body_ = std::move(body);
    ChargeFiltered();
    Enter(Phase::kWaiting);
    if (PlaceAgain()) return;
  }
  if (before_head) {
    RespondError(timed_out ? 504 : 502, message);
    return;
  }
  // Mid-response: the client must see a broken response, never a clean end.
  // An event stream says why first, as an error event an SSE client (an
  // OpenAI SDK) raises, before the connection or stream is cut.
  if (req_.event_stream && req_.head_sent && !req_.upstream_failed) {
    // After a blank line: the upstream may have broken mid-event.
    sink_->SendData(absl::StrCat(
        "\n\n", R"(data: {"error":{"message":)",
        JsonString(absl::StrCat("the model's stream broke: ", message)),
        R"(,"type":"api_error","code":502}})", "\n\n"));
  }
  Finish();
  sink_->Abort();
}

}  // namespace modelplane::proxy
