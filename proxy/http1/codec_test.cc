// The HTTP/1.1 codecs, bytes in and bytes out, and back to back. One file
// (over 600 lines) for both parsers and the encoders: most cases run a
// request or response through several of them, each in one piece and byte
// by byte.
#include "proxy/http1/codec.h"

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::proxy::http1 {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

TEST(HopByHopTest, NamesTheConnectionHeadersInAnyCase) {
  for (const char* name :
       {"connection", "Keep-Alive", "PROXY-CONNECTION", "Transfer-Encoding",
        "te", "TE", "trailer", "Upgrade", "content-length", "HTTP2-Settings",
        "Proxy-Authorization", "proxy-authenticate"}) {
    EXPECT_TRUE(IsHopByHop(name)) << name;
  }
  // End-to-end headers, some the same length as a hop-by-hop one.
  for (const char* name :
       {"", "t", "tf", "trailers", "upgrades", "connectio", "keep-alivf",
        "content-type", "content-lengtx", "http2-settingz", "authorization",
        "proxy-connectiom", "transfer-encodinf", "x-forwarded-for", "host",
        "proxy-authorizatio", "www-authenticate"}) {
    EXPECT_FALSE(IsHopByHop(name)) << name;
  }
}

class Requests : public RequestVisitor {
 public:
  void OnRequestHead(RequestHead head) override {
    heads.push_back(std::move(head));
    bodies.emplace_back();
  }
  void OnRequestBody(absl::string_view d) override {
    bodies.back().append(d.data(), d.size());
  }
  void OnRequestEnd() override {
    ++ends;
    if (resume_at_end) parser->Resume();  // Answered at once.
  }
  void OnRequestError(int status, const std::string& message) override {
    error_status = status;
    error = message;
  }
  std::vector<RequestHead> heads;
  std::vector<std::string> bodies;
  int ends = 0;
  bool resume_at_end = false;
  RequestParser* parser = nullptr;
  int error_status = 0;
  std::string error;
};

class Responses : public ResponseVisitor {
 public:
  void OnResponseHead(ResponseHead head) override {
    heads.push_back(std::move(head));
  }
  void OnResponseBody(absl::string_view d) override {
    body.append(d.data(), d.size());
  }
  void OnResponseEnd() override { ++ends; }
  void OnResponseError(const std::string& message) override { error = message; }
  std::vector<ResponseHead> heads;
  std::string body;
  int ends = 0;
  std::string error;
};

// Feeds `input` the way a connection does: through pauses, in pieces.
size_t FeedAll(RequestParser& p, absl::string_view input, size_t piece) {
  size_t total = 0;
  while (total < input.size() && !p.failed()) {
    size_t n = std::min(piece, input.size() - total);
    size_t used = p.Feed(input.substr(total, n));
    total += used;
    if (p.paused()) p.Resume();
    if (used == 0 && !p.paused()) break;
  }
  return total;
}

TEST(RequestParserTest, PipelinedRequestsPauseBetweenMessages) {
  Requests v;
  RequestParser p(&v, Limits{});
  std::string in =
      "GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nX-Multi: 1\r\n\r\n"
      "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: "
      "5\r\n\r\nhello";
  size_t used = p.Feed(in);
  EXPECT_TRUE(p.paused());
  ASSERT_EQ(v.heads.size(), 1u);
  EXPECT_EQ(v.heads[0].method, "GET");
  EXPECT_EQ(v.heads[0].target, "/v1/models?x=1");
  EXPECT_THAT(v.heads[0].headers,
              ElementsAre(Pair("Host", "a"), Pair("X-Multi", "1")));
  EXPECT_TRUE(v.heads[0].keep_alive);
  EXPECT_EQ(p.Feed(in.substr(used)), 0u);  // Paused: nothing more.
  p.Resume();
  p.Feed(in.substr(used));
  ASSERT_EQ(v.heads.size(), 2u);
  EXPECT_EQ(v.heads[1].content_length, 5u);
  EXPECT_EQ(v.bodies[1], "hello");
  EXPECT_EQ(v.ends, 2);
}

TEST(RequestParserTest, ResumingFromTheEndCallbackKeepsParsing) {
  Requests v;
  RequestParser p(&v, Limits{});
  v.parser = &p;
  v.resume_at_end = true;
  std::string in =
      "OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
  EXPECT_EQ(p.Feed(in), in.size());
  EXPECT_EQ(v.ends, 2);
  EXPECT_FALSE(p.paused());
  // And the next request, arriving later, is parsed too.
  p.Feed("GET /v1/models HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(v.ends, 3);
}

TEST(RequestParserTest, ByteByByteAndChunkedBodiesAreDechunked) {
  Requests v;
  RequestParser p(&v, Limits{});
  std::string in =
      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\nTrailer: t\r\n\r\n";
  EXPECT_EQ(FeedAll(p, in, 1), in.size());
  ASSERT_EQ(v.heads.size(), 1u);
  EXPECT_TRUE(v.heads[0].chunked);
  EXPECT_FALSE(v.heads[0].content_length.has_value());
  EXPECT_EQ(v.bodies[0], "abcdefg");
  EXPECT_EQ(v.ends, 1);
}

// RFC 9110 5.6.1: OWS is spaces and tabs, and empty list elements are
// ignored: these are one chunked coding.
TEST(RequestParserTest, TransferEncodingListsAreReadAsTheRfcSays) {
  for (const char* te : {"chunked\t", "chunked,", ", chunked", "\tchunked ,"}) {
    Requests v;
    RequestParser p(&v, Limits{});
    std::string in = absl::StrCat("POST /x HTTP/1.1\r\nHost: a\r\n",
                                  "Transfer-Encoding: ", te, "\r\n\r\n",
                                  "3\r\nabc\r\n0\r\n\r\n");
    EXPECT_EQ(FeedAll(p, in, 1 << 20), in.size()) << te;
    EXPECT_FALSE(p.failed()) << te << ": " << v.error;
    ASSERT_EQ(v.heads.size(), 1u) << te;
    EXPECT_TRUE(v.heads[0].chunked) << te;
    EXPECT_EQ(v.bodies[0], "abc") << te;
    EXPECT_EQ(v.ends, 1) << te;
  }
  Requests v;
  RequestParser p(&v, Limits{});
  FeedAll(p, "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,\r\n\r\n",
          1 << 20);
  EXPECT_EQ(v.error, "malformed HTTP request: an empty Transfer-Encoding");
}

TEST(RequestParserTest, FlagsExpectUpgradeAndKeepAlive) {
  Requests v;
  RequestParser p(&v, Limits{});
  FeedAll(p,
          "POST /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
          "Content-Length: 0\r\n\r\n"
          "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
          "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
          "GET / HTTP/1.0\r\n\r\n",
          1 << 20);
  ASSERT_EQ(v.heads.size(), 3u);
  EXPECT_TRUE(v.heads[0].expect_continue);
  EXPECT_TRUE(v.heads[1].upgrade);
  EXPECT_EQ(v.heads[2].version_minor, 0);
  EXPECT_FALSE(v.heads[2].keep_alive);
}

TEST(RequestParserTest, MalformedInputIs400) {
  Requests v;
  RequestParser p(&v, Limits{});
  p.Feed("NOT HTTP\r\n\r\n");
  EXPECT_TRUE(p.failed());
  EXPECT_EQ(v.error_status, 400);
  EXPECT_THAT(v.error, ::testing::HasSubstr("malformed HTTP request"));
  EXPECT_EQ(p.Feed("GET / HTTP/1.1\r\n\r\n"), 0u);  // Nothing after an error.
}

// What a proxy must not pass on (RFC 9112, 5.1 and 5.2): a name with
// whitespace before the colon (a lenient upstream might read
// "Transfer-Encoding : chunked" as framing the proxy ignored: request
// smuggling), a name that is no token, a folded value, bytes a value cannot
// hold. Each is a 400, in one piece or byte by byte.
TEST(RequestParserTest, HeadersAProxyMustNotForwardAre400) {
  for (const char* head : {
           "POST / HTTP/1.1\r\nContent-Length: 5\r\n"
           "Transfer-Encoding : chunked\r\n\r\n",
           "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
           "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
           "GET / HTTP/1.1\r\nBad\"Name: x\r\n\r\n",
           "GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
           "GET / HTTP/1.1\r\nX-A: 1\r\n\tfolded\r\n\r\n",
           "GET / HTTP/1.1\r\nX-A: a\x7f b\r\n\r\n",
       }) {
    for (size_t piece : {size_t{1} << 20, size_t{1}}) {
      Requests v;
      RequestParser p(&v, Limits{});
      FeedAll(p, head, piece);
      EXPECT_TRUE(p.failed()) << head;
      EXPECT_EQ(v.error_status, 400) << head;
      EXPECT_TRUE(v.heads.empty()) << head;
    }
  }
  // What is fine: no space after the colon, tabs and spaces around and
  // inside a value, every tchar in a name, bytes over 0x7f in a value.
  Requests v;
  RequestParser p(&v, Limits{});
  FeedAll(p,
          "GET / HTTP/1.1\r\nHost: h\r\nX-A:1\r\nX-B: \t a \t b \t\r\n"
          "!#$%&'*+-.^_`|~09azAZ: v\r\nX-C: caf\xc3\xa9\r\n\r\n",
          1 << 20);
  EXPECT_FALSE(p.failed()) << v.error;
  ASSERT_EQ(v.heads.size(), 1u);
  EXPECT_THAT(
      v.heads[0].headers,
      ElementsAre(Pair("Host", "h"), Pair("X-A", "1"), Pair("X-B", "a \t b"),
                  Pair("!#$%&'*+-.^_`|~09azAZ", "v"),
                  Pair("X-C", "caf\xc3\xa9")));
}

// RFC 9112's rules for the head that http-parser does not enforce: Host,
// the version, Transfer-Encoding in HTTP/1.0; and the absolute form of a
// target, which a server must take.
TEST(RequestParserTest, HeadRulesOfRfc9112) {
  struct Case {
    const char* input;
    int status;
    const char* message;
  } cases[] = {
      {"GET / HTTP/1.1\r\n\r\n", 400,
       "malformed HTTP request: an HTTP/1.1 request needs a Host header"},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
       "malformed HTTP request: more than one Host header"},
      {"GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", 400,
       "malformed HTTP request: more than one Host header"},
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
       "malformed HTTP request: Transfer-Encoding in an HTTP/1.0 request"},
      {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505,
       "HTTP/2.0 is not supported: HTTP/1.1 and HTTP/1.0 (and HTTP/2 with its "
       "preface) are"},
      {"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505,
       "HTTP/1.2 is not supported: HTTP/1.1 and HTTP/1.0 (and HTTP/2 with its "
       "preface) are"},
      {"GET / HTTP/9.9\r\nHost: a\r\n\r\n", 505,
       "HTTP/9.9 is not supported: HTTP/1.1 and HTTP/1.0 (and HTTP/2 with its "
       "preface) are"},
      {"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400,
       "malformed HTTP request: a Host header naming more than one host"},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
       501,
       "a request body in a transfer coding other than chunked is not "
       "supported"},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
       "Transfer-Encoding: chunked\r\n\r\n",
       400,
       "malformed HTTP request: a Transfer-Encoding other than one 'chunked'"},
      {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked"
       "\r\n\r\n",
       400,
       "malformed HTTP request: a Transfer-Encoding other than one 'chunked'"},
  };
  for (const Case& c : cases) {
    for (size_t piece : {size_t{1} << 20, size_t{1}}) {
      Requests v;
      RequestParser p(&v, Limits{});
      FeedAll(p, c.input, piece);
      EXPECT_TRUE(p.failed()) << c.input;
      EXPECT_EQ(v.error_status, c.status) << c.input;
      EXPECT_EQ(v.error, c.message) << c.input;
      EXPECT_TRUE(v.heads.empty()) << c.input;
    }
  }
  Requests v;
  RequestParser p(&v, Limits{});
  FeedAll(p, "GET / HTTP/1.0\r\n\r\n", 1 << 20);  // HTTP/1.0 needs none.
  EXPECT_FALSE(p.failed()) << v.error;
  ASSERT_EQ(v.heads.size(), 1u);
  Requests w;
  RequestParser q(&w, Limits{});
  FeedAll(q,
          "POST http://h:8080/v1/chat/completions?x=1 HTTP/1.1\r\nHost: h\r\n"
          "Content-Length: 0\r\n\r\n"
          "GET HTTPS://h HTTP/1.1\r\nHost: h\r\n\r\n"
          "GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n",
          1 << 20);
  EXPECT_FALSE(q.failed()) << w.error;
  ASSERT_EQ(w.heads.size(), 3u);
  EXPECT_EQ(w.heads[0].target, "/v1/chat/completions?x=1");
  EXPECT_EQ(w.heads[1].target, "/");
  EXPECT_EQ(w.heads[2].target, "/?q=1");
}

