#include "proxy/worker/client_connection.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/loop_thread.h"
#include "proxy/router/body_filters.h"
#include "proxy/worker/json_string.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {
namespace {

struct WriteReq {
  uv_write_t req;
  std::string data;
};

const char* ErrorType(int status) {
  switch (status) {
    case 400:
    case 413:
    case 431:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    default:
      return "api_error";
  }
}

// The query parameter `name`, or "".
std::string QueryParam(absl::string_view target, absl::string_view name) {
  size_t q = target.find('?');
  if (q == absl::string_view::npos) return "";
  for (absl::string_view kv : absl::StrSplit(target.substr(q + 1), '&')) {
    size_t eq = kv.find('=');
    if (kv.substr(0, eq) == name && eq != absl::string_view::npos) {
      return std::string(kv.substr(eq + 1));
    }
  }
  return "";
}

}  // namespace

ClientConnection::ClientConnection(Worker* worker)
    : worker_(worker), parser_(this, worker->context().options().limits) {
  uv_tcp_init(worker->loop().loop(), &tcp_);
  tcp_.data = this;
  uv_timer_init(worker->loop().loop(), &timer_);
  uv_timer_init(worker->loop().loop(), &send_timer_);
  send_timer_.data = this;
  timer_.data = this;
}

ClientConnection::~ClientConnection() { *alive_ = false; }

void ClientConnection::Start() {
  uv_tcp_nodelay(&tcp_, 1);
  sockaddr_storage addr{};
  int len = sizeof(addr);
  char ip[64] = "";
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&addr), &len) ==
      0) {
    if (addr.ss_family == AF_INET) {
      uv_ip4_name(reinterpret_cast<sockaddr_in*>(&addr), ip, sizeof(ip));
    } else {
      uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&addr), ip, sizeof(ip));
    }
  }
  peer_ = ip;
  if (uv_read_start(stream(), OnAlloc, OnRead) != 0) {
    Close();
    return;
  }
  reading_client_ = true;
  UpdateTimer();
}

void ClientConnection::UpdateTimer() {
  if (closing_) return;
  TimerMode want;
  if (in_request_) {
    want = reading_body_ ? TimerMode::kBody
           : loading_    ? TimerMode::kLoading
                         : TimerMode::kNone;
  } else {
    want = parser_.in_head() ? TimerMode::kHead : TimerMode::kIdle;
  }
  if (want == timer_mode_) return;  // Never re-armed by a trickle of bytes.
  timer_mode_ = want;
  uv_timer_stop(&timer_);
  if (want == TimerMode::kNone) return;
  const ProxyOptions& o = worker_->context().options();
  absl::Duration d = want == TimerMode::kHead      ? o.header_timeout
                     : want == TimerMode::kBody    ? o.body_timeout
                     : want == TimerMode::kLoading ? o.loading_interval
                                                   : o.idle_timeout;
  uv_update_time(worker_->loop().loop());
  uv_timer_start(&timer_, OnTimer,
                 static_cast<uint64_t>(absl::ToInt64Milliseconds(d)), 0);
}

void ClientConnection::OnTimer(uv_timer_t* t) {
  auto* c = static_cast<ClientConnection*>(t->data);
  if (c->closing_) return;
  if (c->timer_mode_ == TimerMode::kBody && c->reading_body_) {
    // Nothing more is read: the rest of the body must not be dispatched.
    uv_read_stop(c->stream());
    c->reading_client_ = false;
    c->input_.clear();
    c->reading_body_ = false;
    c->timer_mode_ = TimerMode::kNone;
    c->keep_alive_ = false;
    c->close_after_write_ = true;
    c->RespondError(408, "the request body did not arrive in time");
    return;
  }
  if (c->timer_mode_ == TimerMode::kLoading && c->loading_) {
    c->SendLoadingComment();
    return;
  }
  if (c->in_request_) return;
  if (c->timer_mode_ == TimerMode::kHead) {
    // Nothing more is read: a head completing now must not be served.
    uv_read_stop(c->stream());
    c->reading_client_ = false;
    c->input_.clear();
    c->timer_mode_ = TimerMode::kNone;
    c->keep_alive_ = false;
    c->close_after_write_ = true;
    c->head_ = http1::RequestHead();
    c->RespondError(408, "the request head did not arrive in time");
    return;
  }
  c->Close();  // Idle keep-alive connection.
}

