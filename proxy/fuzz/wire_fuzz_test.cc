// The other readers of untrusted bytes: the HTTP/1.1 response parser (what
// model servers send) and the HTTP/2 server session (what HTTP/2 clients
// send). Mutated and re-split input must never crash them, and valid input
// must give the same events however it is split into reads. Seeded, so
// failures reproduce; run under --config=asan for memory errors too.
#include <nghttp2/nghttp2.h>

#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proxy/fuzz/mutate.h"
#include "proxy/http1/codec.h"
#include "proxy/http2/server_session.h"
#include "proxy/http2/test_client.h"

namespace modelplane::proxy {
namespace {

using fuzz::Mutate;
using fuzz::Pieces;

constexpr uint32_t kSeed = 20261126;
constexpr int kRounds = 2000;

// --- The HTTP/1.1 response parser ---

class ResponseLog : public http1::ResponseVisitor {
 public:
  void OnResponseHead(http1::ResponseHead head) override {
    absl::StrAppend(&log, "head ", head.status, " ", head.headers.size(),
                    head.chunked ? " chunked" : "", "\n");
  }
  void OnResponseBody(absl::string_view data) override {
    body.append(data.data(), data.size());
  }
  void OnResponseEnd() override {
    absl::StrAppend(&log, "end ", body.size(), "\n");
    body.clear();
  }
  void OnResponseError(const std::string&) override { log += "error\n"; }
  std::string log, body;
};

const std::vector<std::string>& ResponseSeeds() {
  static const std::vector<std::string> seeds = {
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
      "Content-Length: 13\r\n\r\n{\"model\":\"a\"}",
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
      "Transfer-Encoding: chunked\r\n\r\n"
      "b\r\ndata: tok0\n\r\nb\r\ndata: tok1\n\r\n0\r\n\r\n",
      "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
      "Content-Length: 2\r\n\r\nok",
      "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
      "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
  };
  return seeds;
}

std::string ParseResponse(const std::string& input, std::mt19937* rng) {
  ResponseLog log;
  http1::ResponseParser parser(&log);
  parser.ExpectResponse(false);
  std::vector<std::string> pieces =
      rng != nullptr ? Pieces(input, *rng) : std::vector<std::string>{input};
  for (const std::string& p : pieces) {
    if (parser.failed()) break;
    size_t used = parser.Feed(p);
    // After a complete response the parser takes the next one.
    while (!parser.failed() && used < p.size()) {
      parser.ExpectResponse(false);
      size_t more = parser.Feed(absl::string_view(p).substr(used));
      if (more == 0) break;
      used += more;
    }
  }
  if (!parser.failed()) parser.FeedEof();
  return log.log;
}

TEST(WireFuzzTest, ResponseParserSplitInvariantAndNeverCrashes) {
  std::mt19937 rng(kSeed);
  for (int round = 0; round < kRounds; ++round) {
    const std::string& seed = ResponseSeeds()[round % ResponseSeeds().size()];
    std::string input = round % 3 == 0 ? seed : Mutate(seed, rng);
    std::string whole = ParseResponse(input, nullptr);
    std::string split = ParseResponse(input, &rng);
    if (round % 3 == 0) {
      EXPECT_EQ(whole, split) << absl::CEscape(input);
      EXPECT_NE(whole.find("end"), std::string::npos) << absl::CEscape(input);
    }
  }
}

// --- The HTTP/2 server session ---

const std::vector<std::string>& Http2Seeds() {
  static const std::vector<std::string> seeds = [] {
    std::vector<std::string> s;
    const std::vector<std::pair<std::string, std::string>> json = {
        {"content-type", "application/json"}};
    {
      http2::testing::Client c;
      c.Request("GET", "/v1/models");
      s.push_back(c.Out());
    }
    {
      http2::testing::Client c;
      std::string body = R"({"model":"a","stream":true,"messages":[]})";
      c.Request("POST", "/v1/chat/completions", json, &body);
      c.Ping();
      s.push_back(c.Out());
    }
    {
      http2::testing::Client c;
      std::string body(40000, 'x');  // More than one DATA frame.
      c.Request("POST", "/v1/embeddings", json, &body);
      int32_t id = c.Request("GET", "/health");
      c.Reset(id);
      c.Request("GET", "/running?x=1");
      s.push_back(c.Out());
    }
    return s;
  }();
  return seeds;
}

// Records events and answers each complete request at once.
class StreamLog : public http2::StreamVisitor {
 public:
  explicit StreamLog(http2::ServerSession** session) : session_(session) {}
  void OnStreamHead(int32_t id, http1::RequestHead head) override {
    absl::StrAppend(&log, "head ", id, " ", head.method, " ", head.target,
                    "\n");
  }
  void OnStreamBody(int32_t id, absl::string_view data) override {
    bodies[id] += data.size();
  }
  void OnStreamEnd(int32_t id) override {
    absl::StrAppend(&log, "end ", id, " ", bodies[id], "\n");
    (*session_)->SubmitHead(id, 200, {{"Content-Type", "text/plain"}},
                            std::nullopt, false);
    (*session_)->SubmitData(id, "answer");
    (*session_)->SubmitEnd(id);
  }
  void OnStreamError(int32_t id, int status, const std::string&) override {
    absl::StrAppend(&log, "error ", id, " ", status, "\n");
    (*session_)->SubmitHead(id, status, {}, 0, true);
  }
  void OnStreamClose(int32_t id, uint32_t code) override {
    absl::StrAppend(&closes, id, ":", code, " ");
  }
  void OnStreamWritable(int32_t) override {}
  std::string log, closes;
  std::map<int32_t, size_t> bodies;

 private:
  http2::ServerSession** session_;
};

std::string RunSession(const std::string& input, std::mt19937* rng) {
  http2::ServerSession* session = nullptr;
  StreamLog log(&session);
  http2::ServerSession::Options options;
  options.max_body_bytes = 1 << 20;
  http2::ServerSession s(&log, options);
  session = &s;
  std::vector<std::string> pieces =
      rng != nullptr ? Pieces(input, *rng) : std::vector<std::string>{input};
  std::string out;
  for (const std::string& p : pieces) {
    if (!s.Feed(p)) break;
    out.clear();
    s.Produce(&out, rng != nullptr ? 1 + (*rng)() % 70000 : SIZE_MAX);
  }
  out.clear();
  s.Produce(&out, SIZE_MAX);
  return log.log;
}

TEST(WireFuzzTest, Http2SessionSplitInvariantAndNeverCrashes) {
  std::mt19937 rng(kSeed);
  for (int round = 0; round < kRounds; ++round) {
    const std::string& seed = Http2Seeds()[round % Http2Seeds().size()];
    // Mutations past the 24-byte preface reach the frame parser.
    std::string input = seed;
    if (round % 3 != 0) {
      input = seed.substr(0, 24) + Mutate(seed.substr(24), rng);
    }
    std::string whole = RunSession(input, nullptr);
    std::string split = RunSession(input, &rng);
    if (round % 3 == 0) {
      EXPECT_EQ(whole, split);
      EXPECT_NE(whole.find("end"), std::string::npos) << whole;
    }
  }
}

}  // namespace
}  // namespace modelplane::proxy
