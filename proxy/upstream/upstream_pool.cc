// The pool and its Connection in one file (about 600 lines): a connection
// is the pool's private class, and its life (resolve, connect, reuse,
// retry, idle close) is read best beside the pool that hands it out and
// takes it back.
#include "proxy/upstream/upstream_pool.h"

#include <netdb.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/uv/lazy_timer.h"
#include "common/uv/tcp_stream.h"

namespace modelplane::proxy::upstream {

struct Target {
  std::string host;
  int port = 80;
  std::string key;       // [https://]host:port, the pool's key.
  bool tls = false;      // https://.
  std::string tls_name;  // The host as written: SNI, the name checked.
  bool literal = false;
  sockaddr_storage addr{};
};

namespace {

constexpr size_t kReadChunk = 64 << 10;
// Parsed upstream URLs kept per pool (they come from the config: few).
constexpr size_t kMaxTargets = 1024;

// "http://host:port[/...]" or "https://...": its host and port, and the
// socket address when the host is an IP address (or localhost); a host name
// is resolved when a connection is made. False for anything else.
bool ParseAddress(const std::string& url, Target* t) {
  absl::string_view rest = url;
  bool tls = absl::ConsumePrefix(&rest, "https://");
  if (!tls && !absl::ConsumePrefix(&rest, "http://")) return false;
  rest = rest.substr(0, rest.find('/'));
  size_t colon = rest.rfind(':');
  std::string host;
  int port = tls ? 443 : 80;
  if (absl::StartsWith(rest, "[")) {
    size_t close = rest.find(']');
    if (close == absl::string_view::npos) return false;
    host = std::string(rest.substr(1, close - 1));
    colon = rest.find(':', close);
  } else {
    host = std::string(rest.substr(0, colon));
  }
  if (colon != absl::string_view::npos &&
      !absl::SimpleAtoi(rest.substr(colon + 1), &port)) {
    return false;
  }
  if (host.empty() || port <= 0 || port > 65535) return false;
  t->tls = tls;
  t->tls_name = host;
  if (host == "localhost") host = "127.0.0.1";
  t->host = host;
  t->port = port;
  // https: by the name as written (SNI and the name checked differ for
  // "localhost" and 127.0.0.1, so their connections do too).
  t->key = tls ? absl::StrCat("https://", t->tls_name, ":", port)
               : absl::StrCat(host, ":", port);
  t->literal = uv_ip4_addr(host.c_str(), port,
                           reinterpret_cast<sockaddr_in*>(&t->addr)) == 0 ||
               uv_ip6_addr(host.c_str(), port,
                           reinterpret_cast<sockaddr_in6*>(&t->addr)) == 0;
  return true;
}

// A name being resolved for a connection (libuv's thread pool). The
// connection may close meanwhile: it then clears `conn`.
struct Resolve {
  uv_getaddrinfo_t req;
  Connection* conn;
};

}  // namespace

class Handle;

// One keep-alive connection to one upstream, on a uv::TcpStream. Owned by
// the pool while idle, by its request's Handle while busy; freed once its
// stream is closed.
class Connection : public http1::ResponseVisitor,
                   private uv::TcpStream::Handler {
 public:
  // `tls`: the client context of an https:// target; `key`: the pool's key
  // (the target's, and for https the way it is trusted).
  Connection(UpstreamPool* pool, const Target& target, std::string key,
             std::shared_ptr<const tls::ClientTlsContext> tls)
      : pool_(pool),
        key_(std::move(key)),
        tls_(std::move(tls)),
        tls_name_(target.tls_name),
        host_(target.host),
        port_(target.port),
        addr_(target.addr),
        resolved_(target.literal) {
    if (pool->read_buffer_ == nullptr) {
      pool->read_buffer_ = std::make_unique<char[]>(kReadChunk);
    }
    stream_.Init(pool->loop_, this, pool->read_buffer_.get(), kReadChunk);
    if (tls_ != nullptr) stream_.EnableClientTls(tls_->get(), tls_name_);
    timer_.Init(pool->loop_, OnTimer, this);
  }

  const std::string& key() const { return key_; }

  // Starts a request: connects first if new.
  void Begin(OutgoingRequest request, bool head_request, Handle* handle,
             const Timeouts& timeouts, bool upgrade);
  // A tunnel's bytes for the upstream; true when over kTunnelBuffer waits.
  bool WriteRaw(absl::string_view data);
  // A tunnel's FIN to the upstream, after the queued writes.
  void ShutdownRaw();
  // Back in the pool: closes itself after the idle timeout.
  void Idle();
  void Cancel();  // The client left: close, never pool.
  void SetReading(bool reading);

  // ResponseVisitor.
  void OnResponseHead(http1::ResponseHead head) override;
  void OnResponseBody(absl::string_view data) override;
  void OnResponseEnd() override;
  void OnResponseError(const std::string& message) override;
  // The response is whole: back to the pool (or closed), then the observer.
  void FinishResponse();

 private:
  void Send();
  // `data`, then `body` from `body_from` on, to the socket; what it does
  // not take now is queued (the body by reference, not copied); a libuv
  // error code when even queuing failed. A tunnel hears OnUpstreamWritable
  // when its queue drains below kTunnelBuffer / 4.
  int Write(absl::string_view data,
            const std::shared_ptr<const std::string>& body = nullptr);
  void Connect();
  static void OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
  void Fail(const std::string& message);
  void Close();
  enum class Wait { kNone, kConnect, kHead, kIdle };
  // What a new connection may take to be usable: the TCP connect, and for
  // https the TLS handshake; zero: no limit.
  // (One of the two without a limit: the whole has none.)
  absl::Duration ConnectTime() const {
    if (!stream_.tls()) return timeouts_.connect;
    if (timeouts_.connect <= absl::ZeroDuration() ||
        timeouts_.tls_handshake <= absl::ZeroDuration()) {
      return absl::ZeroDuration();
    }
    return timeouts_.connect + timeouts_.tls_handshake;
  }
  void Arm(Wait wait, absl::Duration d);
  static void OnTimer(void* data);
  // uv::TcpStream::Handler.
  void OnStreamConnected(int status) override;
  void OnStreamRead(absl::string_view data) override;
  void OnStreamEof() override;
  void OnStreamError(int status) override;
  void OnStreamWritten(size_t queued) override;
  // The connection ended (EOF: 0, else libuv's error).
  void Ended(int status);
  // Closes an idle connection (true); false while a request is on it.
  bool EndIfIdle();

  UpstreamPool* pool_;
  std::string key_;
  std::shared_ptr<const tls::ClientTlsContext> tls_;  // https:// only.
  std::string tls_name_;
  std::string host_;
  int port_;
  sockaddr_storage addr_;
  bool resolved_;  // addr_ holds the address.
  Resolve* resolving_ = nullptr;
  uv::TcpStream stream_;
  uv::LazyTimer timer_;  // wait_'s timeout; lazy: no heap update per request.
  Wait wait_ = Wait::kNone;
  Timeouts timeouts_;
  bool shut_down_ = false;
  bool writing_ = false;  // Inside Write: OnStreamWritten is its own.
  bool connected_ = false;
  bool closing_ = false;
  bool reused_ = false;
  // A retry of a request a reused connection wrote (Fail).
  bool maybe_delivered_ = false;
  Handle* handle_ = nullptr;  // The request in flight, if any.
  OutgoingRequest request_;   // Kept until a response byte (for a retry).
  bool head_request_ = false;
  bool upgrade_ = false;  // The request asks to switch protocols.
  bool tunnel_ = false;   // Switched: bytes pass both ways as they are.
  bool got_bytes_ = false;
  bool got_head_ = false;
  bool keep_alive_ = false;
  bool timed_out_ = false;
  bool ended_ = false;  // The response ended inside the parser's Feed.
  std::unique_ptr<http1::ResponseParser> parser_;
};

class Handle : public UpstreamRequest {
 public:
  Handle(UpstreamPool* pool, UpstreamObserver* observer)
      : pool_(pool), observer_(observer) {}
  ~Handle() override {
    if (conn_ != nullptr) conn_->Cancel();
  }
  void SetReading(bool reading) override {
    if (conn_ != nullptr) conn_->SetReading(reading);
  }
  bool Write(absl::string_view data) override {
    return conn_ != nullptr && conn_->WriteRaw(data);
  }
  void Shutdown() override {
    if (conn_ != nullptr) conn_->ShutdownRaw();
  }

