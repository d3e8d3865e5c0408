#include "proxy/worker/exchange.h"

#include <algorithm>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/json_string.h"
#include "common/loop_thread.h"
#include "proxy/answers/admission.h"
#include "proxy/router/body_filters.h"
#include "proxy/router/url_params.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

namespace {

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

}  // namespace

Exchange::Exchange(Worker* worker, ResponseSink* sink, std::string peer)
    : worker_(worker), sink_(sink), peer_(std::move(peer)) {}

Exchange::~Exchange() {
  Cancel();
  DropBody();
}

void Exchange::Enter(Phase next) {
#ifndef NDEBUG
  // The request's course: received, then waiting for its lease (a model's)
  // or straight upstream (a peer's), then its answer, or a tunnel; or
  // answered from any of them (idle).
  bool allowed = false;
  switch (next) {
    case Phase::kIdle:
      allowed = phase_ != Phase::kIdle;
      break;
    case Phase::kReceiving:
      allowed = phase_ == Phase::kIdle;
      break;
    case Phase::kWaiting:
      // From upstream: the model could not be reached, placed again.
      allowed = phase_ == Phase::kReceiving || phase_ == Phase::kUpstream;
      break;
    case Phase::kUpstream:
      allowed = phase_ == Phase::kReceiving || phase_ == Phase::kWaiting;
      break;
    case Phase::kTunnel:
      allowed = phase_ == Phase::kUpstream;
      break;
    case Phase::kStreaming:
      allowed = phase_ == Phase::kReceiving;
      break;
  }
  ABSL_RAW_CHECK(allowed, "an exchange's phase out of its course");
#endif
  phase_ = next;
}

void Exchange::Begin(http1::RequestHead head) {
  routing_ = worker_->routing();  // Held to the request's end.
  Enter(Phase::kReceiving);
  // Answers still due to an earlier request carry its generation and are
  // dropped (no new token per request: one allocation less).
  ++generation_;
  *alive_ = true;
  DropBody();
  req_ = RequestState();  // All of the last request's, at once.
  bool websocket_body = false;
  if (head.upgrade && head.method == "GET" && head.version_minor >= 1 &&
      http1::HasToken(head.headers, "upgrade", "websocket") &&
      http1::HasToken(head.headers, "connection", "upgrade")) {
    req_.websocket = "websocket";
    // A body would reach the upstream after a head that frames none: a
    // second request of the client's making on a pooled connection.
    websocket_body = head.chunked || head.content_length.value_or(0) > 0;
  }
  req_.head = std::move(head);
  absl::string_view path =
      absl::string_view(req_.head.target).substr(0, req_.head.target.find('?'));
  req_.record.route = RouteLabel(path);
  req_.head_ns = uv_hrtime();
  req_.response_bytes = 0;
  bool body_route = router::IsBodyRoute(req_.head.method, path);
  if (body_route) {
    const std::string* type =
        http1::FindHeader(req_.head.headers, "content-type");
    auto boundary =
        type ? router::MultipartScanner::BoundaryFrom(*type) : std::nullopt;
    if (boundary && boundary->empty()) {
      // Refused on its head: its parts could be split otherwise upstream.
      req_.rejection_message =
          "a multipart/form-data Content-Type needs exactly one boundary "
          "(1 to 70 characters)";
    } else if (boundary) {
      req_.boundary = *boundary;
      req_.multipart = std::make_unique<router::MultipartScanner>(*boundary);
      req_.scan = BodyScan::kMultipart;
    } else {
      // curl -d labels a JSON body a form: JSON first, the form's model
      // field only when the body is not JSON (as llama-swap decides).
      req_.scan = BodyScan::kJson;
      req_.form =
          type != nullptr && absl::StartsWithIgnoreCase(
                                 *type, "application/x-www-form-urlencoded");
    }
  }
  // Auth is decided on the head: the body of a request that will be
  // refused is read and dropped, never buffered (and not asked for).
  if (router::NeedsKey(req_.head.method, path)) {
    if (routing_->api_keys() == nullptr) {
      req_.rejection = 503;
    } else if (!answers::Authorized(*routing_->api_keys(),
                                    &req_.head.headers)) {
      req_.rejection = 401;
    }
  }
  if (req_.rejection == 0 && websocket_body) {
    req_.rejection_message = "a WebSocket handshake cannot have a body";
  }
  if (req_.rejection == 0 && !req_.rejection_message.empty())
    req_.rejection = 400;
  // A body of known length gets its buffer sized at once (address space:
  // its pages count only once written). It is charged as its bytes arrive,
  // not by what the head declares: a client that declares 64 MiB and sends
  // a byte a minute holds a byte of the budget, not 64 MiB.
  if (req_.rejection == 0 && req_.head.content_length.value_or(0) > 0) {
    body_.reserve(*req_.head.content_length);
  }
  if (req_.head.expect_continue && req_.rejection == 0) sink_->SendContinue();
}

