#include "proxy/http1/codec.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proxy/http1/plain_head.h"

namespace modelplane::proxy::http1 {
namespace {

template <typename T>
T* From(http_parser* p) {
  return static_cast<T*>(p->data);
}

void AppendHeaderPart(Headers* headers, bool* in_value, bool value,
                      const char* at, size_t len) {
  if (!value) {
    if (*in_value || headers->empty()) headers->emplace_back();
    *in_value = false;
    headers->back().first.append(at, len);
  } else {
    *in_value = true;
    headers->back().second.append(at, len);
  }
}

}  // namespace

bool FieldGuard::ValuePiece(bool continued, const char* at, size_t len) {
  if (continued && at != value_end_ && !(value_ended_feed_ && at == begin_)) {
    return false;
  }
  value_end_ = at + len;
  value_ended_feed_ = value_end_ == end_;
  return true;
}

std::optional<std::string> FieldGuard::FirstInvalid(Headers* headers) {
  for (auto& [name, value] : *headers) {
    // http-parser drops only the leading spaces and tabs.
    size_t n = value.size();
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t')) --n;
    value.resize(n);
    if (!IsFieldName(name) || !IsFieldValue(value)) {
      return absl::CHexEscape(absl::string_view(name).substr(0, 64));
    }
  }
  return std::nullopt;
}

const std::string* FindHeader(const Headers& headers, absl::string_view name) {
  for (const auto& [k, v] : headers) {
    if (EqualsNoCase(k, name)) return &v;
  }
  return nullptr;
}

bool HasToken(const Headers& headers, absl::string_view name,
              absl::string_view token) {
  const std::string* v = FindHeader(headers, name);
  if (v == nullptr) return false;
  for (absl::string_view t : absl::StrSplit(*v, ',')) {
    if (EqualsNoCase(absl::StripAsciiWhitespace(t), token)) return true;
  }
  return false;
}

bool IsHopByHop(absl::string_view h) {
  // By length first: most names (content-type, host, ...) match none, and
  // it is asked for every header of every request and response.
  switch (h.size()) {
    case 2:
      return EqualsNoCase(h, "te");
    case 7:
      return EqualsNoCase(h, "trailer") || EqualsNoCase(h, "upgrade");
    case 10:
      return EqualsNoCase(h, "connection") || EqualsNoCase(h, "keep-alive");
    case 14:
      return EqualsNoCase(h, "content-length") ||
             EqualsNoCase(h, "http2-settings");
    case 16:
      return EqualsNoCase(h, "proxy-connection");
    case 17:
      return EqualsNoCase(h, "transfer-encoding");
    // Credentials for this proxy, and its challenge (RFC 9110 11.7): never
    // passed on (modelproxy takes none: its keys are Authorization's).
    case 18:
      return EqualsNoCase(h, "proxy-authenticate");
    case 19:
      return EqualsNoCase(h, "proxy-authorization");
    default:
      return false;
  }
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 304:
      return "Not Modified";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 501:
      return "Not Implemented";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

// --- RequestParser ---

RequestParser::RequestParser(RequestVisitor* visitor, Limits limits)
    : visitor_(visitor), limits_(limits) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
}

const http_parser_settings* RequestParser::Settings() {
  static const http_parser_settings s = [] {
    http_parser_settings x;
    http_parser_settings_init(&x);
    x.on_message_begin = OnMessageBegin;
    x.on_url = OnUrl;
    x.on_header_field = OnHeaderField;
    x.on_header_value = OnHeaderValue;
    x.on_headers_complete = OnHeadersComplete;
    x.on_body = OnBody;
    x.on_message_complete = OnMessageComplete;
    return x;
  }();
  return &s;
}

int RequestParser::OnMessageBegin(http_parser* p) {
  auto* self = From<RequestParser>(p);
  self->head_ = RequestHead();
  self->head_.headers.reserve(8);  // One allocation for a usual head.
  self->in_value_ = false;
  self->at_start_ = false;
  self->in_head_ = true;
  self->head_bytes_ = 0;
  self->body_bytes_ = 0;
  return 0;
}

int RequestParser::OnUrl(http_parser* p, const char* at, size_t len) {
  auto* self = From<RequestParser>(p);
  self->head_.target.append(at, len);
  self->head_bytes_ += len;
  return self->head_bytes_ > self->limits_.max_header_bytes ? -1 : 0;
}

int RequestParser::OnHeaderField(http_parser* p, const char* at, size_t len) {
  auto* self = From<RequestParser>(p);
  AppendHeaderPart(&self->head_.headers, &self->in_value_, false, at, len);
  self->head_bytes_ += len;
  return self->head_bytes_ > self->limits_.max_header_bytes ? -1 : 0;
}

int RequestParser::OnHeaderValue(http_parser* p, const char* at, size_t len) {
  auto* self = From<RequestParser>(p);
  if (!self->fields_.ValuePiece(self->in_value_, at, len)) {
    // RFC 9112, 5.2: refuse it or unfold it (a proxy that forwards it
    // unfolded and an upstream that reads it otherwise disagree on the head).
    self->error_status_ = 400;
    self->error_message_ =
        "malformed HTTP request: a header line folded onto the one before";
    return -1;
  }
  AppendHeaderPart(&self->head_.headers, &self->in_value_, true, at, len);
  self->head_bytes_ += len;
  return self->head_bytes_ > self->limits_.max_header_bytes ? -1 : 0;
}

namespace {

// An absolute-form target (RFC 9112 3.2.2: "http://host/path?q"), which a
// server must accept: its path and query ("/" when it has no path). Other
// forms as they are.
std::string OriginForm(std::string target) {
  absl::string_view t = target;
  size_t scheme = t.find("://");
  if (scheme == absl::string_view::npos || t.empty() || t[0] == '/' ||
      !(absl::EqualsIgnoreCase(t.substr(0, scheme), "http") ||
        absl::EqualsIgnoreCase(t.substr(0, scheme), "https"))) {
    return target;
  }
  size_t path = t.find_first_of("/?", scheme + 3);
  if (path == absl::string_view::npos) return "/";
  if (t[path] == '?') return absl::StrCat("/", t.substr(path));
  return std::string(t.substr(path));
}

}  // namespace

bool RequestParser::CheckHead(const http_parser* p) {
  if (p->http_major != 1 || p->http_minor > 1) {
    // HTTP/2 comes with its connection preface, not a request line.
    error_status_ = 505;
    error_message_ = absl::StrCat("HTTP/", p->http_major, ".", p->http_minor,
                                  " is not supported: HTTP/1.1 and HTTP/1.0 "
                                  "(and HTTP/2 with its preface) are");
    return false;
  }
  int hosts = 0;
  bool te = false;
  // Every Transfer-Encoding's codings (RFC 9110 5.6.1: empty list elements
  // are ignored, and OWS is spaces and tabs).
  std::vector<absl::string_view> codings;
  for (const auto& [name, value] : head_.headers) {
    if (EqualsNoCase(name, "host")) {
      ++hosts;
      // One authority: "a, b" (two Host fields joined) or "a b" is not.
      if (value.find_first_of(", \t") != std::string::npos) {
        error_status_ = 400;
        error_message_ =
            "malformed HTTP request: a Host header naming more "
            "than one host";
        return false;
      }
    } else if (EqualsNoCase(name, "transfer-encoding")) {
      te = true;
      for (absl::string_view t : absl::StrSplit(value, ',')) {
        while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) {
          t.remove_prefix(1);
        }
        while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) {
          t.remove_suffix(1);
        }
        if (!t.empty()) codings.push_back(t);
      }
    }
  }
  // RFC 9112 3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0.
  if (hosts > 1 || (hosts == 0 && p->http_minor == 1)) {
    error_status_ = 400;
    error_message_ =
        hosts > 1 ? "malformed HTTP request: more than one Host header"
                  : "malformed HTTP request: an HTTP/1.1 request needs a "
                    "Host header";
    return false;
  }
  if (te && codings.empty()) {
    error_status_ = 400;
    error_message_ = "malformed HTTP request: an empty Transfer-Encoding";
    return false;
  }
  // RFC 9112 6.1: HTTP/1.0 has no transfer coding; the framing is faulty.
  if (p->http_minor == 0 && !codings.empty()) {
    error_status_ = 400;
    error_message_ =
        "malformed HTTP request: Transfer-Encoding in an HTTP/1.0 request";
    return false;
  }
  // Chunked, once, and nothing else: a coding the proxy would not undo
  // (gzip, chunked) is 501; chunked twice, or an identity beside it, is
  // framing another reader could take otherwise.
  if (!codings.empty() &&
      !(codings.size() == 1 && EqualsNoCase(codings[0], "chunked"))) {
    bool known =
        std::all_of(codings.begin(), codings.end(), [](absl::string_view t) {
          return EqualsNoCase(t, "chunked") || EqualsNoCase(t, "identity");
        });
    error_status_ = known ? 400 : 501;
    error_message_ =
        known ? "malformed HTTP request: a Transfer-Encoding other than one "
                "'chunked'"
              : "a request body in a transfer coding other than chunked is "
                "not supported";
    return false;
  }
  // Decided here, not by http-parser, which takes "chunked<TAB>" or
  // "chunked," for some other coding: the body is ours to read anyway.
  chunked_head_ = !codings.empty();
  return true;
}

