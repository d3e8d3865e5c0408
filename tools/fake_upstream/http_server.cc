#include "tools/fake_upstream/http_server.h"

#include <http_parser.h>

#include <algorithm>
#include <cmath>
#include <deque>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/uv/handle.h"
#include "common/uv/tcp_stream.h"

namespace modelplane::fake {
namespace {

// Streaming pauses while this much output waits in the socket's write queue,
// so a client that does not read cannot make the server buffer without bound.
constexpr size_t kMaxQueuedWriteBytes = 256 << 10;
// Chunks written per loop turn when a stream has no rate limit.
constexpr int kUnlimitedChunksPerTick = 64;
// Pipelined requests read ahead of the one being answered.
constexpr size_t kMaxPipelined = 64;

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

}  // namespace

const std::string* Request::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (key == name) return &value;
  }
  return nullptr;
}

Response Response::Json(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = std::move(body);
  return r;
}

// One accepted socket, a uv::TcpStream (common/uv/). Owned by itself:
// deleted once its stream has closed.
class Connection : private uv::TcpStream::Handler {
 public:
  explicit Connection(HttpServer* server) : server_(server) {
    // One read buffer per server: libuv calls alloc then read back to back
    // on the loop thread, so no two reads ever share it.
    stream_.Init(server->loop_, this, server->read_buffer_.get(),
                 HttpServer::kReadBufferSize);
    timer_.Init(server->loop_, uv_timer_init, this);
    http_parser_init(&parser_, HTTP_REQUEST);
    parser_.data = this;
    ++server_->stats_->open_connections;
    ++server_->stats_->connections_accepted;
  }

  uv_stream_t* stream() { return stream_.stream(); }

  void Start() {
    uv_tcp_nodelay(stream_.tcp(), 1);
    if (!stream_.StartReading()) Close();
  }

  // Idempotent. Requests read but not answered stop counting as in flight.
  void Close() {
    if (closing_) return;
    closing_ = true;
    server_->stats_->in_flight -=
        static_cast<int64_t>(pending_.size()) + (streaming_ ? 1 : 0);
    --server_->stats_->open_connections;
    server_->connections_.erase(this);
    timer_.Close();
    stream_.Close([](void* c) { delete static_cast<Connection*>(c); }, this);
  }

 private:
  struct Pending {
    Request request;
    bool keep_alive;
    bool http10;
  };

  static Connection* From(http_parser* p) {
    return static_cast<Connection*>(p->data);
  }

  static int OnMessageBegin(http_parser* p) {
    Connection* c = From(p);
    c->parsing_ = Request();
    c->header_field_.clear();
    c->in_header_value_ = false;
    return 0;
  }

  static int OnUrl(http_parser* p, const char* at, size_t len) {
    From(p)->url_.append(at, len);
    return 0;
  }

  static int OnHeaderField(http_parser* p, const char* at, size_t len) {
    Connection* c = From(p);
    if (c->in_header_value_) {
      c->header_field_.clear();
      c->in_header_value_ = false;
    }
    c->header_field_.append(at, len);
    return 0;
  }

  static int OnHeaderValue(http_parser* p, const char* at, size_t len) {
    Connection* c = From(p);
    if (!c->in_header_value_) {
      c->in_header_value_ = true;
      c->parsing_.headers.emplace_back(absl::AsciiStrToLower(c->header_field_),
                                       "");
    }
    c->parsing_.headers.back().second.append(at, len);
    return 0;
  }

  static int OnHeadersComplete(http_parser* p) {
    Connection* c = From(p);
    Request& r = c->parsing_;
    r.method = http_method_str(static_cast<http_method>(p->method));
    size_t q = c->url_.find('?');
    r.path = c->url_.substr(0, q);
    r.query = q == std::string::npos ? "" : c->url_.substr(q + 1);
    c->url_.clear();
    if ((p->flags & F_CONTENTLENGTH) &&
        p->content_length > HttpServer::kMaxBodyBytes) {
      c->error_status_ = 413;
      return -1;
    }
    const std::string* expect = r.Header("expect");
    if (expect != nullptr && absl::EqualsIgnoreCase(*expect, "100-continue")) {
      c->Write("HTTP/1.1 100 Continue\r\n\r\n");
    }
    return 0;
  }

  static int OnBody(http_parser* p, const char* at, size_t len) {
    Connection* c = From(p);
    if (c->parsing_.body.size() + len > HttpServer::kMaxBodyBytes) {
      c->error_status_ = 413;
      return -1;
    }
    c->parsing_.body.append(at, len);
    return 0;
  }