void ClientConnection::Drain() {
  draining_ = true;
  if (in_request_ || parser_.in_head()) return;  // Closes after its answer.
  if (stream()->write_queue_size > 0) {
    // The last response is still being written: close once it is out.
    close_after_write_ = true;
    uv_read_stop(stream());
    reading_client_ = false;
    return;
  }
  Close();
}

void ClientConnection::Close() {
  if (closing_) return;
  closing_ = true;
  *alive_ = false;
  if (in_request_) {
    if (!responding_) record_.status = 499;  // nginx: client closed request.
    RecordRequest();
  }
  upstream_.reset();  // The upstream learns at once that the client left.
  if (!leased_model_.empty()) {
    worker_->context().broker().Finish(leased_model_);
    leased_model_.clear();
  }
  worker_->Forget(this);
  uv_timer_stop(&timer_);
  auto closed = [](uv_handle_t* h) {
    auto* c = static_cast<ClientConnection*>(h->data);
    if (--c->open_handles_ == 0) delete c;
  };
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&send_timer_), closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), closed);
}

void ClientConnection::OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  Worker* w = static_cast<ClientConnection*>(h->data)->worker_;
  *buf = uv_buf_init(w->read_buffer(), Worker::kReadBufferSize);
}

void ClientConnection::OnRead(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<ClientConnection*>(s->data);
  if (n < 0) {
    c->Close();  // The client left: an upstream in flight is cancelled.
    return;
  }
  if (n == 0 || c->closing_) return;
  c->worker_->metrics().AddBytesIn(static_cast<uint64_t>(n));
  c->input_.append(buf->base, n);
  if (c->input_.size() >
      c->worker_->context().options().limits.max_body_bytes + (1 << 20)) {
    uv_read_stop(s);  // Pipelined far ahead: wait until caught up.
    c->reading_client_ = false;
  }
  c->FeedInput();
}

void ClientConnection::FeedInput() {
  // A response may finish inside a parser callback (a local answer): the
  // loop below then goes on, instead of feeding re-entrantly.
  if (feeding_) return;
  feeding_ = true;
  while (!closing_ && !input_.empty() && !parser_.paused() &&
         !parser_.failed()) {
    size_t used = parser_.Feed(input_);
    input_.erase(0, used);
    if (used == 0) break;
  }
  feeding_ = false;
  UpdateTimer();
}

void ClientConnection::OnRequestHead(http1::RequestHead head) {
  in_request_ = true;
  ++request_generation_;
  origin_.clear();
  reading_body_ = true;
  loading_ = false;
  loading_head_sent_ = false;
  upstream_failed_ = false;
  upstream_error_.clear();
  UpdateTimer();
  head_ = std::move(head);
  body_.clear();
  json_ = router::JsonScanner();
  multipart_.reset();
  scan_ = BodyScan::kNone;
  responding_ = false;
  std::string path = head_.target.substr(0, head_.target.find('?'));
  record_.route = RouteLabel(path);
  head_ns_ = uv_hrtime();
  response_bytes_ = 0;
  bool body_route =
      head_.method == "POST" &&
      std::find(std::begin(router::kBodyRoutes), std::end(router::kBodyRoutes),
                path) != std::end(router::kBodyRoutes);
  if (body_route) {
    const std::string* type = http1::FindHeader(head_.headers, "content-type");
    auto boundary =
        type ? router::MultipartScanner::BoundaryFrom(*type) : std::nullopt;
    if (boundary) {
      boundary_ = *boundary;
      multipart_ = std::make_unique<router::MultipartScanner>(*boundary);
      scan_ = BodyScan::kMultipart;
    } else {
      scan_ = BodyScan::kJson;
    }
  }
  if (head_.expect_continue) Write("HTTP/1.1 100 Continue\r\n\r\n");
}

void ClientConnection::OnRequestBody(absl::string_view data) {
  if (timer_mode_ == TimerMode::kBody) {  // Progress: the gap starts over.
    uv_timer_start(&timer_, OnTimer,
                   static_cast<uint64_t>(absl::ToInt64Milliseconds(
                       worker_->context().options().body_timeout)),
                   0);
  }
  body_.append(data.data(), data.size());
  if (scan_ == BodyScan::kJson) json_.Feed(data);
  if (scan_ == BodyScan::kMultipart) multipart_->Feed(data);
}