  UpstreamPool* pool_;
  UpstreamObserver* observer_;
  Connection* conn_ = nullptr;
};

void Connection::Arm(Wait wait, absl::Duration d) {
  wait_ = wait;
  if (wait == Wait::kNone || d <= absl::ZeroDuration()) {
    timer_.Disarm();  // E.g. no response-header timeout: the idle one is off.
    return;
  }
  timer_.Arm(static_cast<uint64_t>(
      std::max<int64_t>(1, absl::ToInt64Milliseconds(d))));
}

void Connection::OnTimer(void* data) {
  auto* c = static_cast<Connection*>(data);
  if (c->closing_) return;
  switch (c->wait_) {
    case Wait::kConnect:
      c->Fail(absl::StrCat(
          "connecting to the upstream ", c->key_, " timed out after ",
          absl::FormatDuration(c->ConnectTime()),
          c->stream_.tls() ? " (timeouts.connect + timeouts.tlsHandshake)"
                           : ""));
      break;
    case Wait::kHead:
      c->timed_out_ = true;
      c->request_ = {};  // The upstream has it: never retried.
      c->Fail(absl::StrCat("the upstream ", c->key_,
                           " sent no response head within ",
                           absl::FormatDuration(c->timeouts_.response_header),
                           " (timeouts.responseHeader)"));
      break;
    case Wait::kIdle:
      c->pool_->Forget(c);
      c->Close();
      break;
    case Wait::kNone:
      break;
  }
}

void Connection::Idle() { Arm(Wait::kIdle, timeouts_.idle); }

void Connection::Begin(OutgoingRequest request, bool head_request,
                       Handle* handle, const Timeouts& timeouts, bool upgrade) {
  timeouts_ = timeouts;
  upgrade_ = upgrade;
  timed_out_ = false;
  handle_ = handle;
  handle->conn_ = this;
  request_ = std::move(request);
  head_request_ = head_request;
  got_bytes_ = got_head_ = false;
  parser_ = std::make_unique<http1::ResponseParser>(this);
  parser_->ExpectResponse(head_request, upgrade);
  if (connected_) {
    reused_ = true;
    Send();
    return;
  }
  Arm(Wait::kConnect, ConnectTime());  // Resolving counts too.
  if (resolved_) return Connect();
  auto* r = new Resolve{uv_getaddrinfo_t{}, this};
  resolving_ = r;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(pool_->loop_, &r->req, OnResolved, host_.c_str(),
                          nullptr, &hints);
  if (rc != 0) {
    resolving_ = nullptr;
    delete r;
    Fail(absl::StrCat("cannot resolve the upstream host ", host_, ": ",
                      uv_strerror(rc)));
  }
}

void Connection::OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  std::unique_ptr<Resolve> r(reinterpret_cast<Resolve*>(req));
  Connection* c = r->conn;
  if (c == nullptr) {  // Closed meanwhile.
    if (res != nullptr) uv_freeaddrinfo(res);
    return;
  }
  c->resolving_ = nullptr;
  if (status != 0 || res == nullptr) {
    if (res != nullptr) uv_freeaddrinfo(res);
    c->Fail(absl::StrCat("cannot resolve the upstream host ", c->host_, ": ",
                         uv_strerror(status)));
    return;
  }
  std::memcpy(&c->addr_, res->ai_addr, res->ai_addrlen);
  if (res->ai_family == AF_INET6) {
    reinterpret_cast<sockaddr_in6*>(&c->addr_)->sin6_port = htons(c->port_);
  } else {
    reinterpret_cast<sockaddr_in*>(&c->addr_)->sin_port = htons(c->port_);
  }
  uv_freeaddrinfo(res);
  c->resolved_ = true;
  c->Connect();
}

