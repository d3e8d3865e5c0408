// RequestParser (codec.h): HTTP/1.1 requests from a client, on http-parser,
// with RFC 9112's head rules and our own strict chunked decoder.
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

}  // namespace modelplane::proxy::http1