void ClientConnection::OnRequestEnd() {
  reading_body_ = false;
  Dispatch();
}

void ClientConnection::OnRequestError(int status, const std::string& message) {
  keep_alive_ = false;
  head_ = http1::RequestHead();
  RespondError(status, message);
  close_after_write_ = true;
}

void ClientConnection::Dispatch() {
  std::string path = head_.target.substr(0, head_.target.find('?'));
  keep_alive_ = head_.keep_alive && !draining_;
  const std::string* origin = http1::FindHeader(head_.headers, "origin");
  origin_ = origin != nullptr ? *origin : "";
  if (head_.method == "OPTIONS") return RespondPreflight();
  if (path == "/health" && head_.method == "GET") {
    return Respond(200, "application/json", R"({"status":"ok"})");
  }
  if (!Authorized()) {
    // Every endpoint but /health needs the key, /metrics included (a
    // Prometheus job sets it with `authorization: credentials`).
    return Respond(401, "application/json",
                   absl::StrCat(R"({"error":{"message":"a valid API key is )"
                                R"(required","type":"authentication_error",)"
                                R"("code":401}})"),
                   {{"WWW-Authenticate", "Bearer realm=\"modelplane\""}});
  }
  if (path == "/running" && head_.method == "GET") return RespondRunning();
  if (path == "/metrics" && head_.method == "GET") return RespondMetrics();
  if (path == "/unload" && (head_.method == "POST" || head_.method == "GET")) {
    return Unload(QueryParam(head_.target, "model"));
  }
  if ((path == "/v1/models" || path == "/models") && head_.method == "GET") {
    return RespondModels();
  }
  if (absl::StartsWith(path, "/upstream/")) {
    // /upstream/<model>/<rest>: ids may contain '/', so the longest known
    // prefix wins; percent-encoding in <rest> is passed through.
    std::string rest = head_.target.substr(10);
    const router::RouteTable* routes = &worker_->routes();
    std::string model = rest.substr(0, rest.find('?'));
    std::string target = "/";
    while (!model.empty() && routes->Find(model) == nullptr) {
      size_t slash = model.rfind('/');
      if (slash == std::string::npos) break;
      model.resize(slash);
    }
    if (routes->Find(model) != nullptr) target = rest.substr(model.size());
    if (target.empty() || target[0] == '?') target = "/" + target;
    return Forward(model, target);
  }
  if (scan_ == BodyScan::kJson) {
    json_.Finish();
    if (!json_.model()) {
      return RespondError(400, json_.error()
                                   ? json_.error_message()
                                   : "the request body names no model");
    }
    return Forward(*json_.model(), head_.target);
  }
  if (scan_ == BodyScan::kMultipart) {
    multipart_->Finish();
    if (!multipart_->model()) {
      return RespondError(400, multipart_->error()
                                   ? multipart_->error_message()
                                   : "the form has no model field");
    }
    return Forward(*multipart_->model(), head_.target);
  }
  std::string model = QueryParam(head_.target, "model");
  if (!model.empty()) return Forward(model, head_.target);
  RespondError(404, absl::StrCat("no route for ", head_.method, " ", path));
}

void ClientConnection::Forward(const std::string& model_name,
                               std::string target) {
  const router::Route* route = worker_->routes().Find(model_name);
  if (route == nullptr) {
    return RespondError(404, absl::StrCat("unknown model '", model_name, "'"));
  }
  if (!route->filters.empty() && scan_ == BodyScan::kJson) {
    absl::StatusOr<std::string> filtered =
        router::ApplyJsonFilters(body_, route->filters);
    if (!filtered.ok()) {
      return RespondError(400, std::string(filtered.status().message()));
    }
    body_ = *std::move(filtered);
  } else if (!route->filters.use_model_name.empty() &&
             scan_ == BodyScan::kMultipart) {
    body_ = router::RewriteMultipartModel(body_, boundary_,
                                          route->filters.use_model_name);
  }
  head_.target = std::move(target);
  std::string id = route->id;
  record_.model = id;
  admit_ns_ = uv_hrtime();
  int limit = route->concurrency_limit;
  timeouts_ = {route->connect_timeout, route->response_header_timeout,
               route->idle_timeout};
  LoopThread* loop = &worker_->loop();
  std::weak_ptr<bool> alive = alive_;
  // Set now; an answer given inline (the lease is held) clears it before
  // Admit returns.
  loading_ =
      scan_ == BodyScan::kJson && json_.stream().value_or(false) &&
      worker_->context().options().loading_interval > absl::ZeroDuration();
  // An inline answer may finish this request and start a pipelined one
  // before Admit returns: its ticket must not be overwritten.
  uint64_t generation = request_generation_;
  uint64_t ticket = worker_->context().broker().Admit(
      id, limit,
      [loop](std::function<void()> fn) { loop->Post(std::move(fn)); },
      [this, alive, id, broker = &worker_->context().broker()](
          absl::StatusOr<lease::Lease> lease) {
        auto a = alive.lock();
        if (a == nullptr || !*a) {
          if (lease.ok()) broker->Finish(id);  // The client left meanwhile.
          return;
        }
        OnLease(std::move(lease));
      });
  if (generation == request_generation_) ticket_ = ticket;
}