  static int OnMessageComplete(http_parser* p) {
    Connection* c = From(p);
    ServerStats* stats = c->server_->stats_;
    ++stats->total_requests;
    ++stats->requests_by_path[c->parsing_.path];
    ++stats->in_flight;
    c->pending_.push_back(Pending{std::move(c->parsing_),
                                  http_should_keep_alive(p) != 0,
                                  p->http_major == 1 && p->http_minor == 0});
    return 0;
  }

  static const http_parser_settings* Settings() {
    static const http_parser_settings settings = [] {
      http_parser_settings s;
      http_parser_settings_init(&s);
      s.on_message_begin = OnMessageBegin;
      s.on_url = OnUrl;
      s.on_header_field = OnHeaderField;
      s.on_header_value = OnHeaderValue;
      s.on_headers_complete = OnHeadersComplete;
      s.on_body = OnBody;
      s.on_message_complete = OnMessageComplete;
      return s;
    }();
    return &settings;
  }

  // uv::TcpStream::Handler.
  void OnStreamRead(absl::string_view data) override {
    if (error_status_ != 0) return;
    size_t parsed =
        http_parser_execute(&parser_, Settings(), data.data(), data.size());
    http_errno err = HTTP_PARSER_ERRNO(&parser_);
    if (err != HPE_OK || parsed != data.size()) {
      if (error_status_ == 0) {
        error_status_ = err == HPE_HEADER_OVERFLOW ? 431 : 400;
      }
      error_text_ = http_errno_description(err);
      stream_.StopReading();
    } else if (pending_.size() > kMaxPipelined) {
      stream_.StopReading();  // Resumed once the queue drains.
      reading_paused_ = true;
    }
    MaybeStartNext();
  }
  void OnStreamEof() override { OnPeerGone(); }
  // A read or write error: the peer is gone either way.
  void OnStreamError(int) override {
    OnPeerGone();
    if (!closing_) Close();
  }
  void OnStreamWritten(size_t queued) override {
    if (close_when_written_ && queued == 0) Close();
  }

  // The peer closed or reset. During a stream that is a disconnect, the
  // signal llama-server uses to stop generating.
  void OnPeerGone() {
    if (streaming_) {
      ++server_->stats_->client_disconnects;
      Close();
    } else if (stream_.Queued() > 0) {
      close_when_written_ = true;  // Half-closed client: finish the answer.
    } else {
      Close();
    }
  }

  // Out at once, as a model server writes each chunk as it has it (a
  // failure comes back as OnStreamError).
  void Write(std::string data) {
    if (closing_) return;
    stream_.Write(std::move(data));
    stream_.Flush();
  }

  // Answers queued requests in order until one streams or none is left.
  void MaybeStartNext() {
    while (!closing_ && !streaming_ && !close_when_written_ &&
           !pending_.empty()) {
      Pending next = std::move(pending_.front());
      pending_.pop_front();
      Respond(std::move(next));
    }
    if (closing_ || streaming_ || close_when_written_) return;
    if (error_status_ != 0) {
      ++server_->stats_->bad_requests;
      SendError(error_status_, error_text_);
      return;
    }
    if (reading_paused_ && pending_.empty()) {
      reading_paused_ = false;
      if (!stream_.StartReading()) Close();
    }
  }