int RequestParser::OnHeadersComplete(http_parser* p) {
  auto* self = From<RequestParser>(p);
  RequestHead& h = self->head_;
  // "Transfer-Encoding : chunked" is no framing to http-parser but may be
  // to the upstream: refused, as every field that is no valid HTTP.
  if (std::optional<std::string> bad = FieldGuard::FirstInvalid(&h.headers)) {
    self->error_status_ = 400;
    self->error_message_ = absl::StrCat(
        "malformed HTTP request: invalid header field \"", *bad, "\"");
    return -1;
  }
  if (!self->CheckHead(p)) return -1;
  h.target = OriginForm(std::move(h.target));
  h.method = http_method_str(static_cast<http_method>(p->method));
  h.version_minor = p->http_minor;
  if (p->flags & F_CONTENTLENGTH) h.content_length = p->content_length;
  h.chunked = self->chunked_head_;
  h.keep_alive = http_should_keep_alive(p) != 0;
  h.upgrade = FindHeader(h.headers, "upgrade") != nullptr;
  const std::string* expect = FindHeader(h.headers, "expect");
  h.expect_continue =
      expect != nullptr && absl::EqualsIgnoreCase(*expect, "100-continue");
  if (h.content_length && *h.content_length > self->limits_.max_body_bytes) {
    self->error_status_ = 413;
    self->error_message_ = "the request body is larger than allowed";
    return -1;
  }
  self->in_head_ = false;
  bool chunked = h.chunked;
  if (chunked) {
    // Our own decoder reads the body (chunked.h): http-parser is told there
    // is none, ends the message at once (OnMessageComplete pauses it), and
    // reads the next request once this one is answered.
    self->chunked_.emplace(self->limits_.max_body_bytes,
                           self->limits_.max_header_bytes);
    self->chunked_keep_alive_ = h.keep_alive;
  }
  self->visitor_->OnRequestHead(std::move(h));
  // Upgrade requests still have their body parsed like any other here: the
  // caller decides (h2c) before feeding more.
  return chunked ? 1 : 0;
}