bool Exchange::ChargeBody(uint64_t n) {
  if (n <= charged_) return true;
  if (!worker_->context().bodies().TryCharge(n - charged_)) return false;
  charged_ = n;
  return true;
}

void Exchange::ChargeFiltered() {
  uint64_t size = body_.size();
  BodyBudget& budget = worker_->context().bodies();
  if (size > charged_) {
    budget.Charge(size - charged_);
  } else {
    budget.Release(charged_ - size);
  }
  charged_ = size;
}

void Exchange::DropBody() {
  if (charged_ > 0) {
    worker_->context().bodies().Release(charged_);
    charged_ = 0;
  }
  if (body_.capacity() > kInlineBodyBytes) {
    bool large = body_.capacity() >= kLargeBodyBytes;
    std::string().swap(body_);  // Not kept for the next request.
    if (large) worker_->context().FreedLargeBody();
  } else {
    body_.clear();
  }
}

void Exchange::Body(absl::string_view data) {
  // Refused on its head, or already answered (an HTTP/2 408): dropped.
  if (req_.rejection != 0 || req_.over_budget || !in_request()) return;
  if (!ChargeBody(body_.size() + data.size())) {
    req_.over_budget = true;  // Answered 503 at its end; the rest is dropped.
    DropBody();
    return;
  }
  body_.append(data.data(), data.size());
  if (req_.scan == BodyScan::kJson) req_.json.Feed(data);
  if (req_.scan == BodyScan::kMultipart) req_.multipart->Feed(data);
}

void Exchange::End() { Dispatch(); }

void Exchange::Fail(int status, const std::string& message) {
  if (!in_request()) Begin(http1::RequestHead());
  RespondError(status, message);
}

void Exchange::Cancel() {
  *alive_ = false;
  StopLoadingTimer();
  if (!in_request()) return;
  if (!req_.head_sent)
    req_.record.status = 499;  // nginx: client closed request.
  Finish();  // The upstream learns at once that the client left.
}

void Exchange::OnWritable() {
  if (req_.reading_upstream) return;
  req_.reading_upstream = true;
  if (upstream_) upstream_->SetReading(true);
}

router::Request Exchange::RouterRequest() {
  router::Request r;
  r.method = req_.head.method;
  r.target = req_.head.target;
  if (req_.scan == BodyScan::kJson) {
    req_.json.Finish();
    // curl -d labels a JSON body a form: its model field, when the body is
    // not JSON (as llama-swap decides).
    if (!req_.json.model() && req_.json.error() && req_.form)
      req_.scan = BodyScan::kForm;
  }
  if (req_.scan == BodyScan::kJson) {
    r.body = router::Body::kJson;
    r.body_model = req_.json.model();
    if (req_.json.error()) r.scan_error = req_.json.error_message();
  } else if (req_.scan == BodyScan::kMultipart && req_.multipart != nullptr) {
    req_.multipart->Finish();
    r.body = router::Body::kMultipart;
    r.body_model = req_.multipart->model();
    if (req_.multipart->error()) r.scan_error = req_.multipart->error_message();
  } else if (req_.scan == BodyScan::kForm) {
    r.body = router::Body::kForm;
    r.form = body_;
  }
  return r;
}

