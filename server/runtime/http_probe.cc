#include "server/runtime/http_probe.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/uv/handle.h"
#include "common/uv/tcp_stream.h"

namespace modelplane::runtime {
namespace {

constexpr size_t kMaxStatusLine = 1024;

// One probe: resolve (names only), connect, write the request, read the
// status line, over a uv::TcpStream. Deletes itself once its stream is
// closed, no resolution is pending, and its Probe handle is gone.
class ProbeOp : private uv::TcpStream::Handler {
 public:
  ProbeOp(uv_loop_t* loop, std::string method, ParsedUrl url,
          absl::Duration timeout,
          std::shared_ptr<const tls::ClientTlsContext> tls,
          std::function<void(absl::StatusOr<int>)> done)
      : loop_(loop),
        method_(std::move(method)),
        url_(std::move(url)),
        timeout_(timeout),
        tls_(std::move(tls)),
        done_(std::move(done)) {}

  void Start() {
    stream_.Init(loop_, this, read_buf_, sizeof(read_buf_));
    // https: the handshake is part of the connect (OnStreamConnected).
    if (tls_ != nullptr) stream_.EnableClientTls(tls_->get(), url_.host);
    timer_.Init(loop_, uv_timer_init, this);
    uv_update_time(loop_);
    uint64_t ms =
        static_cast<uint64_t>(std::ceil(absl::ToDoubleMilliseconds(timeout_)));
    uv_timer_start(
        timer_.get(),
        [](uv_timer_t* t) {
          auto* op = static_cast<ProbeOp*>(t->data);
          op->Finish(absl::DeadlineExceededError(absl::StrCat(
              "no answer within ", absl::FormatDuration(op->timeout_))));
        },
        ms, 0);
    sockaddr_storage addr{};
    std::string host = url_.host == "localhost" ? "127.0.0.1" : url_.host;
    if (uv_ip4_addr(host.c_str(), url_.port,
                    reinterpret_cast<sockaddr_in*>(&addr)) == 0 ||
        uv_ip6_addr(host.c_str(), url_.port,
                    reinterpret_cast<sockaddr_in6*>(&addr)) == 0) {
      Connect(reinterpret_cast<sockaddr*>(&addr));
      return;
    }
    resolve_.data = this;
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(loop_, &resolve_, OnResolved, host.c_str(),
                            std::to_string(url_.port).c_str(), &hints);
    if (rc != 0) {
      Finish(absl::UnavailableError(
          absl::StrCat("cannot resolve ", host, ": ", uv_strerror(rc))));
      return;
    }
    resolving_ = true;
  }

  // The Probe handle is gone: cancel if still running, free when possible.
  void Detach() {
    detached_ = true;
    if (!finished_) {
      finished_ = true;
      done_ = nullptr;
      CloseHandles();
    }
    MaybeDelete();
  }

 private:
  static void OnResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
    auto* op = static_cast<ProbeOp*>(req->data);
    op->resolving_ = false;
    if (!op->finished_) {
      if (status != 0 || res == nullptr) {
        op->Finish(absl::UnavailableError(absl::StrCat(
            "cannot resolve ", op->url_.host, ": ", uv_strerror(status))));
      } else {
        op->Connect(res->ai_addr);
      }
    }
    uv_freeaddrinfo(res);
    op->MaybeDelete();
  }

  void Connect(const sockaddr* addr) {
    int rc = stream_.Connect(addr);
    if (rc != 0) {
      Finish(absl::UnavailableError(
          absl::StrCat("connect failed: ", uv_strerror(rc))));
    }
  }

  void OnStreamConnected(int status) override {
    if (finished_) return;
    if (status == UV_EPROTO && stream_.tls()) {
      Finish(absl::UnavailableError(
          absl::StrCat("TLS handshake failed: ", stream_.TlsError())));
      return;
    }
    if (status != 0) {
      Finish(absl::UnavailableError(
          absl::StrCat("connect failed: ", uv_strerror(status))));
      return;
    }
    stream_.Write(absl::StrCat(method_, " ", url_.path,
                               " HTTP/1.1\r\nHost: ", url_.host, ":", url_.port,
                               "\r\nUser-Agent: modelplane-health\r\n"
                               "Accept: */*\r\nConnection: close\r\n",
                               method_ == "GET" ? "" : "Content-Length: 0\r\n",
                               "\r\n"));
    stream_.Flush();  // A failure comes back as OnStreamError.
    if (!finished_ && !stream_.StartReading()) {
      Finish(absl::UnavailableError("request failed: cannot read"));
    }
  }

  void OnStreamEof() override {
    Finish(absl::UnavailableError("connection closed before a response"));
  }

  void OnStreamError(int status) override {
    Finish(absl::UnavailableError(
        absl::StrCat("request failed: ", uv_strerror(status))));
  }

  void OnStreamWritten(size_t) override {}