int RequestParser::OnBody(http_parser* p, const char* at, size_t len) {
  auto* self = From<RequestParser>(p);
  self->body_bytes_ += len;
  if (self->body_bytes_ > self->limits_.max_body_bytes) {
    self->error_status_ = 413;
    self->error_message_ = "the request body is larger than allowed";
    return -1;
  }
  self->visitor_->OnRequestBody(absl::string_view(at, len));
  return 0;
}

int RequestParser::OnMessageComplete(http_parser* p) {
  auto* self = From<RequestParser>(p);
  if (self->chunked_) {
    // The head of a chunked request: its body is ours to read (Feed), with
    // http-parser paused until the request is answered.
    http_parser_pause(p, 1);
    return 0;
  }
  // Paused before the visitor hears of the end, so that a visitor answering
  // at once (and calling Resume() from here) leaves the parser running.
  self->paused_ = true;
  http_parser_pause(p, 1);
  // After a message that ends the connection http-parser refuses more.
  self->at_start_ = http_should_keep_alive(p) != 0;
  self->visitor_->OnRequestEnd();
  return 0;
}

size_t RequestParser::Feed(absl::string_view data) {
  size_t used = 0;
  // Plain messages one after another in a loop, never by recursion: a
  // visitor that answers at once resumes from OnRequestEnd, and one buffer
  // can hold a pipeline of a million requests.
  while (!failed_ && !paused_) {
    if (!plain_) {
      if (used == data.size() || !at_start_ || !limits_.plain_heads) break;
      head_ = RequestHead();
      head_.headers.reserve(8);
      size_t n = ReadPlainRequestHead(data.substr(used),
                                      limits_.max_header_bytes, &head_);
      // A body over the limit is left to http-parser's path (413).
      if (n == 0 || head_.content_length.value_or(0) > limits_.max_body_bytes) {
        break;
      }
      used += n;
      plain_ = true;
      plain_left_ = head_.content_length.value_or(0);
      in_head_ = false;
      body_bytes_ = 0;
      visitor_->OnRequestHead(std::move(head_));
    }
    uint64_t n = std::min<uint64_t>(plain_left_, data.size() - used);
    if (n > 0) {
      plain_left_ -= n;
      body_bytes_ += n;
      visitor_->OnRequestBody(data.substr(used, n));
      used += n;
    }
    if (plain_left_ > 0) return used;  // The rest of the body is to come.
    plain_ = false;
    paused_ = true;  // As OnMessageComplete; a visitor may resume at once.
    visitor_->OnRequestEnd();
  }
  if (failed_ || paused_ || plain_ || used == data.size()) return used;
  if (chunked_) return used + FeedChunked(data.substr(used));
  // http-parser reads what follows (a zero-length execute would mean EOF).
  absl::string_view rest = data.substr(used);
  fields_.Feeding(rest);
  used += http_parser_execute(&parser_, Settings(), rest.data(), rest.size());
  http_errno err = HTTP_PARSER_ERRNO(&parser_);
  if (err == HPE_PAUSED) {
    // A chunked request's head: its body may follow in the same bytes.
    if (chunked_ && !failed_) used += FeedChunked(data.substr(used));
    return used;
  }
  if (err != HPE_OK) {
    if (error_status_ == 0) {
      bool too_big = err == HPE_HEADER_OVERFLOW ||
                     (in_head_ && head_bytes_ > limits_.max_header_bytes);
      error_status_ = too_big ? 431 : 400;
      error_message_ = too_big ? "the request head is larger than allowed"
                               : absl::StrCat("malformed HTTP request: ",
                                              http_errno_description(err));
    }
    Fail(error_status_, error_message_);
  } else if (in_head_ && head_bytes_ > limits_.max_header_bytes) {
    Fail(431, "the request head is larger than allowed");
  }
  return used;
}