void Exchange::Dispatch() {
  const std::string* origin = http1::FindHeader(req_.head.headers, "origin");
  req_.origin = origin != nullptr ? *origin : "";
  const router::Snapshot* snapshot = routing_.get();
  router::Decision d = router::Decide(
      RouterRequest(), *routing_, [snapshot](const std::string& model) {
        return cluster::Cluster::Busy(*snapshot, model);
      });
  using Kind = router::Decision::Kind;
  ProxyContext& context = worker_->context();
  answers::AnswerRequest q{*routing_, req_.head, body_, !req_.origin.empty(),
                           context.options().loopback_listener};
  if (d.kind == Kind::kPreflight) return answers::Preflight(q, this);
  if (d.kind == Kind::kHealth) return answers::Health(this);
  if (d.kind == Kind::kUi) return answers::Ui(q, this);
  // Admission (decided on the head): everything but health and preflights.
  if (req_.rejection == 503) {
    // Fail closed: until the manager has said whether keys are required,
    // nothing is served (the keys come with the first routing snapshot).
    return RespondError(503,
                        "modelproxy has not loaded its API keys from the "
                        "manager yet");
  }
  if (req_.rejection == 400) return RespondError(400, req_.rejection_message);
  if (req_.over_budget) {
    worker_->metrics().AddBodyRefused();
    return Respond(
        503, "application/json",
        absl::StrCat(R"({"error":{"message":"modelproxy holds as many )",
                     R"(request bodies as it may (--max-buffered-body-mib )",
                     worker_->context().bodies().limit() >> 20,
                     R"(); retry","type":"api_error","code":503}})"),
        {{"Retry-After", "1"}});
  }
  if (req_.rejection == 401) {
    // Every endpoint but /health needs the key, /metrics included (a
    // Prometheus job sets it with `authorization: credentials`). Basic, as
    // llama-swap answers, so that a browser asks for the key (the
    // password); but not to a script's request (`X-Requested-With`, as
    // the web UI sends), which would get the browser's dialog instead of
    // its own form.
    bool script =
        http1::FindHeader(req_.head.headers, "x-requested-with") != nullptr;
    return Respond(
        401, "application/json",
        absl::StrCat(R"({"error":{"message":"a valid API key is )"
                     R"(required","type":"authentication_error",)"
                     R"("code":401}})"),
        {{"WWW-Authenticate", script ? "Bearer realm=\"modelplane\""
                                     : "Basic realm=\"modelplane\""}});
  }
  switch (d.kind) {
    case Kind::kRunning:
      return answers::Running(q, this);
    case Kind::kMetrics:
      return answers::Metrics(context.metrics(), this);
    case Kind::kActivity:
      return answers::Activity(q, context.activity(), context.activity_store(),
                               this);
    case Kind::kEvents:
      return answers::Events(context.events(), this);
    case Kind::kLogs:
      return answers::Logs(q, d.source, d.stream, context.events(),
                           context.logs(), this);
    case Kind::kVersion:
      return answers::Version(this);
    case Kind::kLoad: {
      answers::LoadFn load;
      if (context.load()) {
        load = [load = context.load(), snapshot = routing_](
                   const std::string& model, const std::string& node,
                   auto done) { load(snapshot, model, node, std::move(done)); };
      }
      return answers::Load(q, d.model, load, this);
    }
    case Kind::kUnload:
      return answers::Unload(q, d.unload, context.unload(), this);
    case Kind::kModels:
      return answers::Models(q, this);
    case Kind::kProfiles:
      return answers::Profiles(q, this);
    case Kind::kSetProfile:
      return answers::SetProfile(q, &context.routing(), this);
    case Kind::kRedirect:
      return Respond(d.status, "text/plain", "", {{"Location", d.location}});
    case Kind::kModel:
      return Forward(d);
    case Kind::kPeer:
      req_.renamed = d.renamed;
      return ForwardToPeer(*d.peer, d.model, std::move(d.target));
    case Kind::kError:
      if (!d.allow.empty()) {
        return Respond(
            d.status, "application/json",
            absl::StrCat(R"({"error":{"message":)", JsonString(d.message),
                         R"(,"type":"invalid_request_error",)", R"("code":)",
                         d.status, "}}"),
            {{"Allow", d.allow}});
      }
      return RespondError(d.status, d.message);
    case Kind::kPreflight:
    case Kind::kHealth:
    case Kind::kUi:
      break;  // Answered above.
  }
}