void ClientConnection::OnLease(absl::StatusOr<lease::Lease> lease) {
  if (loading_) {
    loading_ = false;
    UpdateTimer();
  }
  record_.lease_wait =
      absl::Nanoseconds(static_cast<int64_t>(uv_hrtime() - admit_ns_));
  if (!lease.ok()) {
    const absl::Status& s = lease.status();
    record_.lease_error = absl::StatusCodeToString(s.code());
    switch (s.code()) {
      case absl::StatusCode::kResourceExhausted:
        return Respond(
            429, "application/json",
            absl::StrCat(R"({"error":{"message":)", JsonString(s.message()),
                         R"(,"type":"rate_limit_error","code":429}})"),
            {{"Retry-After", "1"}});
      case absl::StatusCode::kNotFound:
        return RespondError(404, std::string(s.message()));
      case absl::StatusCode::kDeadlineExceeded:
        return RespondError(504, std::string(s.message()));
      default:
        return RespondError(503, std::string(s.message()));
    }
  }
  leased_model_ = lease->model;
  http1::Headers headers;
  for (const auto& [k, v] : head_.headers) {
    if (absl::EqualsIgnoreCase(k, "host") ||
        absl::EqualsIgnoreCase(k, "expect")) {
      continue;
    }
    headers.emplace_back(k, v);
  }
  std::string host = lease->upstream.substr(lease->upstream.find("//") + 2);
  headers.emplace_back("Host", host.substr(0, host.find('/')));
  headers.emplace_back("X-Forwarded-For", peer_);
  std::string request =
      http1::EncodeRequestHead(head_.method, head_.target, headers,
                               http1::Framing::kContentLength, body_.size()) +
      body_;
  reading_upstream_ = true;
  sent_ns_ = uv_hrtime();
  // Send may answer inline (a bad URL, no descriptor left): the request is
  // then finished, and a pipelined one may already be on its way.
  uint64_t generation = request_generation_;
  auto sent = worker_->pool().Send(lease->upstream, std::move(request),
                                   head_.method == "HEAD", this, timeouts_);
  if (!closing_ && in_request_ && generation == request_generation_) {
    upstream_ = std::move(sent);
  }
}

void ClientConnection::OnUpstreamHead(http1::ResponseHead head) {
  responding_ = true;
  record_.time_to_first_byte =
      absl::Nanoseconds(static_cast<int64_t>(uv_hrtime() - sent_ns_));
  if (loading_head_sent_) {
    // The 200 head is out: the stream goes on in its body; an error answer
    // is kept (bounded) and sent as one SSE event at its end.
    upstream_failed_ = head.status < 200 || head.status >= 300;
    if (upstream_failed_) record_.status = head.status;
    return;
  }
  record_.status = head.status;
  http1::Headers headers = head.headers;
  const std::string* type = http1::FindHeader(headers, "content-type");
  if (type != nullptr && absl::StrContains(*type, "text/event-stream")) {
    headers.emplace_back("X-Accel-Buffering", "no");
  }
  AllowOrigin(&headers);
  bool bodiless =
      http1::IsBodilessStatus(head.status) || head_.method == "HEAD";
  if (head.content_length && !head.chunked) {
    framing_ = http1::Framing::kContentLength;  // HEAD: the length it would be.
  } else if (bodiless) {
    framing_ = http1::Framing::kNoBody;
  } else {
    framing_ = head_.version_minor >= 1 ? http1::Framing::kChunked
                                        : http1::Framing::kUntilClose;
  }
  if (framing_ == http1::Framing::kUntilClose) keep_alive_ = false;
  Write(http1::EncodeResponseHead(head.status, head.reason, headers, framing_,
                                  head.content_length.value_or(0),
                                  keep_alive_));
}