size_t RequestParser::FeedChunked(absl::string_view data) {
  size_t used = chunked_->Feed(data, [this](absl::string_view piece) {
    body_bytes_ += piece.size();
    visitor_->OnRequestBody(piece);
  });
  if (chunked_->failed()) {
    int status = chunked_->error_status();
    std::string message = chunked_->error_message();
    chunked_.reset();
    Fail(status, message);
    return used;
  }
  if (chunked_->done()) {
    chunked_.reset();
    // As OnMessageComplete: paused (http-parser still is) until resumed;
    // after a request that ends the connection nothing more is read.
    paused_ = true;
    at_start_ = chunked_keep_alive_;
    visitor_->OnRequestEnd();
  }
  return used;
}

void RequestParser::Resume() {
  if (!paused_) return;
  paused_ = false;
  http_parser_pause(&parser_, 0);
}

void RequestParser::Fail(int status, std::string message) {
  if (failed_) return;
  failed_ = true;
  visitor_->OnRequestError(status, message);
}

// --- ResponseParser ---

ResponseParser::ResponseParser(ResponseVisitor* visitor, bool plain_heads)
    : visitor_(visitor), plain_heads_(plain_heads) {
  http_parser_init(&parser_, HTTP_RESPONSE);
  parser_.data = this;
}

