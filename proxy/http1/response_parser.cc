// ResponseParser (codec.h): HTTP/1.1 responses from an upstream, on
// http-parser (plain heads read by plain_head.h when they can be).
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proxy/http1/codec.h"
#include "proxy/http1/parse_util.h"
#include "proxy/http1/plain_head.h"

namespace modelplane::proxy::http1 {

using internal::AppendHeaderPart;
using internal::From;

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

}  // namespace modelplane::proxy::http1