void ClientConnection::OnUpstreamBody(absl::string_view data) {
  if (upstream_failed_) {
    if (upstream_error_.size() < (64 << 10)) {
      upstream_error_.append(data.data(), data.size());
    }
    return;
  }
  Write(framing_ == http1::Framing::kChunked ? http1::EncodeChunk(data)
                                             : std::string(data));
  if (!closing_ && reading_upstream_ &&
      stream()->write_queue_size >
          worker_->context().options().max_buffered_response) {
    reading_upstream_ = false;  // The client is slow: let TCP push back.
    if (upstream_) upstream_->SetReading(false);
  }
}

void ClientConnection::OnUpstreamEnd() {
  if (upstream_failed_) {
    std::string body = std::move(upstream_error_);
    upstream_failed_ = false;
    upstream_.reset();
    return Respond(record_.status, "application/json", body);
  }
  if (framing_ == http1::Framing::kChunked) Write(http1::EncodeLastChunk());
  FinishRequest();
}

void ClientConnection::OnUpstreamError(const std::string& message,
                                       bool before_head, bool timed_out) {
  if (before_head) {
    RespondError(timed_out ? 504 : 502, message);
    return;
  }
  // Mid-response: the client must see a broken response, never a clean end.
  Close();
}

void ClientConnection::Respond(int status, const std::string& content_type,
                               const std::string& body,
                               const http1::Headers& extra) {
  if (loading_head_sent_) {
    // Too late for a status: the answer is an SSE event in the open stream
    // (newlines folded so that it stays one `data:` line).
    record_.status = status;
    std::string data = body;
    std::replace(data.begin(), data.end(), '\n', ' ');
    std::replace(data.begin(), data.end(), '\r', ' ');
    std::string event = absl::StrCat("data: ", data, "\n\n");
    Write(framing_ == http1::Framing::kChunked
              ? http1::EncodeChunk(event) + http1::EncodeLastChunk()
              : event);
    if (framing_ == http1::Framing::kUntilClose) close_after_write_ = true;
    FinishRequest();
    return;
  }
  http1::Headers headers;
  if (!content_type.empty()) headers.emplace_back("Content-Type", content_type);
  headers.insert(headers.end(), extra.begin(), extra.end());
  AllowOrigin(&headers);
  responding_ = true;
  record_.status = status;
  Write(http1::EncodeResponseHead(
            status, "", headers, http1::Framing::kContentLength, body.size(),
            keep_alive_ && !close_after_write_ && !draining_) +
        (head_.method == "HEAD" ? "" : body));
  FinishRequest();
}

void ClientConnection::RespondError(int status, const std::string& message) {
  Respond(status, "application/json",
          absl::StrCat(R"({"error":{"message":)", JsonString(message),
                       R"(,"type":")", ErrorType(status), R"(","code":)",
                       status, "}}"));
}

void ClientConnection::RecordRequest() {
  worker_->metrics().Record(record_);
  if (worker_->context().options().access_log) {
    double ms = head_ns_ == 0 ? 0 : (uv_hrtime() - head_ns_) / 1e6;
    std::string line = absl::StrFormat(
        "%s \"%s %s\" %d %d %.3fms model=%s\n", peer_,
        absl::CEscape(head_.method), absl::CEscape(head_.target),
        record_.status, response_bytes_, ms,
        record_.model.empty() ? "-" : record_.model);
    fwrite(line.data(), 1, line.size(), stderr);  // One write: lines whole.
  }
  record_ = RequestRecord();
  head_ns_ = 0;
  response_bytes_ = 0;
}