const http_parser_settings* ResponseParser::Settings() {
  static const http_parser_settings s = [] {
    http_parser_settings x;
    http_parser_settings_init(&x);
    x.on_message_begin = [](http_parser* p) {
      auto* self = From<ResponseParser>(p);
      self->head_ = ResponseHead();
      self->head_.headers.reserve(8);
      self->in_value_ = false;
      self->in_message_ = true;
      return 0;
    };
    x.on_status = OnStatus;
    x.on_header_field = OnHeaderField;
    x.on_header_value = OnHeaderValue;
    x.on_headers_complete = OnHeadersComplete;
    x.on_body = OnBody;
    x.on_message_complete = OnMessageComplete;
    return x;
  }();
  return &s;
}

int ResponseParser::OnStatus(http_parser* p, const char* at, size_t len) {
  From<ResponseParser>(p)->head_.reason.append(at, len);
  return 0;
}

int ResponseParser::OnHeaderField(http_parser* p, const char* at, size_t len) {
  auto* self = From<ResponseParser>(p);
  AppendHeaderPart(&self->head_.headers, &self->in_value_, false, at, len);
  return 0;
}

int ResponseParser::OnHeaderValue(http_parser* p, const char* at, size_t len) {
  auto* self = From<ResponseParser>(p);
  if (!self->fields_.ValuePiece(self->in_value_, at, len)) {
    // RFC 9112, 5.2: a proxy answers 502 or unfolds it.
    self->error_ =
        "malformed upstream response: a header line folded onto the one "
        "before";
    return -1;
  }
  AppendHeaderPart(&self->head_.headers, &self->in_value_, true, at, len);
  return 0;
}

int ResponseParser::OnHeadersComplete(http_parser* p) {
  auto* self = From<ResponseParser>(p);
  ResponseHead& h = self->head_;
  // What the client would get as is: only valid fields (as for requests).
  if (std::optional<std::string> bad = FieldGuard::FirstInvalid(&h.headers)) {
    self->error_ = absl::StrCat(
        "malformed upstream response: invalid header field \"", *bad, "\"");
    return -1;
  }
  h.status = p->status_code;
  if (p->flags & F_CONTENTLENGTH) h.content_length = p->content_length;
  h.chunked = (p->flags & F_CHUNKED) != 0;
  h.keep_alive = http_should_keep_alive(p) != 0;
  if (h.status == 101) {
    // http-parser ends the message here when the head names the upgrade
    // (Upgrade, and Connection: upgrade); the rest is the new protocol's.
    if (!self->upgrade_) {
      self->error_ = "the upstream switched protocols unasked (101)";
      return -1;
    }
    if (p->upgrade == 0) {
      self->error_ = "the upstream's 101 names no Upgrade";
      return -1;
    }
    self->upgraded_ = true;
    self->visitor_->OnResponseHead(std::move(h));
    return 1;
  }
  bool informational = h.status >= 100 && h.status < 200;
  if (!informational) self->visitor_->OnResponseHead(std::move(h));
  // 1 tells http-parser there is no body: a HEAD response, and 204 and 304
  // even when they carry a Content-Length (http-parser would wait for it).
  return self->head_request_ || IsBodilessStatus(h.status) ? 1 : 0;
}

int ResponseParser::OnBody(http_parser* p, const char* at, size_t len) {
  From<ResponseParser>(p)->visitor_->OnResponseBody(absl::string_view(at, len));
  return 0;
}

int ResponseParser::OnMessageComplete(http_parser* p) {
  auto* self = From<ResponseParser>(p);
  self->in_message_ = false;
  if (self->head_.status >= 200 || self->head_.status == 0) {
    self->visitor_->OnResponseEnd();
  }
  return 0;
}