  void SendError(int status, const std::string& message) {
    std::string body = absl::StrCat(R"({"error":{"code":)", status,
                                    R"(,"message":"bad request: )", message,
                                    R"(","type":"invalid_request_error"}})");
    Write(absl::StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status),
                       "\r\nContent-Type: application/json\r\nContent-Length: ",
                       body.size(), "\r\nConnection: close\r\n\r\n", body));
    CloseWhenWritten();
  }

  void CloseWhenWritten() {
    close_when_written_ = true;
    if (stream_.Queued() == 0) Close();
  }

  void Respond(Pending p) {
    Response r = server_->handler_(p.request);
    bool head = p.request.method == "HEAD";
    std::string out = absl::StrCat("HTTP/1.1 ", r.status, " ",
                                   ReasonPhrase(r.status), "\r\n");
    for (const auto& [name, value] : r.headers) {
      absl::StrAppend(&out, name, ": ", value, "\r\n");
    }
    keep_alive_ = p.keep_alive && !(r.stream && p.http10);
    absl::StrAppend(&out, "Connection: ", keep_alive_ ? "keep-alive" : "close",
                    "\r\n");
    if (!r.stream) {
      absl::StrAppend(&out, "Content-Length: ", r.body.size(), "\r\n\r\n");
      if (!head) out += r.body;
      Write(std::move(out));
      --server_->stats_->in_flight;
      if (!keep_alive_) CloseWhenWritten();
      return;
    }
    chunked_ = !p.http10;
    if (chunked_) out += "Transfer-Encoding: chunked\r\n";
    out += "\r\n";
    Write(std::move(out));
    streaming_ = true;
    plan_ = std::move(*r.stream);
    next_chunk_ = 0;
    stream_start_ns_ = uv_hrtime();
    uv_timer_start(timer_.get(), OnTick, 0, 0);
  }

  static void OnTick(uv_timer_t* t) {
    static_cast<Connection*>(t->data)->EmitDueChunks();
  }

  void EmitDueChunks() {
    double elapsed_s = (uv_hrtime() - stream_start_ns_) / 1e9;
    int due = plan_.chunks_per_second > 0
                  ? static_cast<int>(elapsed_s * plan_.chunks_per_second) + 1
                  : next_chunk_ + kUnlimitedChunksPerTick;
    int allowed = plan_.allowed ? plan_.allowed() : plan_.count;
    due = std::min({due, plan_.count, allowed});
    while (next_chunk_ < due && !closing_ &&
           stream_.Queued() < kMaxQueuedWriteBytes) {
      std::string chunk = plan_.make_chunk(next_chunk_++);
      if (chunk.empty()) continue;  // An empty chunk would end the body.
      Write(chunked_
                ? absl::StrCat(absl::Hex(chunk.size()), "\r\n", chunk, "\r\n")
                : std::move(chunk));
    }
    if (closing_) return;
    if (next_chunk_ >= plan_.count) {
      FinishStream();
      return;
    }
    uint64_t delay_ms = 0;
    if (stream_.Queued() >= kMaxQueuedWriteBytes || next_chunk_ >= allowed) {
      delay_ms = 1;  // The client is slow, or the stream is held.
    } else if (plan_.chunks_per_second > 0) {
      double next_at_ms = next_chunk_ * 1000.0 / plan_.chunks_per_second;
      delay_ms = static_cast<uint64_t>(
          std::max(0.0, std::ceil(next_at_ms - elapsed_s * 1000.0)));
    }
    uv_timer_start(timer_.get(), OnTick, delay_ms, 0);
  }

  void FinishStream() {
    if (chunked_) Write("0\r\n\r\n");
    streaming_ = false;
    plan_ = StreamPlan();
    --server_->stats_->in_flight;
    ++server_->stats_->streams_completed;
    if (!keep_alive_) {
      CloseWhenWritten();
      return;
    }
    MaybeStartNext();
  }

  HttpServer* server_;
  uv::TcpStream stream_;
  uv::Handle<uv_timer_t> timer_;
  http_parser parser_;
  std::string url_;
  Request parsing_;
  std::string header_field_;
  bool in_header_value_ = false;
  int error_status_ = 0;  // Set when the input cannot be parsed.
  std::string error_text_;
  std::deque<Pending> pending_;
  bool reading_paused_ = false;
  bool closing_ = false;
  bool close_when_written_ = false;
  bool keep_alive_ = true;
  // The response being streamed, if any.
  bool streaming_ = false;
  bool chunked_ = false;
  StreamPlan plan_;
  int next_chunk_ = 0;
  uint64_t stream_start_ns_ = 0;
};

HttpServer::HttpServer(uv_loop_t* loop, ServerStats* stats, Handler handler)
    : loop_(loop),
      stats_(stats),
      handler_(std::move(handler)),
      read_buffer_(new char[kReadBufferSize]) {}

HttpServer::~HttpServer() { Close(); }

absl::StatusOr<int> HttpServer::Listen(const std::string& host, int port) {
  sockaddr_storage addr{};
  int rc = host.find(':') == std::string::npos
               ? uv_ip4_addr(host.c_str(), port,
                             reinterpret_cast<sockaddr_in*>(&addr))
               : uv_ip6_addr(host.c_str(), port,
                             reinterpret_cast<sockaddr_in6*>(&addr));
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad listen address '", host, "': ", uv_strerror(rc)));
  }
  listener_.Init(loop_, uv_tcp_init, this);
  rc = uv_tcp_bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(listener_.stream(), 4096, OnConnection);
  if (rc != 0) {
    Close();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":",
                                               port, ": ", uv_strerror(rc)));
  }
  int len = sizeof(addr);
  uv_tcp_getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.ss_family == AF_INET6
                   ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                   : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
}

void HttpServer::OnConnection(uv_stream_t* listener, int status) {
  if (status < 0) return;  // EMFILE and the like: the peer retries.
  HttpServer* server = static_cast<HttpServer*>(listener->data);
  auto* c = new Connection(server);
  if (uv_accept(listener, c->stream()) != 0) {
    c->Close();
    return;
  }
  server->connections_.insert(c);
  c->Start();
}

void HttpServer::Close() {
  listener_.Close();
  // Close() erases from the set, so iterate over a copy.
  std::vector<Connection*> open(connections_.begin(), connections_.end());
  for (Connection* c : open) c->Close();
}

}  // namespace modelplane::fake
