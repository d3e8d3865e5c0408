// A quick reader for HTTP/1.1 message heads in their plain, common form,
// beside http-parser: the request and response parsers try it first on a
// message's first bytes and hand everything it does not take to
// http-parser, which stays the codec's judge of HTTP.
//
// Why: http-parser walks a head byte by byte through its state machine with
// a callback per piece; it was a quarter of modelproxy's instructions per
// proxied request. A head in the plain form is taken here in one pass over
// each line (a table lookup per byte).
//
// "Plain" is deliberately narrow, so that whatever is taken here is read
// exactly as http-parser reads it (a differential test,
// plain_head_test.cc, checks this on generated and mutated heads): the
// whole head is in the buffer; every line ends in CRLF; the request line is
// one of GET POST PUT DELETE HEAD OPTIONS PATCH, a single space, an
// origin-form target of URI characters, a single space, HTTP/1.1 or
// HTTP/1.0; header names are tokens; values are printable ASCII or tabs, with
// no trailing whitespace and no line folding; Content-Length (once, digits)
// frames the body; the message keeps the connection alive; and there is no
// Transfer-Encoding, Upgrade or unusual Connection header. Anything else is
// declined (0 returned) and left to http-parser, including every malformed
// head, so its error statuses and messages are unchanged.
#ifndef MODELPLANE_PROXY_HTTP1_PLAIN_HEAD_H_
#define MODELPLANE_PROXY_HTTP1_PLAIN_HEAD_H_

#include <cstddef>

#include "absl/strings/string_view.h"
#include "proxy/http1/codec.h"

namespace modelplane::proxy::http1 {

// Reads a plain request head at the start of `data` into `*head` (which
// must be fresh) and returns its length, CRLFCRLF included; 0 declines (and
// `*head` is then unspecified). Heads longer than `max_head_bytes` are
// declined: http-parser answers them 431.
size_t ReadPlainRequestHead(absl::string_view data, size_t max_head_bytes,
                            RequestHead* head);

// The same for a response head, whose status must be 200-599 other than
// 204 and 304, and whose body must be framed by Content-Length.
size_t ReadPlainResponseHead(absl::string_view data, size_t max_head_bytes,
                             ResponseHead* head);

}  // namespace modelplane::proxy::http1

#endif  // MODELPLANE_PROXY_HTTP1_PLAIN_HEAD_H_
