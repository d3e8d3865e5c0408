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

struct WriteRequest {
  uv_write_t req;
  std::string data;
};

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

// One accepted socket. Owned by itself: deleted once both of its libuv
// handles have closed (libuv frees nothing; handle memory lives here).
class Connection {
 public:
  explicit Connection(HttpServer* server) : server_(server) {
    uv_tcp_init(server->loop_, &tcp_);
    uv_timer_init(server->loop_, &timer_);
    tcp_.data = this;
    timer_.data = this;
    http_parser_init(&parser_, HTTP_REQUEST);
    parser_.data = this;
    ++server_->stats_->open_connections;
    ++server_->stats_->connections_accepted;
  }

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }

  void Start() {
    uv_tcp_nodelay(&tcp_, 1);
    if (uv_read_start(stream(), OnAlloc, OnRead) != 0) Close();
  }

  // Idempotent. Requests read but not answered stop counting as in flight.
  void Close() {
    if (closing_) return;
    closing_ = true;
    server_->stats_->in_flight -=
        static_cast<int64_t>(pending_.size()) + (streaming_ ? 1 : 0);
    --server_->stats_->open_connections;
    server_->connections_.erase(this);
    uv_timer_stop(&timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), OnClose);
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), OnClose);
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

  static void OnAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
    // One buffer per server: libuv calls alloc then read back to back on the
    // loop thread, so no two reads ever share it.
    HttpServer* server = static_cast<Connection*>(handle->data)->server_;
    *buf = uv_buf_init(server->read_buffer_.get(), HttpServer::kReadBufferSize);
  }

  static void OnRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
    Connection* c = static_cast<Connection*>(s->data);
    if (nread < 0) {
      c->OnPeerGone();
      return;
    }
    if (nread == 0 || c->error_status_ != 0) return;
    size_t parsed = http_parser_execute(&c->parser_, Settings(), buf->base,
                                        static_cast<size_t>(nread));
    http_errno err = HTTP_PARSER_ERRNO(&c->parser_);
    if (err != HPE_OK || parsed != static_cast<size_t>(nread)) {
      if (c->error_status_ == 0) {
        c->error_status_ = err == HPE_HEADER_OVERFLOW ? 431 : 400;
      }
      c->error_text_ = http_errno_description(err);
      uv_read_stop(c->stream());
    } else if (c->pending_.size() > kMaxPipelined) {
      uv_read_stop(c->stream());  // Resumed once the queue drains.
      c->reading_paused_ = true;
    }
    c->MaybeStartNext();
  }

  // The peer closed or reset. During a stream that is a disconnect, the
  // signal llama-server uses to stop generating.
  void OnPeerGone() {
    if (streaming_) {
      ++server_->stats_->client_disconnects;
      Close();
    } else if (stream()->write_queue_size > 0) {
      close_when_written_ = true;  // Half-closed client: finish the answer.
    } else {
      Close();
    }
  }

  void Write(std::string data) {
    if (closing_) return;
    auto* w = new WriteRequest{uv_write_t{}, std::move(data)};
    uv_buf_t buf = uv_buf_init(w->data.data(), w->data.size());
    if (uv_write(&w->req, stream(), &buf, 1, OnWrite) != 0) {
      delete w;
      OnPeerGone();
    }
  }

  static void OnWrite(uv_write_t* req, int status) {
    std::unique_ptr<WriteRequest> w(reinterpret_cast<WriteRequest*>(req));
    Connection* c = static_cast<Connection*>(req->handle->data);
    if (c->closing_) return;
    if (status < 0) {
      c->OnPeerGone();
      if (!c->closing_) c->Close();
      return;
    }
    if (c->close_when_written_ && c->stream()->write_queue_size == 0) {
      c->Close();
    }
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
      if (uv_read_start(stream(), OnAlloc, OnRead) != 0) Close();
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
    if (stream()->write_queue_size == 0) Close();
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
    uv_timer_start(&timer_, OnTick, 0, 0);
  }

  static void OnTick(uv_timer_t* t) {
    static_cast<Connection*>(t->data)->EmitDueChunks();
  }

  void EmitDueChunks() {
    double elapsed_s = (uv_hrtime() - stream_start_ns_) / 1e9;
    int due = plan_.chunks_per_second > 0
                  ? static_cast<int>(elapsed_s * plan_.chunks_per_second) + 1
                  : next_chunk_ + kUnlimitedChunksPerTick;
    due = std::min(due, plan_.count);
    while (next_chunk_ < due && !closing_ &&
           stream()->write_queue_size < kMaxQueuedWriteBytes) {
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
    if (stream()->write_queue_size >= kMaxQueuedWriteBytes) {
      delay_ms = 1;
    } else if (plan_.chunks_per_second > 0) {
      double next_at_ms = next_chunk_ * 1000.0 / plan_.chunks_per_second;
      delay_ms = static_cast<uint64_t>(
          std::max(0.0, std::ceil(next_at_ms - elapsed_s * 1000.0)));
    }
    uv_timer_start(&timer_, OnTick, delay_ms, 0);
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

  static void OnClose(uv_handle_t* handle) {
    Connection* c = static_cast<Connection*>(handle->data);
    if (--c->open_handles_ == 0) delete c;
  }

  HttpServer* server_;
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  int open_handles_ = 2;
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
  listener_ = new uv_tcp_t;
  uv_tcp_init(loop_, listener_);
  listener_->data = this;
  rc = uv_tcp_bind(listener_, reinterpret_cast<sockaddr*>(&addr), 0);
  if (rc == 0) {
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(listener_), 4096,
                   OnConnection);
  }
  if (rc != 0) {
    Close();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", host, ":",
                                               port, ": ", uv_strerror(rc)));
  }
  int len = sizeof(addr);
  uv_tcp_getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
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
  if (listener_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(listener_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    listener_ = nullptr;
  }
  // Close() erases from the set, so iterate over a copy.
  std::vector<Connection*> open(connections_.begin(), connections_.end());
  for (Connection* c : open) c->Close();
}

}  // namespace modelplane::fake