void Connection::Connect() {
  int rc = stream_.Connect(reinterpret_cast<const sockaddr*>(&addr_));
  if (rc != 0)
    Fail(absl::StrCat("cannot connect to the upstream: ", uv_strerror(rc)));
}

void Connection::OnStreamConnected(int status) {
  if (closing_) return;
  if (status == UV_EPROTO && stream_.tls()) {
    Fail(absl::StrCat("TLS handshake with the upstream ", key_,
                      " failed: ", stream_.TlsError()));
    return;
  }
  if (status != 0) {
    Fail(absl::StrCat("cannot connect to the upstream ", key_, ": ",
                      uv_strerror(status)));
    return;
  }
  connected_ = true;
  uv_tcp_nodelay(stream_.tcp(), 1);
  if (timeouts_.keepalive > absl::ZeroDuration()) {
    uv_tcp_keepalive(stream_.tcp(), 1,
                     static_cast<unsigned int>(std::max<int64_t>(
                         1, absl::ToInt64Seconds(timeouts_.keepalive))));
  }
  if (!stream_.StartReading()) {
    Fail("cannot read from the upstream");
    return;
  }
  Send();
}

void Connection::Send() {
  Arm(Wait::kHead, timeouts_.response_header);
  int rc = Write(request_.head, request_.body);
  if (rc != 0) {
    Fail(absl::StrCat("cannot write to the upstream: ", uv_strerror(rc)));
  }
}