// Chunked bodies are read strictly (chunked.h): what a lenient parser in
// front of the proxy could read otherwise is refused, in one piece or byte
// by byte; a request pipelined behind one is read as usual.
TEST(RequestParserTest, ChunkedBodiesAreReadStrictly) {
  const std::string head =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  struct Case {
    std::string body;
    int status;
    std::string message;
  } cases[] = {
      {"10000000000000000\r\n", 400,
       "malformed chunked body: a chunk size of 2^64 or more"},
      {"ffffffffffffffff0\r\n", 400,
       "malformed chunked body: a chunk size of 2^64 or more"},
      {"3;ext\nx=1\r\nabc\r\n0\r\n\r\n", 400,
       "malformed chunked body: a bare LF in a chunk extension (CRLF ends a "
       "chunk line)"},
      {"3\nabc\r\n0\r\n\r\n", 400,
       "malformed chunked body: a bare LF ends a chunk line (CRLF is "
       "required)"},
      {"3;a\x01b\r\nabc\r\n0\r\n\r\n", 400,
       "malformed chunked body: a control character in a chunk extension"},
      {"3\r\nabcX\r\n0\r\n\r\n", 400,
       "malformed chunked body: chunk data must end in CRLF"},
      {"x\r\n", 400,
       "malformed chunked body: a chunk line must start with its size in hex"},
      {"0\r\nBad Trailer: x\r\n\r\n", 400,
       "malformed chunked body: an invalid trailer field"},
      {"0\r\nT: x\n\r\n", 400,
       "malformed chunked body: a bare LF ends a trailer field (CRLF is "
       "required)"},
      {"0\r\n\n", 400,
       "malformed chunked body: a chunked body must end in CRLF"},
      {"1f \r\n", 400,
       "malformed chunked body: whitespace after a chunk size, and no ';'"},
      {"3;\r\nabc\r\n0\r\n\r\n", 400,
       "malformed chunked body: a chunk extension without a name"},
      {"3; ;a\r\nabc\r\n0\r\n\r\n", 400,
       "malformed chunked body: a chunk extension without a name"},
  };
  for (const Case& c : cases) {
    for (size_t piece : {size_t{1} << 20, size_t{1}}) {
      Requests v;
      RequestParser p(&v, Limits{});
      FeedAll(p, head + c.body, piece);
      EXPECT_TRUE(p.failed()) << c.body;
      EXPECT_EQ(v.error_status, c.status) << c.body;
      EXPECT_EQ(v.error, c.message) << c.body;
    }
  }
  for (size_t piece : {size_t{1} << 20, size_t{1}}) {
    Requests v;
    RequestParser p(&v, Limits{});
    std::string in = head +
                     "A ; name=\"quoted\" \r\n0123456789\r\n0\r\n"
                     "X-T: 1\r\n\r\n"
                     "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    EXPECT_EQ(FeedAll(p, in, piece), in.size());
    EXPECT_FALSE(p.failed()) << v.error;
    ASSERT_EQ(v.heads.size(), 2u);
    EXPECT_EQ(v.bodies[0], "0123456789");
    EXPECT_EQ(v.heads[1].target, "/next");
    EXPECT_EQ(v.ends, 2);
  }
}

