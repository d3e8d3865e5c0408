// A small HTTP/1.1 server on one libuv loop, used by fake_upstream to stand in
// for llama-server in tests, the demo and the benchmarks.
//
// It handles keep-alive, pipelined requests (answered in order), chunked
// request bodies, `Expect: 100-continue`, and streamed responses whose chunks
// are produced on a timer at a fixed rate. A client that goes away while its
// response is streaming is noticed at once (the socket is read while writing)
// and counted in `ServerStats::client_disconnects`.
//
// Usage:
//   uv_loop_t* loop = uv_default_loop();
//   ServerStats stats;
//   HttpServer server(loop, &stats, [](const Request& r) {
//     return Response::Json(200, R"({"ok":true})");
//   });
//   absl::StatusOr<int> port = server.Listen("127.0.0.1", 0);
//   uv_run(loop, UV_RUN_DEFAULT);
//
// Everything here runs on the loop's thread; nothing is thread-safe.
#ifndef MODELPLANE_TOOLS_FAKE_UPSTREAM_HTTP_SERVER_H_
#define MODELPLANE_TOOLS_FAKE_UPSTREAM_HTTP_SERVER_H_

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/uv/handle.h"

namespace modelplane::fake {

// One parsed request. Header names are lower-cased.
struct Request {
  std::string method;
  std::string path;   // Without the query string.
  std::string query;  // Without the leading '?'.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  // The first header named `name` (lower case), or nullptr.
  const std::string* Header(std::string_view name) const;
};

// A response body produced one chunk at a time: `count` chunks, chunk i made
// by `make_chunk(i)`, at `chunks_per_second` (0 = as fast as the socket
// takes them).
struct StreamPlan {
  int count = 0;
  double chunks_per_second = 0;
  std::function<std::string(int index)> make_chunk;
  // How many chunks may have gone so far (asked again every millisecond
  // while it holds the stream back); null: all. For tests that need a
  // stream held at a known point (called on the server's loop thread).
  std::function<int()> allowed;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;                  // Ignored when `stream` is set.
  std::optional<StreamPlan> stream;  // Sent with chunked transfer encoding.

  static Response Json(int status, std::string body);
};

// Counters shared by the server and the handlers; served on GET /stats.
struct ServerStats {
  uint64_t total_requests = 0;
  std::map<std::string, uint64_t> requests_by_path;
  uint64_t client_disconnects = 0;  // Clients gone while a stream was sent.
  uint64_t streams_completed = 0;
  uint64_t bad_requests = 0;  // Requests that could not be parsed.
  int64_t in_flight = 0;      // Requests read and not yet fully answered.
  int64_t open_connections = 0;
  uint64_t connections_accepted = 0;  // Ever: a proxy's pool reuse shows here.
  std::string last_model;   // The `model` field of the last request with one.
  int64_t ready_at_us = 0;  // Wall clock (Unix µs) when /health turned 200.
};

using Handler = std::function<Response(const Request&)>;

class HttpServer {
 public:
  // `loop` and `stats` must outlive the server.
  HttpServer(uv_loop_t* loop, ServerStats* stats, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens; returns the bound port (useful when `port` is 0).
  absl::StatusOr<int> Listen(const std::string& host, int port);

  // Stops accepting and closes every connection; the loop can then finish.
  void Close();

  // Largest request body accepted; larger ones get 413.
  static constexpr size_t kMaxBodyBytes = 64 << 20;
  static constexpr size_t kReadBufferSize = 64 << 10;

 private:
  friend class Connection;
  static void OnConnection(uv_stream_t* listener, int status);

  uv_loop_t* loop_;
  ServerStats* stats_;
  Handler handler_;
  uv::Handle<uv_tcp_t> listener_;
  std::unique_ptr<char[]> read_buffer_;  // Shared by every connection.
  absl::flat_hash_set<class Connection*> connections_;
};

}  // namespace modelplane::fake

#endif  // MODELPLANE_TOOLS_FAKE_UPSTREAM_HTTP_SERVER_H_