int Connection::Write(absl::string_view data,
                      const std::shared_ptr<const std::string>& body) {
  // Straight to the socket when it takes it all (the usual case): no copy,
  // and no epoll_ctl from libuv re-arming the watcher after a queued write.
  // An error is left to the stream (OnStreamError), or returned when even
  // queuing failed.
  writing_ = true;
  int rc = stream_.WriteShared(data, body);
  writing_ = false;
  return rc;
}

void Connection::OnStreamWritten(size_t queued) {
  if (writing_ || closing_ || handle_ == nullptr || !tunnel_) return;
  // A tunnel's queue drained below its bound: its client may be read.
  if (queued < kTunnelBuffer / 4) handle_->observer_->OnUpstreamWritable();
}

bool Connection::EndIfIdle() {
  // Idle in the pool: whatever comes (bytes out of turn, the upstream's
  // close) ends it.
  if (handle_ != nullptr) return false;
  pool_->Forget(this);
  Close();
  return true;
}

void Connection::OnStreamRead(absl::string_view data) {
  if (closing_ || EndIfIdle()) return;
  if (tunnel_) {
    handle_->observer_->OnUpstreamBody(data);
    if (handle_ != nullptr && !closing_) {
      handle_->observer_->OnUpstreamReadDone();
    }
    return;
  }
  got_bytes_ = true;
  size_t used = parser_->Feed(data);
  if (parser_->upgraded() && !closing_ && handle_ != nullptr) {
    // Switched (the 101 went to the observer): the rest of this read is
    // the new protocol's first bytes.
    tunnel_ = true;
    keep_alive_ = false;
    // A tunnel can be quiet for hours: TCP keepalive finds a dead peer.
    uv_tcp_keepalive(stream_.tcp(), 1, 60);
    if (used < data.size())
      handle_->observer_->OnUpstreamBody(data.substr(used));
    if (handle_ != nullptr && !closing_) {
      handle_->observer_->OnUpstreamReadDone();
    }
    return;
  }
  // Only now, with the parser off the stack: finishing may start the next
  // request on this very connection (a new parser).
  if (ended_) {
    FinishResponse();
  } else if (handle_ != nullptr && !closing_ && got_head_) {
    handle_->observer_->OnUpstreamReadDone();
  }
}

