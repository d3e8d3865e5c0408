// HTTP/1.1 codecs for modelproxy, bytes in and bytes out (no sockets), on
// http-parser (after a quick read of plain heads, plain_head.h): a request
// parser for the client side of the proxy, a
// response parser for the upstream side, and the encoders for what the proxy
// writes. The same codecs on both ends let tests run them back to back.
//
//   RequestParser p(&visitor, Limits{});
//   size_t used = p.Feed(bytes);   // Visitor gets head, body pieces, end.
//   // After a request ends the parser pauses (responses go out in order);
//   // Resume() and Feed the unused rest for the next pipelined request.
//
// Single-threaded: a parser belongs to its connection's loop.
#ifndef MODELPLANE_PROXY_HTTP1_CODEC_H_
#define MODELPLANE_PROXY_HTTP1_CODEC_H_

#include <http_parser.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/string_view.h"
#include "proxy/http1/chunked.h"

namespace modelplane::proxy::http1 {

using Headers = std::vector<std::pair<std::string, std::string>>;

// ASCII case-insensitive equality, inline: header names and tokens are
// short, and absl::EqualsIgnoreCase's out-of-line byte loop cost more than
// the rest of looking a header up.
inline bool EqualsNoCase(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (absl::ascii_tolower(static_cast<unsigned char>(a[i])) !=
        absl::ascii_tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// The first header named `name` (case-insensitive), or nullptr.
const std::string* FindHeader(const Headers& headers, absl::string_view name);
// The first header named `name` lists `token` (comma-separated, any case),
// e.g. Connection: keep-alive, Upgrade.
bool HasToken(const Headers& headers, absl::string_view name,
              absl::string_view token);

struct RequestHead {
  std::string method;
  // As sent: path and query. An absolute-form target
  // (http://host/v1/chat/completions) arrives as its path and query.
  std::string target;
  int version_minor = 1;
  Headers headers;  // Names as sent.
  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool keep_alive = true;
  bool expect_continue = false;
  bool upgrade = false;  // An Upgrade header (h2c) was sent.
};

struct ResponseHead {
  int status = 0;
  std::string reason;
  Headers headers;
  std::optional<uint64_t> content_length;
  bool chunked = false;
  bool keep_alive = true;
};

struct Limits {
  size_t max_header_bytes = 64 << 10;  // Request line plus headers: 431.
  uint64_t max_body_bytes = 64 << 20;  // 413.
  // Plain heads read by plain_head.h before http-parser sees them. Off only
  // in the test comparing the two.
  bool plain_heads = true;
};

class RequestVisitor {
 public:
  virtual ~RequestVisitor() = default;
  virtual void OnRequestHead(RequestHead head) = 0;
  // Body bytes, de-chunked.
  virtual void OnRequestBody(absl::string_view data) = 0;
  virtual void OnRequestEnd() = 0;
  // The input is not HTTP we accept; `status` is what to answer (400, 413,
  // 431, 505). Nothing more is parsed on this connection.
  virtual void OnRequestError(int status, const std::string& message) = 0;
};

class ResponseVisitor {
 public:
  virtual ~ResponseVisitor() = default;
  virtual void OnResponseHead(ResponseHead head) = 0;
  virtual void OnResponseBody(absl::string_view data) = 0;
  virtual void OnResponseEnd() = 0;
  virtual void OnResponseError(const std::string& message) = 0;
};

// The header fields http-parser (lenient, as Debian builds it) passes on
// that a proxy must refuse rather than forward (RFC 9112, 5.1 and 5.2):
// both parsers run them through this.
class FieldGuard {
 public:
  // http-parser is about to run on `data`.
  void Feeding(absl::string_view data) {
    begin_ = data.data();
    end_ = data.data() + data.size();
  }
  // A piece of a header value (`continued`: not its first piece). False for
  // an obs-fold: http-parser drops the fold's CRLF, so the piece does not
  // start where the last one ended.
  bool ValuePiece(bool continued, const char* at, size_t len);
  // Trims each value's trailing whitespace (no part of it, RFC 9110 5.5);
  // then the first field that is no valid HTTP (a name that is no token, a
  // control character in the value), its name escaped, or nullopt.
  static std::optional<std::string> FirstInvalid(Headers* headers);

 private:
  const char* begin_ = nullptr;
  const char* end_ = nullptr;
  const char* value_end_ = nullptr;
  bool value_ended_feed_ = false;
};

class RequestParser {
 public:
  RequestParser(RequestVisitor* visitor, Limits limits);
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Parses as much of `data` as it can; returns the bytes used. Stops after
  // a request ends (paused) or at an error.
  size_t Feed(absl::string_view data);
  // Continues after a request ended.
  void Resume();
  bool paused() const { return paused_; }
  bool failed() const { return failed_; }
  // Bytes of the current request's head read so far (for a header-read
  // timeout: a slow sender is still in its head).
  bool in_head() const { return in_head_; }

 private:
  static int OnMessageBegin(http_parser* p);
  static int OnUrl(http_parser* p, const char* at, size_t len);
  static int OnHeaderField(http_parser* p, const char* at, size_t len);
  static int OnHeaderValue(http_parser* p, const char* at, size_t len);
  static int OnHeadersComplete(http_parser* p);
  static int OnBody(http_parser* p, const char* at, size_t len);
  static int OnMessageComplete(http_parser* p);
  static const http_parser_settings* Settings();
  void Fail(int status, std::string message);
  // The head's checks beyond http-parser's (RFC 9112): the version, Host,
  // Transfer-Encoding in HTTP/1.0; sets error_status_ and returns false.
  bool CheckHead(const http_parser* p);
  // A chunked body, read by our own decoder (after http-parser read the
  // head); returns the bytes used.
  size_t FeedChunked(absl::string_view data);

  RequestVisitor* visitor_;
  Limits limits_;
  http_parser parser_;
  RequestHead head_;
  bool in_value_ = false;
  FieldGuard fields_;
  bool in_head_ = false;
  size_t head_bytes_ = 0;
  uint64_t body_bytes_ = 0;
  bool paused_ = false;
  bool failed_ = false;
  // http-parser is between messages (and will take another).
  bool at_start_ = true;
  // In the body of a message whose plain head was read without http-parser;
  // the body's bytes left.
  bool plain_ = false;
  uint64_t plain_left_ = 0;
  // In a chunked body (http-parser paused after its head).
  std::optional<ChunkedDecoder> chunked_;
  bool chunked_keep_alive_ = true;
  // The head's Transfer-Encoding is chunked (CheckHead decides it).
  bool chunked_head_ = false;
  int error_status_ = 0;
  std::string error_message_;
};

class ResponseParser {
 public:
  explicit ResponseParser(ResponseVisitor* visitor, bool plain_heads = true);
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  // `head_request`: the response to a HEAD has no body. `upgrade`: the
  // request asked to switch protocols (a WebSocket handshake); a 101 is then
  // delivered as the head and ends the parse (upgraded()); unasked, a 101
  // is an error.
  void ExpectResponse(bool head_request, bool upgrade = false) {
    head_request_ = head_request;
    upgrade_ = upgrade;
  }
  size_t Feed(absl::string_view data);
  // The upstream closed the connection: ends a body delimited by the close,
  // or reports a truncated response.
  void FeedEof();
  bool failed() const { return failed_; }
  // A 101 was read: what follows its head (in the Feed that read it, and
  // after) is the new protocol's, not HTTP.
  bool upgraded() const { return upgraded_; }

 private:
  static int OnHeaderField(http_parser* p, const char* at, size_t len);
  static int OnHeaderValue(http_parser* p, const char* at, size_t len);
  static int OnStatus(http_parser* p, const char* at, size_t len);
  static int OnHeadersComplete(http_parser* p);
  static int OnBody(http_parser* p, const char* at, size_t len);
  static int OnMessageComplete(http_parser* p);
  static const http_parser_settings* Settings();

  ResponseVisitor* visitor_;
  http_parser parser_;
  ResponseHead head_;
  bool in_value_ = false;
  FieldGuard fields_;
  bool head_request_ = false;
  bool upgrade_ = false;
  bool upgraded_ = false;
  std::string error_;  // Set by a callback that failed the parse.
  bool in_message_ = false;
  bool failed_ = false;
  bool plain_heads_;
  // As RequestParser's; once http-parser has been fed, it reads the rest.
  bool plain_ = false;
  bool slow_ = false;
  uint64_t plain_left_ = 0;
};

// How a message body is framed on the wire.
// A response with this status never has a body (RFC 9110: 1xx, 204, 304).
inline bool IsBodilessStatus(int status) {
  return status < 200 || status == 204 || status == 304;
}

// kNoBody: no framing header and no body (a HEAD response whose length is
// unknown). Responses that never have a body (1xx, 204, 304) get no framing
// header whatever is asked.
enum class Framing { kContentLength, kChunked, kUntilClose, kNoBody };

// "HTTP/1.1 200 OK\r\n" + headers + the framing header + "\r\n". Hop-by-hop
// headers in `headers` (Connection, Keep-Alive, Transfer-Encoding,
// Content-Length, Upgrade...) are dropped: the codec writes its own.
void AppendResponseHead(std::string* out, int status, absl::string_view reason,
                        const Headers& headers, Framing framing,
                        uint64_t content_length, bool keep_alive);
std::string EncodeResponseHead(int status, absl::string_view reason,
                               const Headers& headers, Framing framing,
                               uint64_t content_length, bool keep_alive);
// The same, appended to `out`: `headers` less those named in `skip` (any
// case) and hop-by-hop ones, then `extra`, the framing header and
// "Connection: keep-alive" — or, with `upgrade` (e.g. "websocket"),
// "Connection: Upgrade" and "Upgrade: <upgrade>".
void AppendRequestHead(
    std::string* out, absl::string_view method, absl::string_view target,
    const Headers& headers, std::initializer_list<absl::string_view> skip,
    std::initializer_list<std::pair<absl::string_view, absl::string_view>>
        extra,
    Framing framing, uint64_t content_length, absl::string_view upgrade = {});
// "HTTP/1.1 101 Switching Protocols", then `headers` as they are (Upgrade
// and Connection included: they are the switch), then the blank line.
void AppendSwitchingHead(std::string* out, const Headers& headers);
std::string EncodeRequestHead(absl::string_view method,
                              absl::string_view target, const Headers& headers,
                              Framing framing, uint64_t content_length);
// One chunk of a chunked body (empty data gives nothing: the end is
// EncodeLastChunk()).
void AppendChunk(std::string* out, absl::string_view data);
std::string EncodeChunk(absl::string_view data);
inline const char* EncodeLastChunk() { return "0\r\n\r\n"; }
const char* ReasonPhrase(int status);
bool IsHopByHop(absl::string_view header);
// A header field a proxy may pass on (RFC 9110, 5.1 and 5.5): the name a
// token (no whitespace, no separators), the value without control
// characters but HTAB (a CR or LF left by an obs-fold included). Bytes over
// 0x7f (obs-text) are allowed in values.
bool IsFieldName(absl::string_view name);
bool IsFieldValue(absl::string_view value);

}  // namespace modelplane::proxy::http1

#endif  // MODELPLANE_PROXY_HTTP1_CODEC_H_