size_t ResponseParser::Feed(absl::string_view data) {
  if (failed_ || upgraded_) return 0;
  size_t used = 0;
  // A loop, as RequestParser's: responses after a complete one are read in
  // the same call, as http-parser would.
  while (!slow_ && !failed_) {
    if (!plain_) {
      if (used == data.size() || !plain_heads_ || head_request_) break;
      head_ = ResponseHead();
      head_.headers.reserve(8);
      // 64 KiB: below http-parser's own limit on a head (80 KiB), so a
      // head it would refuse is never taken here.
      size_t n = ReadPlainResponseHead(data.substr(used), 64 << 10, &head_);
      if (n == 0) break;
      used += n;
      plain_ = true;
      plain_left_ = *head_.content_length;
      in_message_ = true;
      visitor_->OnResponseHead(std::move(head_));
    }
    uint64_t n = std::min<uint64_t>(plain_left_, data.size() - used);
    if (n > 0) {
      plain_left_ -= n;
      visitor_->OnResponseBody(data.substr(used, n));
      used += n;
    }
    if (plain_left_ > 0) return used;
    plain_ = false;
    in_message_ = false;
    visitor_->OnResponseEnd();
  }
  if (failed_ || plain_ || used == data.size()) return used;
  slow_ = true;
  absl::string_view rest = data.substr(used);
  fields_.Feeding(rest);
  used += http_parser_execute(&parser_, Settings(), rest.data(), rest.size());
  http_errno err = HTTP_PARSER_ERRNO(&parser_);
  if (err != HPE_OK) {
    failed_ = true;
    visitor_->OnResponseError(
        !error_.empty() ? error_
                        : absl::StrCat("malformed upstream response: ",
                                       http_errno_description(err)));
  }
  return used;
}

void ResponseParser::FeedEof() {
  if (failed_ || upgraded_) return;
  // A zero-length execute tells http-parser the stream ended: a body framed
  // by the close completes; anything else in progress is truncated.
  http_parser_execute(&parser_, Settings(), nullptr, 0);
  if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK || in_message_) {
    failed_ = true;
    visitor_->OnResponseError(
        "the upstream closed the connection mid-response");
  }
}

// --- Encoders ---

namespace {

// "name: value\r\n". Plain appends: absl::StrAppend here zero-fills what
// it then overwrites (Debian's Abseil has no uninitialized resize).
void AppendHeader(std::string* out, absl::string_view k, absl::string_view v) {
  out->append(k.data(), k.size());
  out->append(": ", 2);
  out->append(v.data(), v.size());
  out->append("\r\n", 2);
}

// The header names a message's Connection header lists (RFC 9110 7.6.1:
// hop-by-hop too, a proxy drops them), but the usual keep-alive, close and
// upgrade, which are dropped anyway. Empty for nearly every message.
std::vector<absl::string_view> ConnectionOptions(const Headers& headers) {
  std::vector<absl::string_view> names;
  for (const auto& [k, v] : headers) {
    if (!EqualsNoCase(k, "connection")) continue;
    for (absl::string_view t : absl::StrSplit(v, ',')) {
      t = absl::StripAsciiWhitespace(t);
      if (t.empty() || EqualsNoCase(t, "keep-alive") ||
          EqualsNoCase(t, "close") || EqualsNoCase(t, "upgrade")) {
        continue;
      }
      names.push_back(t);
    }
  }
  return names;
}

bool Listed(const std::vector<absl::string_view>& names, absl::string_view k) {
  for (absl::string_view n : names) {
    if (EqualsNoCase(n, k)) return true;
  }
  return false;
}

void AppendHeaders(std::string* out, const Headers& headers) {
  std::vector<absl::string_view> named = ConnectionOptions(headers);
  for (const auto& [k, v] : headers) {
    if (IsHopByHop(k) || Listed(named, k)) continue;
    AppendHeader(out, k, v);
  }
}

void AppendFraming(std::string* out, Framing framing, uint64_t length) {
  if (framing == Framing::kContentLength) {
    absl::StrAppend(out, "Content-Length: ", length, "\r\n");
  } else if (framing == Framing::kChunked) {
    out->append("Transfer-Encoding: chunked\r\n");
  }
}

}  // namespace