void Connection::OnStreamEof() { Ended(0); }

// A read error, or a write's (which the old read path only saw as the
// connection's end).
void Connection::OnStreamError(int status) { Ended(status); }

void Connection::Ended(int status) {
  if (closing_ || EndIfIdle()) return;
  if (tunnel_) {
    // The upstream closed its side (or failed): the tunnel ends.
    Handle* h = handle_;
    handle_ = nullptr;
    h->conn_ = nullptr;
    Close();
    if (status == 0) {
      h->observer_->OnUpstreamEnd();
    } else {
      h->observer_->OnUpstreamError(
          absl::StrCat("the upstream connection failed: ", uv_strerror(status)),
          false, false);
    }
    return;
  }
  if (status == 0) parser_->FeedEof();
  if (ended_) {
    FinishResponse();
    return;
  }
  if (handle_ != nullptr && !closing_) {
    Fail(status == 0 ? "the upstream closed the connection"
                     : absl::StrCat("the upstream connection failed: ",
                                    uv_strerror(status)));
  }
}

void Connection::OnResponseHead(http1::ResponseHead head) {
  got_head_ = true;
  Arm(Wait::kNone, absl::ZeroDuration());
  request_ = {};  // Never retried now (a write in flight keeps the body).
  keep_alive_ = head.keep_alive;
  if (handle_ != nullptr) handle_->observer_->OnUpstreamHead(std::move(head));
}

void Connection::OnResponseBody(absl::string_view data) {
  if (handle_ != nullptr) handle_->observer_->OnUpstreamBody(data);
}

void Connection::OnResponseEnd() { ended_ = true; }

void Connection::ShutdownRaw() {
  if (closing_ || !connected_ || shut_down_) return;
  shut_down_ = true;
  // Runs after the queued writes.
  if (!stream_.Shutdown()) shut_down_ = false;
}

bool Connection::WriteRaw(absl::string_view data) {
  if (closing_ || !connected_ || shut_down_ || data.empty()) return false;
  // A failed write: the read side sees the connection end.
  return Write(data) == 0 && stream_.WriteQueueSize() > kTunnelBuffer;
}

void Connection::FinishResponse() {
  ended_ = false;
  Handle* h = handle_;
  handle_ = nullptr;
  if (h != nullptr) h->conn_ = nullptr;
  if (keep_alive_ && !closing_) {
    // Paused for a slow client, maybe: an idle connection must read (to see
    // the upstream close it) and the next request must get its answer.
    SetReading(true);
    pool_->ReturnIdle(this);
    Idle();
  } else {
    Close();
  }
  if (h != nullptr) h->observer_->OnUpstreamEnd();
}

void Connection::OnResponseError(const std::string& message) { Fail(message); }

void Connection::Fail(const std::string& message) {
  Handle* h = handle_;
  handle_ = nullptr;
  bool retry = h != nullptr && reused_ && !got_bytes_ && !request_.head.empty();
  bool timed_out = timed_out_;
  OutgoingRequest request = std::move(request_);
  request_ = {};
  Close();
  if (h == nullptr) return;
  h->conn_ = nullptr;
  if (retry) {
    // A pooled connection the upstream had already closed: try once more
    // on a fresh one (the upstream never saw this request).
    Target target;
    target.host = host_;
    target.port = port_;
    target.key = key_;
    target.literal = resolved_;  // A name already resolved is reused.
    target.addr = addr_;
    target.tls_name = tls_name_;
    auto* fresh = new Connection(pool_, target, key_, tls_);
    // The closed connection may have delivered it (the upstream read it,
    // then went): never offered back as unsent from here on.
    fresh->maybe_delivered_ = true;
    fresh->Begin(std::move(request), head_request_, h, timeouts_, upgrade_);
    return;
  }
  // Never connected, nor tried before on a connection that was: the
  // upstream has not seen a byte of it.
  h->observer_->OnUpstreamError(
      message, !got_head_, timed_out,
      connected_ || maybe_delivered_ ? nullptr : &request);
}