  void OnStreamRead(absl::string_view data) override {
    if (finished_) return;
    response_.append(data.data(), data.size());
    size_t eol = response_.find("\r\n");
    if (eol == std::string::npos) {
      if (response_.size() > kMaxStatusLine) {
        Finish(absl::InternalError("malformed HTTP response"));
      }
      return;
    }
    absl::string_view line(response_.data(), eol);
    int code = 0;
    if (!absl::StartsWith(line, "HTTP/1.") || line.size() < 12 ||
        !absl::SimpleAtoi(line.substr(9, 3), &code)) {
      Finish(absl::InternalError(
          absl::StrCat("malformed HTTP status line: ", line.substr(0, 80))));
      return;
    }
    Finish(code);
  }

  void Finish(absl::StatusOr<int> result) {
    if (finished_) return;
    finished_ = true;
    auto done = std::move(done_);
    CloseHandles();
    if (done) done(std::move(result));  // May Detach(); we are not freed yet.
  }

  void CloseHandles() {
    if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_));
    timer_.Close();
    stream_.Close(
        [](void* arg) {
          auto* op = static_cast<ProbeOp*>(arg);
          op->stream_closed_ = true;
          op->MaybeDelete();
        },
        this);
  }

  void MaybeDelete() {
    if (detached_ && stream_closed_ && !resolving_) delete this;
  }

  uv_loop_t* loop_;
  std::string method_;
  ParsedUrl url_;
  absl::Duration timeout_;
  std::shared_ptr<const tls::ClientTlsContext> tls_;  // https:// only.
  std::function<void(absl::StatusOr<int>)> done_;
  uv::Handle<uv_timer_t> timer_;
  uv::TcpStream stream_;
  bool stream_closed_ = false;
  uv_getaddrinfo_t resolve_;
  bool resolving_ = false;
  bool finished_ = false;
  bool detached_ = false;
  std::string response_;
  char read_buf_[1024];
};

class ProbeHandle : public actor::Probe {
 public:
  explicit ProbeHandle(ProbeOp* op) : op_(op) {}
  ~ProbeHandle() override { op_->Detach(); }

 private:
  ProbeOp* op_;
};

// Answers at once (on the next loop turn would be nicer; the actor accepts a
// callback from inside Get only for errors it could not have avoided).
class FailedProbe : public actor::Probe {};

}  // namespace

absl::StatusOr<ParsedUrl> ParseHttpUrl(const std::string& url) {
  absl::string_view rest = url;
  ParsedUrl out;
  out.tls = absl::ConsumePrefix(&rest, "https://");
  if (out.tls) {
    out.port = 443;
  } else if (!absl::ConsumePrefix(&rest, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat("not an http URL: ", url));
  }
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  out.path =
      slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
  size_t colon = authority.rfind(':');
  if (absl::StartsWith(authority, "[")) {
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("bad IPv6 host: ", url));
    }
    out.host = std::string(authority.substr(1, close - 1));
    colon = authority.find(':', close);
  } else {
    out.host = std::string(authority.substr(0, colon));
  }
  if (colon != absl::string_view::npos &&
      (!absl::SimpleAtoi(authority.substr(colon + 1), &out.port) ||
       out.port <= 0 || out.port > 65535)) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in ", url));
  }
  if (out.host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no host in ", url));
  }
  return out;
}

std::unique_ptr<actor::Probe> HttpProber::Get(
    const std::string& url, const actor::ProbeTrust& trust,
    absl::Duration timeout, std::function<void(absl::StatusOr<int>)> done) {
  return Send("GET", url, trust, timeout, std::move(done));
}

std::unique_ptr<actor::Probe> HttpProber::Post(
    const std::string& url, const actor::ProbeTrust& trust,
    absl::Duration timeout, std::function<void(absl::StatusOr<int>)> done) {
  return Send("POST", url, trust, timeout, std::move(done));
}

std::unique_ptr<actor::Probe> HttpProber::Send(
    const char* method, const std::string& url, const actor::ProbeTrust& trust,
    absl::Duration timeout, std::function<void(absl::StatusOr<int>)> done) {
  absl::StatusOr<ParsedUrl> parsed = ParseHttpUrl(url);
  if (!parsed.ok()) {
    done(parsed.status());
    return std::make_unique<FailedProbe>();
  }
  std::shared_ptr<const tls::ClientTlsContext> tls;
  if (parsed->tls) {
    absl::StatusOr<const tls::ClientTlsContexts::Entry*> made =
        tls_contexts_.Get(&trust.ca_pem, trust.insecure);
    if (!made.ok()) {
      done(made.status());
      return std::make_unique<FailedProbe>();
    }
    tls = (*made)->context;
  }
  auto* op = new ProbeOp(loop_, method, *std::move(parsed), timeout,
                         std::move(tls), std::move(done));
  auto handle = std::make_unique<ProbeHandle>(op);
  op->Start();
  return handle;
}

}  // namespace modelplane::runtime