void AppendResponseHead(std::string* out, int status, absl::string_view reason,
                        const Headers& headers, Framing framing,
                        uint64_t content_length, bool keep_alive) {
  size_t size = 96 + reason.size();  // Status line, framing, Connection.
  for (const auto& [k, v] : headers) size += k.size() + v.size() + 4;
  out->reserve(out->size() + size);
  if (status >= 100 && status <= 999) {
    char line[] = "HTTP/1.1 000 ";
    line[9] = static_cast<char>('0' + status / 100);
    line[10] = static_cast<char>('0' + status / 10 % 10);
    line[11] = static_cast<char>('0' + status % 10);
    out->append(line, sizeof(line) - 1);
  } else {
    absl::StrAppend(out, "HTTP/1.1 ", status, " ");
  }
  if (reason.empty()) reason = ReasonPhrase(status);
  out->append(reason.data(), reason.size());
  out->append("\r\n", 2);
  AppendHeaders(out, headers);
  if (!IsBodilessStatus(status)) AppendFraming(out, framing, content_length);
  bool close = !keep_alive || framing == Framing::kUntilClose;
  if (close) {
    out->append("Connection: close\r\n\r\n");
  } else {
    out->append("Connection: keep-alive\r\n\r\n");
  }
}

std::string EncodeResponseHead(int status, absl::string_view reason,
                               const Headers& headers, Framing framing,
                               uint64_t content_length, bool keep_alive) {
  std::string out;
  AppendResponseHead(&out, status, reason, headers, framing, content_length,
                     keep_alive);
  return out;
}

void AppendRequestHead(
    std::string* out, absl::string_view method, absl::string_view target,
    const Headers& headers, std::initializer_list<absl::string_view> skip,
    std::initializer_list<std::pair<absl::string_view, absl::string_view>>
        extra,
    Framing framing, uint64_t content_length, absl::string_view upgrade) {
  size_t size = method.size() + target.size() + 64 + upgrade.size();
  for (const auto& [k, v] : headers) size += k.size() + v.size() + 4;
  for (const auto& [k, v] : extra) size += k.size() + v.size() + 4;
  out->reserve(out->size() + size);
  out->append(method.data(), method.size());
  out->push_back(' ');
  out->append(target.data(), target.size());
  out->append(" HTTP/1.1\r\n", 11);
  std::vector<absl::string_view> named = ConnectionOptions(headers);
  for (const auto& [k, v] : headers) {
    if (IsHopByHop(k) || Listed(named, k)) continue;
    bool skipped = false;
    for (absl::string_view name : skip) {
      if (EqualsNoCase(k, name)) {
        skipped = true;
        break;
      }
    }
    if (!skipped) AppendHeader(out, k, v);
  }
  for (const auto& [k, v] : extra) AppendHeader(out, k, v);
  AppendFraming(out, framing, content_length);
  if (upgrade.empty()) {
    out->append("Connection: keep-alive\r\n\r\n");
    return;
  }
  out->append("Connection: Upgrade\r\n");
  AppendHeader(out, "Upgrade", upgrade);
  out->append("\r\n", 2);
}

void AppendSwitchingHead(std::string* out, const Headers& headers) {
  out->append("HTTP/1.1 101 Switching Protocols\r\n");
  for (const auto& [k, v] : headers) AppendHeader(out, k, v);
  out->append("\r\n", 2);
}

std::string EncodeRequestHead(absl::string_view method,
                              absl::string_view target, const Headers& headers,
                              Framing framing, uint64_t content_length) {
  std::string out;
  AppendRequestHead(&out, method, target, headers, {}, {}, framing,
                    content_length);
  return out;
}

void AppendChunk(std::string* out, absl::string_view data) {
  if (data.empty()) return;
  absl::StrAppend(out, absl::Hex(data.size()), "\r\n", data, "\r\n");
}

std::string EncodeChunk(absl::string_view data) {
  std::string out;
  AppendChunk(&out, data);
  return out;
}

}  // namespace modelplane::proxy::http1