void Connection::Cancel() {
  handle_ = nullptr;
  Close();
}

void Connection::SetReading(bool reading) {
  if (!connected_ || closing_) return;
  if (reading) {
    stream_.StartReading();  // An error ends the connection when read.
  } else {
    stream_.StopReading();
  }
}

void Connection::Close() {
  if (closing_) return;
  closing_ = true;
  if (resolving_ != nullptr) {
    resolving_->conn = nullptr;  // Its callback frees it.
    resolving_ = nullptr;
  }
  timer_.Close();
  // Deleted once libuv is done with the socket (never while on the stack).
  stream_.Close([](void* c) { delete static_cast<Connection*>(c); }, this);
}

UpstreamPool::UpstreamPool(uv_loop_t* loop) : loop_(loop) {}

UpstreamPool::~UpstreamPool() {
  for (auto& [key, conns] : idle_) {
    for (Connection* c : conns) c->Cancel();
  }
}

std::unique_ptr<UpstreamRequest> UpstreamPool::Send(
    const std::string& base_url, OutgoingRequest request, bool head_request,
    UpstreamObserver* observer, const Timeouts& timeouts, bool upgrade) {
  auto handle = std::make_unique<Handle>(this, observer);
  // Parsed once per URL, not per request.
  auto known = targets_.find(base_url);
  if (known == targets_.end()) {
    auto target = std::make_unique<Target>();
    if (!ParseAddress(base_url, target.get())) {
      observer->OnUpstreamError(
          absl::StrCat("unsupported upstream URL '", base_url,
                       "' (http:// or https://host:port)"),
          true, false);
      return handle;
    }
    if (targets_.size() >= kMaxTargets) targets_.clear();
    known = targets_.emplace(base_url, std::move(target)).first;
  }
  const Target& target = *known->second;
  std::string key = target.key;
  std::shared_ptr<const tls::ClientTlsContext> tls;
  if (target.tls) {
    absl::StatusOr<const tls::ClientTlsContexts::Entry*> trust =
        tls_contexts_.Get(timeouts.tls_ca_pem.get(), timeouts.tls_insecure);
    if (!trust.ok()) {
      observer->OnUpstreamError(
          absl::StrCat("cannot make TLS settings for ", base_url, ": ",
                       trust.status().message()),
          true, false);
      return handle;
    }
    tls = (*trust)->context;
    // Connections trusted differently are not shared.
    key = absl::StrCat(key, "#", (*trust)->key);
  }
  Connection* c;
  auto it = idle_.find(key);
  if (it != idle_.end() && !it->second.empty()) {
    c = it->second.back();
    it->second.pop_back();
  } else {
    c = new Connection(this, target, key, tls);
  }
  c->Begin(std::move(request), head_request, handle.get(), timeouts, upgrade);
  return handle;
}

void UpstreamPool::ReturnIdle(Connection* c) { idle_[c->key()].push_back(c); }

void UpstreamPool::Forget(Connection* c) {
  auto it = idle_.find(c->key());
  if (it == idle_.end()) return;
  auto& v = it->second;
  v.erase(std::remove(v.begin(), v.end(), c), v.end());
}

size_t UpstreamPool::idle_connections() const {
  size_t n = 0;
  for (const auto& [key, v] : idle_) n += v.size();
  return n;
}

}  // namespace modelplane::proxy::upstream