void Exchange::Forward(const router::Decision& d) {
  const router::Route* route = d.route;
  const std::string& model_name = d.model;
  req_.renamed = d.renamed;
  const router::FilterSpec* filters = &route->filters;
  router::FilterSpec renamed;
  if (req_.renamed && filters->use_model_name.empty()) {
    // A pinned or selected request says the model it went to.
    renamed = route->filters;
    renamed.use_model_name = route->id;
    filters = &renamed;
  }
  if (req_.scan == BodyScan::kJson && filters->AppliesTo(model_name)) {
    // Parsed in place (the body is not copied for its tree).
    absl::StatusOr<std::string> filtered =
        router::ApplyJsonFilters(std::move(body_), *filters, model_name);
    if (!filtered.ok()) {
      return RespondError(400, std::string(filtered.status().message()));
    }
    body_ = *std::move(filtered);
    ChargeFiltered();
  } else if (!filters->use_model_name.empty() &&
             req_.scan == BodyScan::kMultipart) {
    router::RewriteMultipartModel(&body_, req_.boundary,
                                  filters->use_model_name);
    ChargeFiltered();
  }
  req_.head.target = d.target;
  if (req_.renamed) RenameModelInQueryAndForm(filters->use_model_name);
  req_.record.model = route->id;
  req_.route = route;
  req_.admit_ns = uv_hrtime();
  req_.timeouts = {route->connect_timeout, route->response_header_timeout,
                   route->idle_timeout};
  req_.timeouts.keepalive = route->keepalive;
  req_.timeouts.tls_handshake = route->tls_handshake_timeout;
  req_.timeouts.tls_ca_pem = route->tls_ca_pem;
  req_.timeouts.tls_insecure = route->tls_insecure;
  if (!req_.websocket.empty() && route->ignore_websockets) {
    return ForwardIgnoredWebSocket(*route);
  }
  bool stream =
      req_.scan == BodyScan::kJson && req_.json.stream().value_or(false);
  // llama-swap sends its loading state on chat completions only; it is the
  // config's choice, so it runs even when the comments are off.
  req_.loading_state = stream && route->send_loading_state &&
                       (req_.record.route == "/v1/chat/completions" ||
                        req_.record.route == "/v/chat/completions");
  req_.loading = req_.loading_state ||
                 (stream && worker_->context().options().loading_interval >
                                absl::ZeroDuration());
  if (req_.loading) ArmLoadingTimer();
  Enter(Phase::kWaiting);
  Place();
}