// RFC 9110 7.6.1: the fields a Connection header names are for this hop
// only, in requests and responses alike.
TEST(EncodeTest, FieldsConnectionNamesAreNotPassedOn) {
  Headers h = {{"Connection", "keep-alive, X-Secret"},
               {"X-Secret", "s"},
               {"X-Kept", "k"}};
  std::string request = EncodeRequestHead("GET", "/", h, Framing::kNoBody, 0);
  EXPECT_EQ(request.find("X-Secret"), std::string::npos) << request;
  EXPECT_NE(request.find("X-Kept: k"), std::string::npos) << request;
  std::string response =
      EncodeResponseHead(200, "", h, Framing::kContentLength, 0, true);
  EXPECT_EQ(response.find("X-Secret"), std::string::npos) << response;
  EXPECT_NE(response.find("X-Kept: k"), std::string::npos) << response;
}

TEST(RequestParserTest, LargeHeadIs431AndLargeBodyIs413) {
  Limits small{/*max_header_bytes=*/100, /*max_body_bytes=*/10};
  {
    Requests v;
    RequestParser p(&v, small);
    FeedAll(p, "GET / HTTP/1.1\r\nX: " + std::string(200, 'a') + "\r\n\r\n", 7);
    EXPECT_EQ(v.error_status, 431);
  }
  {
    Requests v;
    RequestParser p(&v, small);
    p.Feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n");
    EXPECT_EQ(v.error_status, 413);
    EXPECT_TRUE(v.heads.empty());
  }
  {
    Requests v;
    RequestParser p(&v, small);
    p.Feed(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "6\r\nabcdef\r\n6\r\nabcdef\r\n0\r\n\r\n");
    EXPECT_EQ(v.error_status, 413);
  }
}