void ClientConnection::SendLoadingComment() {
  if (!loading_head_sent_) {
    loading_head_sent_ = true;
    responding_ = true;
    record_.status = 200;
    framing_ = head_.version_minor >= 1 ? http1::Framing::kChunked
                                        : http1::Framing::kUntilClose;
    if (framing_ == http1::Framing::kUntilClose) keep_alive_ = false;
    http1::Headers headers = {{"Content-Type", "text/event-stream"},
                              {"Cache-Control", "no-cache"},
                              {"X-Accel-Buffering", "no"}};
    AllowOrigin(&headers);
    Write(http1::EncodeResponseHead(200, "", headers, framing_, 0,
                                    keep_alive_ && !draining_));
  }
  std::string line =
      absl::StrFormat(": loading %s %.1fs", record_.model,
                      static_cast<double>(uv_hrtime() - admit_ns_) / 1e9);
  // Its place among this proxy's requests waiting for the model.
  int position = worker_->context().broker().Position(record_.model, ticket_);
  if (position > 0) absl::StrAppend(&line, ", queue position ", position);
  line += "\n\n";
  Write(framing_ == http1::Framing::kChunked ? http1::EncodeChunk(line) : line);
  uv_timer_start(&timer_, OnTimer,
                 static_cast<uint64_t>(absl::ToInt64Milliseconds(
                     worker_->context().options().loading_interval)),
                 0);
}

void ClientConnection::AllowOrigin(http1::Headers* headers) const {
  // A request with an Origin may read the answer (unless the upstream
  // already said who may).
  if (origin_.empty() ||
      http1::FindHeader(*headers, "access-control-allow-origin") != nullptr) {
    return;
  }
  headers->emplace_back("Access-Control-Allow-Origin", origin_);
  headers->emplace_back("Vary", "Origin");
}

void ClientConnection::FinishRequest() {
  if (closing_) return;  // Close() already finished and counted it.
  RecordRequest();
  origin_.clear();
  upstream_.reset();
  if (!leased_model_.empty()) {
    worker_->context().broker().Finish(leased_model_);
    leased_model_.clear();
  }
  in_request_ = false;
  if (!keep_alive_ || close_after_write_ || draining_) {
    close_after_write_ = true;
    if (stream()->write_queue_size == 0) Close();
    return;
  }
  parser_.Resume();
  // Our own flag: libuv keeps a stopped stream "active" while writes are
  // pending.
  if (!reading_client_) {
    reading_client_ = true;
    uv_read_start(stream(), OnAlloc, OnRead);
  }
  FeedInput();
  UpdateTimer();
}

void ClientConnection::Write(std::string data) {
  if (closing_ || data.empty()) return;
  worker_->metrics().AddBytesOut(data.size());
  response_bytes_ += data.size();
  auto* w = new WriteReq{uv_write_t{}, std::move(data)};
  uv_buf_t buf = uv_buf_init(w->data.data(), w->data.size());
  if (uv_write(&w->req, stream(), &buf, 1, OnWrite) != 0) {
    delete w;
    Close();
    return;
  }
  if (!send_timer_armed_ && stream()->write_queue_size > 0) ArmSendTimer();
}

void ClientConnection::ArmSendTimer() {
  send_timer_armed_ = true;
  uv_timer_start(
      &send_timer_,
      [](uv_timer_t* t) {
        auto* c = static_cast<ClientConnection*>(t->data);
        if (c->closing_) return;
        // The client stopped reading: give the lease (and the upstream) back.
        c->Close();
      },
      static_cast<uint64_t>(
          absl::ToInt64Milliseconds(worker_->context().options().send_timeout)),
      0);
}

void ClientConnection::OnWrite(uv_write_t* req, int status) {
  std::unique_ptr<WriteReq> w(reinterpret_cast<WriteReq*>(req));
  auto* c = static_cast<ClientConnection*>(req->handle->data);
  if (c->closing_) return;
  if (status < 0) {
    c->Close();
    return;
  }
  size_t queued = c->stream()->write_queue_size;
  if (queued > 0) {
    c->ArmSendTimer();  // Progress: the wait starts over.
  } else if (c->send_timer_armed_) {
    c->send_timer_armed_ = false;
    uv_timer_stop(&c->send_timer_);
  }
  if (!c->reading_upstream_ &&
      queued < c->worker_->context().options().max_buffered_response / 4) {
    c->reading_upstream_ = true;
    if (c->upstream_) c->upstream_->SetReading(true);
  }
  if (c->close_after_write_ && queued == 0) c->Close();
}

}  // namespace modelplane::proxy