void Exchange::Respond(int status, const std::string& content_type,
                       const std::string& body, const http1::Headers& extra) {
  if (req_.loading_head_sent) {
    // Too late for a status: the answer is an SSE event in the open stream
    // (newlines folded so that it stays one `data:` line).
    req_.record.status = status;
    if (status >= 400) req_.error = answers::ErrorMessageOf(body);
    std::string data = body;
    std::replace(data.begin(), data.end(), '\n', ' ');
    std::replace(data.begin(), data.end(), '\r', ' ');
    // Then the end marker, as llama-swap: clients stop reading cleanly.
    sink_->SendData(absl::StrCat("data: ", data, "\n\ndata: [DONE]\n\n"));
    Finish();
    sink_->SendEnd();
    return;
  }
  http1::Headers headers;
  if (!content_type.empty()) headers.emplace_back("Content-Type", content_type);
  headers.insert(headers.end(), extra.begin(), extra.end());
  AllowOrigin(&headers);
  TagNode(&headers);
  req_.head_sent = true;
  req_.record.status = status;
  if (status >= 400 && !req_.record.model.empty()) {
    req_.error = answers::ErrorMessageOf(body);  // The activity log's.
  }
  sink_->SendResponse(status, headers, body);
  Finish();
  sink_->SendEnd();
}

answers::Responder::Deferred Exchange::Later() {
  LoopThread* loop = &worker_->loop();
  std::weak_ptr<bool> alive = alive_;
  uint64_t generation = generation_;
  return [this, loop, alive,
          generation](std::function<void(answers::Responder*)> fn) {
    loop->Post([this, alive, generation, fn = std::move(fn)] {
      auto a = alive.lock();
      if (a == nullptr || !*a || generation != generation_) return;
      fn(this);
    });
  };
}

void Exchange::RespondError(int status, const std::string& message) {
  Respond(status, "application/json",
          absl::StrCat(R"({"error":{"message":)", JsonString(message),
                       R"(,"type":")", ErrorType(status), R"(","code":)",
                       status, "}}"));
}

void Exchange::Finish() {
  if (!in_request()) return;
  Enter(Phase::kIdle);
  if (req_.scan_usage) {
    // Counted even when the client left early: the model did the work.
    req_.record.prompt_tokens = req_.usage.prompt();
    req_.record.completion_tokens = req_.usage.completion();
    req_.record.cached_tokens = req_.usage.cached();
    req_.record.draft_tokens = req_.usage.draft();
    req_.record.draft_accepted_tokens = req_.usage.draft_accepted();
    req_.record.prompt_per_second = req_.usage.prompt_per_second();
    req_.record.predicted_per_second = req_.usage.predicted_per_second();
  }
  StopLoadingTimer();
  CloseStream();
  // Answered: the body is not kept for the connection's next request (a
  // keep-alive connection could hold a large one, and its budget, idle).
  DropBody();
  if (!waiting_for_.empty()) {
    // Still waiting for a lease: the client left (or the request was
    // answered otherwise). Nothing is started or evicted for it.
    node_->broker().Withdraw(waiting_for_, ticket_);
    waiting_for_.clear();
  }
  RecordRequest();
  req_.origin.clear();
  upstream_.reset();
  if (lease_watch_ != 0) {
    node_->broker().Unwatch(leased_model_, lease_watch_);
    lease_watch_ = 0;
  }
  if (!leased_model_.empty()) {
    node_->broker().Finish(leased_model_);
    leased_model_.clear();
  }
  node_.reset();
}

void Exchange::RecordRequest() {
  if (!req_.record.model.empty() && req_.head_ns != 0) {
    // OpenTelemetry GenAI's timings (metrics.h).
    uint64_t now = uv_hrtime();
    auto since = [now](uint64_t t) {
      return absl::Nanoseconds(static_cast<int64_t>(now - t));
    };
    req_.record.duration = since(req_.head_ns);
    if (req_.first_token_ns != 0) {
      req_.record.time_to_first_token = absl::Nanoseconds(
          static_cast<int64_t>(req_.first_token_ns - req_.head_ns));
      req_.record.generation = since(req_.first_token_ns);
    }
  }
  worker_->metrics().Record(req_.record);
  if (!req_.record.model.empty() && req_.head_ns != 0) AddActivity();
  if (worker_->context().options().access_log) {
    double ms = req_.head_ns == 0 ? 0 : (uv_hrtime() - req_.head_ns) / 1e6;
    std::string line = absl::StrFormat(
        "%s \"%s %s\" %d %d %.3fms model=%s\n", peer_,
        absl::CEscape(req_.head.method), absl::CEscape(req_.head.target),
        req_.record.status, req_.response_bytes, ms,
        req_.record.model.empty() ? "-" : req_.record.model);
    if (const auto& sink = worker_->context().options().access_log_sink) {
      line.pop_back();  // The sink ends its lines itself.
      sink(line);
    } else {
      fwrite(line.data(), 1, line.size(), stderr);  // One write: whole.
    }
  }
  req_.record = RequestRecord();
  req_.head_ns = 0;
  req_.first_token_ns = 0;
  req_.response_bytes = 0;
}

