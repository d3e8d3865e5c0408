// The plain-head reader against http-parser: every input is parsed twice,
// with plain heads read first and with http-parser alone, and everything
// the visitor hears (each head field, body bytes, ends, errors) and every
// Feed's result must be the same. Inputs are generated from pieces that are
// plain and pieces that are not (each a reason to decline), then some are
// mutated. Seeded, so a failure reproduces.
#include "proxy/http1/plain_head.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proxy/fuzz/mutate.h"

namespace modelplane::proxy::http1 {
namespace {

constexpr uint32_t kSeed = 20261126;
constexpr int kRounds = 20000;

std::string Describe(const Headers& headers) {
  std::string out;
  for (const auto& [k, v] : headers) {
    absl::StrAppend(&out, "[", absl::CEscape(k), "]=[", absl::CEscape(v), "] ");
  }
  return out;
}

class RequestLog : public RequestVisitor {
 public:
  void OnRequestHead(RequestHead h) override {
    absl::StrAppend(&log, "head ", h.method, " ", absl::CEscape(h.target),
                    " 1.", h.version_minor, " len=",
                    h.content_length ? absl::StrCat(*h.content_length) : "-",
                    " chunked=", h.chunked, " ka=", h.keep_alive,
                    " expect=", h.expect_continue, " upgrade=", h.upgrade, " ",
                    Describe(h.headers), "\n");
  }
  void OnRequestBody(absl::string_view d) override {
    absl::StrAppend(&log, "body ", absl::CEscape(d), "\n");
  }
  void OnRequestEnd() override {
    log += "end\n";
    ++ends;
    if (resume_at_end) parser->Resume();  // Answered at once.
  }
  void OnRequestError(int status, const std::string& message) override {
    absl::StrAppend(&log, "error ", status, " ", message, "\n");
  }
  std::string log;
  RequestParser* parser = nullptr;
  bool resume_at_end = true;
  int ends = 0;
};

// Feeds `pieces` the way ClientConnection does: what a Feed leaves is kept
// for the next; a request answered later (`resume_at_end` false) is resumed
// after Feed returns.
std::string ParseRequests(const std::vector<std::string>& pieces, bool plain,
                          bool resume_at_end) {
  RequestLog log;
  log.resume_at_end = resume_at_end;
  Limits limits;
  limits.max_header_bytes = 512;
  limits.max_body_bytes = 64;
  limits.plain_heads = plain;
  RequestParser p(&log, limits);
  log.parser = &p;
  std::string pending;
  for (const std::string& piece : pieces) {
    pending += piece;
    while (!p.failed()) {
      if (p.paused()) {
        p.Resume();
        log.log += "resume\n";
      }
      if (pending.empty()) break;
      size_t used = p.Feed(pending);
      absl::StrAppend(&log.log, "used ", used, " paused=", p.paused(),
                      " in_head=", p.in_head(), "\n");
      pending.erase(0, used);
      if (used == 0 && !p.paused()) break;
    }
  }
  return log.log;
}

class ResponseLog : public ResponseVisitor {
 public:
  void OnResponseHead(ResponseHead h) override {
    absl::StrAppend(
        &log, "head ", h.status, " [", absl::CEscape(h.reason),
        "] len=", h.content_length ? absl::StrCat(*h.content_length) : "-",
        " chunked=", h.chunked, " ka=", h.keep_alive, " ", Describe(h.headers),
        "\n");
  }
  void OnResponseBody(absl::string_view d) override {
    absl::StrAppend(&log, "body ", absl::CEscape(d), "\n");
  }
  void OnResponseEnd() override { log += "end\n"; }
  void OnResponseError(const std::string& message) override {
    absl::StrAppend(&log, "error ", message, "\n");
  }
  std::string log;
};

std::string ParseResponse(const std::string& input, bool plain, size_t split) {
  ResponseLog log;
  ResponseParser p(&log, plain);
  p.ExpectResponse(false);
  absl::string_view in(input);
  for (absl::string_view piece : {in.substr(0, split), in.substr(split)}) {
    if (piece.empty()) continue;
    absl::StrAppend(&log.log, "used ", p.Feed(piece), "\n");
  }
  p.FeedEof();
  return log.log;
}

template <typename T>
const T& Pick(const std::vector<T>& v, std::mt19937& rng) {
  return v[rng() % v.size()];
}

// Three times in four one of the first `plain` entries (the plain ones).
template <typename T>
const T& PickMostlyPlain(const std::vector<T>& v, size_t plain,
                         std::mt19937& rng) {
  return rng() % 4 != 0 ? v[rng() % plain] : Pick(v, rng);
}

// Header lines (without their line end), plain and not. Three in four
// come from the first kPlainLines, which are plain.
constexpr size_t kPlainLines = 6;
const std::vector<std::string>& HeaderLines() {
  static const std::vector<std::string> lines = {
      "Accept-Encoding: gzip",
      "Content-Type: application/json",
      "Accept: */*",
      "User-Agent: curl/7.88.1",
      "Authorization: Bearer sk-abc",
      "X-Colon: a:b:c",
      "X-Empty:",
      "X-Empty2: ",
      "X-Tab:\tv\tw",
      "X-Trail: v ",
      "X-Trail-Tab: v\t",
      "X-Lead:    v",
      "X-NoSpace:v",
      "X-Obs: caf\xc3\xa9",
      "X-Ctl: a\x01"
      "b",
      "X-Del: a\x7f",
      "Bad Name: x",
      "Bad\tName: x",
      ": novalue",
      "x-lower: Mixed Case Value",
      "Expect: 100-continue",
      "Expect: 100-Continue",
      "Expect: 200-ok",
      "Connection: keep-alive",
      "Connection: Keep-Alive",
      "Connection: close",
      "Connection: upgrade",
      "Connection: keep-alive, upgrade",
      "Proxy-Connection: close",
      "Upgrade: h2c",
      "Transfer-Encoding: chunked",
      "Transfer-Encoding: identity",
      "Content-Length: 5",
      "Content-Length: 05",
      "Content-Length:  5",
      "Content-Length: 5 ",
      "Content-Length: -1",
      "Content-Length: 1x",
      "Content-Length: ",
      "Content-Length: 99999999999999999999999",
      "Content-Length: 100",
      "content-length: 0",
      "X-Long: " + std::string(300, 'a'),
      "Host: a-second-one",
  };
  return lines;
}

std::string RequestInput(std::mt19937& rng) {
  static const std::vector<std::string> methods = {
      "GET",   "POST",    "PUT", "DELETE", "HEAD",    "OPTIONS",
      "PATCH", "CONNECT", "get", "POS",    "PROPFIND"};
  static const std::vector<std::string> targets = {
      "/v1/chat/completions",
      "/",
      "/v1/models?x=1&y=%20z",
      "/upstream/org/model-7b/v1/x?q=[1]&r=(2);s=@:!$'*+,",
      "/a#frag",
      "*",
      "http://h/x",
      "/a\"b",
      "/{x}|^`\\<>",
      "/caf\xc3\xa9",
      "//double",
      "/%zz",
  };
  static const std::vector<std::string> versions = {
      "HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0",
      "HTTP/1.2", "HTTP/2.0", "http/1.1", "HTTP/1.1 "};
  std::string out;
  int requests = 1 + rng() % 3;
  for (int r = 0; r < requests; ++r) {
    if (rng() % 16 == 0) out += "\r\n";  // Blank line between messages.
    std::string eol = rng() % 24 == 0 ? "\n" : "\r\n";
    std::string sp = rng() % 24 == 0 ? "  " : " ";
    absl::StrAppend(&out, PickMostlyPlain(methods, 7, rng), sp,
                    PickMostlyPlain(targets, 4, rng), " ",
                    PickMostlyPlain(versions, 4, rng), eol);
    int n = rng() % 6;
    bool has_length = false;
    // One Host mostly (HTTP/1.1 needs exactly one); none, or two, sometimes.
    if (rng() % 8 != 0) out += "Host: 127.0.0.1:8080\r\n";
    for (int i = 0; i < n; ++i) {
      const std::string& line =
          PickMostlyPlain(HeaderLines(), kPlainLines, rng);
      if (line == "Content-Length: 5") has_length = true;
      absl::StrAppend(&out, line, rng() % 32 == 0 ? "\n" : "\r\n");
      if (rng() % 40 == 0) out += " folded\r\n";
    }
    if (rng() % 2 == 0 && !has_length) {
      out += "Content-Length: 5\r\n";
      has_length = true;
    }
    absl::StrAppend(&out, eol, has_length ? "hello" : "");
  }
  if (rng() % 4 == 0) out = fuzz::Mutate(out, rng);
  return out;
}

std::string ResponseInput(std::mt19937& rng) {
  static const std::vector<std::string> lines = {
      "HTTP/1.1 200 OK",
      "HTTP/1.1 200 OK",
      "HTTP/1.0 200 OK",
      "HTTP/1.1 404 Not Found",
      "HTTP/1.1 503 Service Unavailable",
      "HTTP/1.1 204 No Content",
      "HTTP/1.1 304 Not Modified",
      "HTTP/1.1 100 Continue",
      "HTTP/1.1 200 ",
      "HTTP/1.1 200",
      "HTTP/1.1 200  OK",
      "HTTP/1.1 200 OK ",
      "HTTP/1.1 099 Low",
      "HTTP/1.1 600 High",
      "HTTP/1.1 2x0 OK",
      "HTTP/2.0 200 OK",
      "HTTP/1.1 200 \xc3\xa9",
  };
  std::string out;
  int responses = 1 + rng() % 2;
  for (int r = 0; r < responses; ++r) {
    std::string eol = rng() % 24 == 0 ? "\n" : "\r\n";
    absl::StrAppend(&out, Pick(lines, rng), eol);
    int n = rng() % 5;
    bool has_length = false;
    for (int i = 0; i < n; ++i) {
      const std::string& line =
          PickMostlyPlain(HeaderLines(), kPlainLines, rng);
      if (line == "Content-Length: 5") has_length = true;
      absl::StrAppend(&out, line, "\r\n");
    }
    if (rng() % 4 != 0 && !has_length) {
      out += "Content-Length: 5\r\n";
      has_length = true;
    }
    absl::StrAppend(&out, eol, "hello");
  }
  if (rng() % 4 == 0) out = fuzz::Mutate(out, rng);
  return out;
}

TEST(PlainHeadTest, RequestsReadAsHttpParserReadsThem) {
  std::mt19937 rng(kSeed);
  int taken = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::string input = RequestInput(rng);
    RequestHead head;
    if (ReadPlainRequestHead(input, 512, &head) > 0) ++taken;
    // Whole, and in random reads; answered at once, and later.
    std::vector<std::string> whole = {input};
    std::vector<std::string> split = fuzz::Pieces(input, rng);
    for (const auto* pieces : {&whole, &split}) {
      for (bool at_once : {true, false}) {
        ASSERT_EQ(ParseRequests(*pieces, true, at_once),
                  ParseRequests(*pieces, false, at_once))
            << absl::CEscape(input) << " in " << pieces->size()
            << " reads, answered at once: " << at_once;
      }
    }
  }
  // Not vacuous: a good part of the inputs took the plain path, and a good
  // part did not.
  EXPECT_GT(taken, kRounds / 10);
  EXPECT_LT(taken, kRounds * 9 / 10);
}

TEST(PlainHeadTest, ResponsesReadAsHttpParserReadsThem) {
  std::mt19937 rng(kSeed + 1);
  int taken = 0;
  for (int round = 0; round < kRounds; ++round) {
    std::string input = ResponseInput(rng);
    ResponseHead head;
    if (ReadPlainResponseHead(input, 1 << 16, &head) > 0) ++taken;
    size_t split = rng() % (input.size() + 1);
    ASSERT_EQ(ParseResponse(input, true, split),
              ParseResponse(input, false, split))
        << absl::CEscape(input) << " split at " << split;
  }
  EXPECT_GT(taken, kRounds / 10);
  EXPECT_LT(taken, kRounds * 9 / 10);
}

// A pipeline of many requests in one buffer, each answered at once: read
// in a loop (recursion per request overflowed the stack here).
TEST(PlainHeadTest, LongPipelinesInOneBuffer) {
  constexpr int kRequests = 400000;
  std::string in;
  for (int i = 0; i < kRequests; ++i) in += "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  RequestLog log;
  RequestParser p(&log, Limits{});
  log.parser = &p;
  EXPECT_EQ(p.Feed(in), in.size());
  EXPECT_EQ(log.ends, kRequests);
  EXPECT_FALSE(p.failed());

  std::string out;
  for (int i = 0; i < kRequests; ++i) {
    out += "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  }
  ResponseLog responses;
  ResponseParser r(&responses);
  EXPECT_EQ(r.Feed(out), out.size());
  EXPECT_FALSE(r.failed());
  size_t ends = 0;
  for (size_t at = responses.log.find("end\n"); at != std::string::npos;
       at = responses.log.find("end\n", at + 1)) {
    ++ends;
  }
  EXPECT_EQ(ends, static_cast<size_t>(kRequests));
}

TEST(PlainHeadTest, TakesTheUsualHeads) {
  RequestHead req;
  std::string in =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\n"
      "Content-Type: application/json\r\nContent-Length: 16\r\n\r\n{}";
  EXPECT_EQ(ReadPlainRequestHead(in, 4096, &req), in.size() - 2);
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.target, "/v1/chat/completions");
  EXPECT_EQ(req.content_length, 16u);
  ASSERT_EQ(req.headers.size(), 3u);
  EXPECT_EQ(req.headers[1].first, "Content-Type");
  EXPECT_EQ(req.headers[1].second, "application/json");

  ResponseHead resp;
  std::string out =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
      "Content-Length: 2\r\n\r\n{}";
  EXPECT_EQ(ReadPlainResponseHead(out, 4096, &resp), out.size() - 2);
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(resp.reason, "OK");
  EXPECT_EQ(resp.content_length, 2u);
}

TEST(PlainHeadTest, DeclinesWhatItMustLeaveToHttpParser) {
  RequestHead req;
  // Incomplete; over the head limit; chunked; a closing request.
  EXPECT_EQ(ReadPlainRequestHead("GET / HTTP/1.1\r\nHost: a\r\n", 4096, &req),
            0u);
  RequestHead big;
  EXPECT_EQ(ReadPlainRequestHead("GET / HTTP/1.1\r\nHost: a\r\n\r\n", 20, &big),
            0u);
  RequestHead chunked;
  EXPECT_EQ(ReadPlainRequestHead(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 4096,
                &chunked),
            0u);
  RequestHead close;
  EXPECT_EQ(ReadPlainRequestHead("GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
                                 4096, &close),
            0u);
  RequestHead old;
  EXPECT_EQ(ReadPlainRequestHead("GET / HTTP/1.0\r\n\r\n", 4096, &old), 0u);
  ResponseHead until_close;
  EXPECT_EQ(
      ReadPlainResponseHead("HTTP/1.1 200 OK\r\n\r\nbody", 4096, &until_close),
      0u);
}

}  // namespace
}  // namespace modelplane::proxy::http1