TEST(ResponseParserTest, LengthChunkedAndCloseDelimitedBodies) {
  {
    Responses v;
    ResponseParser p(&v);
    p.Feed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc");
    ASSERT_EQ(v.heads.size(), 1u);
    EXPECT_EQ(v.heads[0].status, 200);
    EXPECT_EQ(v.heads[0].reason, "OK");
    EXPECT_EQ(v.body, "abc");
    EXPECT_EQ(v.ends, 1);
  }
  {
    Responses v;
    ResponseParser p(&v);
    p.Feed(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        "Transfer-Encoding: chunked\r\n\r\n6\r\ndata: "
        "\r\n3\r\nx\n\n\r\n0\r\n\r\n");
    EXPECT_TRUE(v.heads[0].chunked);
    EXPECT_EQ(v.body, "data: x\n\n");
    EXPECT_EQ(v.ends, 1);
  }
  {
    Responses v;
    ResponseParser p(&v);
    p.Feed("HTTP/1.1 200 OK\r\n\r\nuntil close");
    EXPECT_EQ(v.ends, 0);
    p.FeedEof();
    EXPECT_EQ(v.body, "until close");
    EXPECT_EQ(v.ends, 1);
    EXPECT_TRUE(v.error.empty());
  }
}

// The upstream's head goes to the client: fields that are no valid HTTP
// (a name with a space, a folded line, a control character) are an error
// (502), not passed on.
TEST(ResponseParserTest, InvalidHeaderFieldsAreAnError) {
  for (const char* head : {
           "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
           "HTTP/1.1 200 OK\r\nX-A : x\r\nContent-Length: 0\r\n\r\n",
           "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
           "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 0\r\n\r\n",
       }) {
    for (size_t piece : {size_t{1} << 20, size_t{1}}) {
      Responses v;
      ResponseParser p(&v);
      for (size_t at = 0; at < strlen(head) && v.error.empty(); at += piece) {
        p.Feed(absl::string_view(head).substr(at, piece));
      }
      EXPECT_THAT(v.error, ::testing::HasSubstr("malformed upstream response"))
          << head;
      EXPECT_TRUE(v.heads.empty()) << head;
    }
  }
  Responses v;
  ResponseParser p(&v);
  p.Feed("HTTP/1.1 200 OK\r\nX-A: \t a \t\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(v.error, "");
  ASSERT_EQ(v.heads.size(), 1u);
  EXPECT_THAT(v.heads[0].headers,
              ElementsAre(Pair("X-A", "a"), Pair("Content-Length", "0")));
}

TEST(ResponseParserTest, NoBodyFor204And304EvenWithALength) {
  for (const char* status : {"204 No Content", "304 Not Modified"}) {
    Responses v;
    ResponseParser p(&v);
    p.Feed(absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Length: 5\r\n\r\n"));
    EXPECT_EQ(v.ends, 1) << status;  // Not waiting for 5 bytes.
    EXPECT_EQ(v.body, "");
  }
}

TEST(ResponseParserTest, TruncationIsAnErrorNotAnEnd) {
  Responses v;
  ResponseParser p(&v);
  p.Feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
  p.FeedEof();
  EXPECT_EQ(v.ends, 0);
  EXPECT_EQ(v.error, "the upstream closed the connection mid-response");
}

TEST(ResponseParserTest, InterimAndHeadResponses) {
  Responses v;
  ResponseParser p(&v);
  p.Feed(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: "
      "0\r\n\r\n");
  ASSERT_EQ(v.heads.size(), 1u);
  EXPECT_EQ(v.heads[0].status, 201);
  EXPECT_EQ(v.ends, 1);
  Responses h;
  ResponseParser head(&h);
  head.ExpectResponse(/*head_request=*/true);
  head.Feed("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n");
  EXPECT_EQ(h.ends, 1);
  EXPECT_TRUE(h.body.empty());
}

TEST(ResponseParserTest, SwitchingProtocolsWhenAskedEndsTheParse) {
  const std::string head =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\n\r\n";
  const std::string frame = "\x81\x05hello";
  Responses v;
  ResponseParser p(&v);
  p.ExpectResponse(false, /*upgrade=*/true);
  // The new protocol's first bytes in the same read are left unparsed.
  EXPECT_EQ(p.Feed(head + frame), head.size());
  EXPECT_TRUE(p.upgraded());
  EXPECT_FALSE(p.failed());
  ASSERT_EQ(v.heads.size(), 1u);
  EXPECT_EQ(v.heads[0].status, 101);
  EXPECT_EQ(*FindHeader(v.heads[0].headers, "sec-websocket-accept"), "abc=");
  EXPECT_EQ(v.ends, 0);
  EXPECT_EQ(p.Feed(frame), 0u);  // Not HTTP any more.
  p.FeedEof();
  EXPECT_TRUE(v.error.empty()) << v.error;

  // An upgrade answered with an ordinary response is read as one.
  Responses refused;
  ResponseParser q(&refused);
  q.ExpectResponse(false, true);
  q.Feed("HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno");
  EXPECT_FALSE(q.upgraded());
  EXPECT_EQ(refused.ends, 1);
  EXPECT_EQ(refused.body, "no");
}

TEST(ResponseParserTest, SwitchingProtocolsUnaskedOrUnnamedIsAnError) {
  Responses unasked;
  ResponseParser p(&unasked);
  p.ExpectResponse(false);
  p.Feed(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\n\r\n");
  EXPECT_TRUE(p.failed());
  EXPECT_FALSE(p.upgraded());
  EXPECT_THAT(unasked.error, ::testing::HasSubstr("unasked"));
  EXPECT_TRUE(unasked.heads.empty());

  Responses unnamed;
  ResponseParser q(&unnamed);
  q.ExpectResponse(false, true);
  q.Feed("HTTP/1.1 101 Switching Protocols\r\n\r\n");
  EXPECT_TRUE(q.failed());
  EXPECT_THAT(unnamed.error, ::testing::HasSubstr("no Upgrade"));
}

TEST(CodecTest, UpgradeRequestAndSwitchingHeads) {
  std::string req;
  AppendRequestHead(&req, "GET", "/ws",
                    {{"Connection", "Upgrade"},
                     {"Upgrade", "websocket"},
                     {"Sec-WebSocket-Key", "k"}},
                    {}, {{"Host", "up"}}, Framing::kNoBody, 0, "websocket");
  EXPECT_EQ(req,
            "GET /ws HTTP/1.1\r\nSec-WebSocket-Key: k\r\nHost: up\r\n"
            "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  std::string resp;
  AppendSwitchingHead(&resp, {{"Upgrade", "websocket"},
                              {"Connection", "Upgrade"},
                              {"Sec-WebSocket-Accept", "a"}});
  EXPECT_EQ(resp,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Accept: a\r\n\r\n");
  Headers h = {{"Connection", "keep-alive, Upgrade"}, {"Upgrade", "WebSocket"}};
  EXPECT_TRUE(HasToken(h, "connection", "upgrade"));
  EXPECT_TRUE(HasToken(h, "upgrade", "websocket"));
  EXPECT_FALSE(HasToken(h, "upgrade", "h2c"));
  EXPECT_FALSE(HasToken(h, "te", "trailers"));
}

TEST(CodecTest, RequestBackToBack) {
  Headers headers = {{"Host", "up"}, {"Connection", "close"}, {"X-Model", "q"}};
  std::string wire = EncodeRequestHead("POST", "/v1/chat/completions", headers,
                                       Framing::kChunked, 0) +
                     EncodeChunk("{\"model\":") + EncodeChunk("") +
                     EncodeChunk("\"q\"}") + EncodeLastChunk();
  Requests v;
  RequestParser p(&v, Limits{});
  EXPECT_EQ(FeedAll(p, wire, 3), wire.size());
  ASSERT_EQ(v.heads.size(), 1u);
  EXPECT_EQ(v.heads[0].target, "/v1/chat/completions");
  EXPECT_EQ(*FindHeader(v.heads[0].headers, "x-model"), "q");
  EXPECT_EQ(*FindHeader(v.heads[0].headers, "CONNECTION"), "keep-alive");
  EXPECT_EQ(v.bodies[0], "{\"model\":\"q\"}");
}

TEST(CodecTest, ResponseBackToBackDropsHopByHopHeaders) {
  Headers headers = {{"Content-Type", "application/json"},
                     {"Transfer-Encoding", "gzip"},
                     {"Content-Length", "999"},
                     {"Keep-Alive", "timeout=5"}};
  std::string wire =
      EncodeResponseHead(200, "", headers, Framing::kContentLength, 2, true) +
      "{}";
  EXPECT_EQ(wire,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\nConnection: keep-alive\r\n\r\n{}");
  Responses v;
  ResponseParser p(&v);
  p.Feed(wire);
  EXPECT_EQ(v.body, "{}");
  EXPECT_TRUE(v.heads[0].keep_alive);
  std::string closing =
      EncodeResponseHead(502, "", {}, Framing::kUntilClose, 0, true);
  EXPECT_EQ(closing, "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n");
}

TEST(CodecTest, BodilessResponsesGetNoFramingHeader) {
  // RFC 9110: no Content-Length or Transfer-Encoding on 1xx, 204 and 304.
  for (int status : {204, 304}) {
    for (Framing f : {Framing::kContentLength, Framing::kChunked}) {
      std::string head = EncodeResponseHead(status, "", {}, f, 0, true);
      EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;
      EXPECT_EQ(head.find("Transfer-Encoding"), std::string::npos) << head;
    }
  }
  EXPECT_EQ(EncodeResponseHead(200, "", {}, Framing::kNoBody, 0, true),
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n");
}

}  // namespace
}  // namespace modelplane::proxy::http1