void Exchange::TagNode(http1::Headers* headers) const {
  if (node_ != nullptr)
    headers->emplace_back("X-Modelplane-Node", node_->name());
}

void Exchange::AddActivity() {
  const RequestRecord& r = req_.record;
  answers::ActivityEntry e;
  e.id = worker_->context().NextActivityId();
  e.unix_ms = absl::ToUnixMillis(absl::Now());
  e.model = r.model;
  e.node = r.node;
  // The path the client asked for: an /upstream/<model>/... request's
  // target lost its prefix on the way.
  absl::string_view target = req_.head.target;
  target = target.substr(0, std::min<size_t>(target.find('?'), 256));
  e.path = r.route == "/upstream" ? absl::StrCat("/upstream/", r.model, target)
                                  : std::string(target);
  e.status = r.status;
  e.input_tokens = r.prompt_tokens;
  e.output_tokens = r.completion_tokens;
  auto ms = [](absl::Duration d) { return absl::ToDoubleMilliseconds(d); };
  if (r.time_to_first_token)
    e.time_to_first_token_ms = ms(*r.time_to_first_token);
  if (r.lease_wait) {
    // The lease's wait: the model's loading, and the queue's rest.
    absl::Duration load = r.load_wait.value_or(absl::ZeroDuration());
    e.queue_wait_ms = ms(*r.lease_wait - load);
    if (r.load_wait) e.load_wait_ms = ms(load);
  }
  if (r.duration) e.duration_ms = ms(*r.duration);
  absl::Duration generating = r.generation ? *r.generation
                              : r.duration ? *r.duration
                                           : absl::ZeroDuration();
  if (r.predicted_per_second) {
    e.tokens_per_second = r.predicted_per_second;  // The model's measure.
  } else if (r.completion_tokens && generating > absl::ZeroDuration()) {
    e.tokens_per_second = static_cast<double>(*r.completion_tokens) /
                          absl::ToDoubleSeconds(generating);
  }
  e.prompt_tokens_per_second = r.prompt_per_second;
  e.cached_tokens = r.cached_tokens;
  e.draft_tokens = r.draft_tokens;
  e.draft_accepted_tokens = r.draft_accepted_tokens;
  e.error = std::move(req_.error);
  if (e.error.empty() && r.status >= 400 && !req_.upstream_error.empty()) {
    e.error = answers::ErrorMessageOf(req_.upstream_error);
  }
  // The UI's live activity table: only when someone reads the events.
  answers::EventHub* events = worker_->context().events();
  if (events != nullptr && events->readers() > 0) {
    events->AddActivity(answers::ActivityJson(e));
  }
  worker_->AddActivity(std::move(e), routing_->activity_limit());
}

void Exchange::AllowOrigin(http1::Headers* headers) const {
  // A request with an Origin may read the answer (unless the upstream
  // already said who may).
  if (req_.origin.empty() ||
      http1::FindHeader(*headers, "access-control-allow-origin") != nullptr) {
    return;
  }
  headers->emplace_back("Access-Control-Allow-Origin", req_.origin);
  headers->emplace_back("Vary", "Origin");
}

}  // namespace modelplane::proxy
