// ServerSession back to back with an nghttp2 client session: no sockets,
// bytes pumped between the two until neither has anything to say.
#include "proxy/http2/server_session.h"

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/http2/test_client.h"

namespace modelplane::proxy::http2 {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

using testing::Client;
using testing::ClientResponse;

// Records what the session reports; `on_end` answers.
class Visitor : public StreamVisitor {
 public:
  void OnStreamHead(int32_t id, http1::RequestHead head) override {
    heads[id] = std::move(head);
  }
  void OnStreamBody(int32_t id, absl::string_view data) override {
    bodies[id].append(data.data(), data.size());
  }
  void OnStreamEnd(int32_t id) override {
    ended.push_back(id);
    if (on_end) on_end(id);
  }
  void OnStreamError(int32_t id, int status, const std::string&) override {
    errors.emplace_back(id, status);
    if (on_error) on_error(id, status);
  }
  void OnStreamClose(int32_t id, uint32_t code) override {
    closed.emplace_back(id, code);
  }
  void OnStreamWritable(int32_t id) override { writable.push_back(id); }

  std::map<int32_t, http1::RequestHead> heads;
  std::map<int32_t, std::string> bodies;
  std::vector<int32_t> ended;
  std::vector<std::pair<int32_t, int>> errors;
  std::vector<std::pair<int32_t, uint32_t>> closed;
  std::vector<int32_t> writable;
  std::function<void(int32_t)> on_end;
  std::function<void(int32_t, int)> on_error;
};

void Pump(Client& c, ServerSession& s) {
  for (int i = 0; i < 1000; ++i) {
    std::string up = c.Out();
    if (!up.empty()) s.Feed(up);
    std::string down;
    s.Produce(&down, SIZE_MAX);
    if (!down.empty()) c.In(down);
    if (up.empty() && down.empty()) return;
  }
  FAIL() << "no quiescence";
}

TEST(ServerSessionTest, ServesARequestWithHeadersAndBody) {
  Visitor v;
  ServerSession s(&v, ServerSession::Options{});
  v.on_end = [&](int32_t id) {
    s.SubmitHead(id, 200,
                 {{"Content-Type", "text/event-stream"},
                  {"Connection", "keep-alive"},
                  {"Transfer-Encoding", "chunked"}},
                 std::nullopt, false);
    s.SubmitData(id, "data: one\n\n");
    s.SubmitData(id, "data: two\n\n");
    s.SubmitEnd(id);
  };
  Client c;
  std::string body = R"({"model":"m"})";
  int32_t id = c.Request("POST", "/v1/chat/completions?x=1",
                         {{"content-type", "application/json"},
                          {"content-length", std::to_string(body.size())}},
                         &body);
  Pump(c, s);
  ASSERT_EQ(v.heads.count(id), 1u);
  const http1::RequestHead& h = v.heads[id];
  EXPECT_EQ(h.method, "POST");
  EXPECT_EQ(h.target, "/v1/chat/completions?x=1");
  EXPECT_EQ(h.content_length, body.size());
  ASSERT_NE(http1::FindHeader(h.headers, "host"), nullptr);
  EXPECT_EQ(*http1::FindHeader(h.headers, "host"), "proxy.test");
  EXPECT_EQ(v.bodies[id], body);
  EXPECT_THAT(v.ended, ElementsAre(id));
  const ClientResponse& r = c.responses[id];
  EXPECT_EQ(r.headers.at(":status"), "200");
  EXPECT_EQ(r.headers.at("content-type"), "text/event-stream");
  EXPECT_EQ(r.headers.count("connection"), 0u);  // Hop-by-hop: not in h2.
  EXPECT_EQ(r.headers.count("transfer-encoding"), 0u);
  EXPECT_EQ(r.body, "data: one\n\ndata: two\n\n");
  EXPECT_TRUE(r.closed);
  EXPECT_EQ(r.error_code, NGHTTP2_NO_ERROR);
  EXPECT_THAT(v.closed, ElementsAre(Pair(id, NGHTTP2_NO_ERROR)));
  EXPECT_EQ(s.open_streams(), 0u);
}

TEST(ServerSessionTest, HeadOnlyAnswerWithLengthAndContinue) {
  Visitor v;
  ServerSession s(&v, ServerSession::Options{});
  Client c;
  int32_t id = c.Request("GET", "/x", {{"expect", "100-continue"}});
  std::string out = c.Out();
  s.Feed(out);
  EXPECT_TRUE(v.heads[id].expect_continue);
  s.SubmitContinue(id);
  s.SubmitHead(id, 204, {}, std::nullopt, true);
  Pump(c, s);
  EXPECT_THAT(c.responses[id].statuses, ElementsAre("100", "204"));
  EXPECT_TRUE(c.responses[id].closed);
  EXPECT_EQ(c.responses[id].body, "");
}

TEST(ServerSessionTest, SlowClientWindowHoldsBytesInTheBufferUntilConsumed) {
  Visitor v;
  ServerSession::Options o;
  o.writable_below = 1000;
  ServerSession s(&v, o);
  Client c(/*auto_window=*/false, /*window=*/4096);
  int32_t id = c.Request("GET", "/big");
  Pump(c, s);
  s.SubmitHead(id, 200, {}, std::nullopt, false);
  std::string data(100000, 'x');
  s.SubmitData(id, data);
  s.WantWritable(id);
  Pump(c, s);
  // The client's window (4 KiB) is all that went out.
  EXPECT_EQ(c.responses[id].body.size(), 4096u);
  EXPECT_EQ(s.Buffered(id), data.size() - 4096);
  EXPECT_TRUE(v.writable.empty());
  EXPECT_THAT(s.Stalled(absl::GetCurrentTimeNanos() + 10'000'000'000, 1000),
              ElementsAre(id));
  // The client reads: the window opens, the buffer drains, the stream is
  // writable again.
  while (c.responses[id].body.size() < data.size()) {
    size_t had = c.responses[id].body.size();
    c.Consume(id, 4096);
    Pump(c, s);
    ASSERT_GT(c.responses[id].body.size(), had);
  }
  EXPECT_EQ(s.Buffered(id), 0u);
  EXPECT_THAT(v.writable, ElementsAre(id));
  s.SubmitEnd(id);
  Pump(c, s);
  EXPECT_TRUE(c.responses[id].closed);
  EXPECT_EQ(c.responses[id].body, data);
}

TEST(ServerSessionTest, ClientResetClosesTheStreamWithItsCode) {
  Visitor v;
  ServerSession s(&v, ServerSession::Options{});
  Client c;
  int32_t id = c.Request("GET", "/stream");
  Pump(c, s);
  s.SubmitHead(id, 200, {}, std::nullopt, false);
  s.SubmitData(id, "first");
  Pump(c, s);
  c.Reset(id);
  Pump(c, s);
  EXPECT_THAT(v.closed, ElementsAre(Pair(id, NGHTTP2_CANCEL)));
  EXPECT_EQ(s.open_streams(), 0u);
  s.SubmitData(id, "late");  // A gone stream: ignored.
  EXPECT_EQ(s.Buffered(id), 0u);
}

TEST(ServerSessionTest, ServerResetBreaksTheResponse) {
  Visitor v;
  ServerSession s(&v, ServerSession::Options{});
  Client c;
  int32_t id = c.Request("GET", "/stream");
  Pump(c, s);
  s.SubmitHead(id, 200, {}, std::nullopt, false);
  s.SubmitData(id, "partial");
  Pump(c, s);
  s.Reset(id, NGHTTP2_INTERNAL_ERROR);
  Pump(c, s);
  EXPECT_EQ(c.responses[id].body, "partial");
  EXPECT_TRUE(c.responses[id].closed);
  EXPECT_EQ(c.responses[id].error_code, NGHTTP2_INTERNAL_ERROR);
}

TEST(ServerSessionTest, RapidResetFloodEndsTheSessionWithEnhanceYourCalm) {
  Visitor v;
  ServerSession::Options o;
  o.max_resets_per_second = 20;
  ServerSession s(&v, o);
  Client c;
  Pump(c, s);
  for (int i = 0; i < 50; ++i) {
    int32_t id = c.Request("GET", "/x");
    std::string up = c.Out();  // HEADERS, then RST_STREAM in the same write.
    c.Reset(id);
    up += c.Out();
    s.Feed(up);
  }
  std::string down;
  s.Produce(&down, SIZE_MAX);
  c.In(down);
  EXPECT_TRUE(s.calmed());
  EXPECT_EQ(c.goaway_error, NGHTTP2_ENHANCE_YOUR_CALM);
  EXPECT_TRUE(s.done());
}

TEST(ServerSessionTest, StreamsOverTheConcurrencyLimitAreRefused) {
  Visitor v;
  ServerSession::Options o;
  o.max_concurrent_streams = 2;
  ServerSession s(&v, o);
  Client c;
  // Sent before the client has seen the server's SETTINGS.
  int32_t a = c.OpenStream(), b = c.OpenStream(), third = c.OpenStream();
  Pump(c, s);
  EXPECT_EQ(v.heads.size(), 2u);
  EXPECT_EQ(v.heads.count(a) + v.heads.count(b), 2u);
  EXPECT_TRUE(c.responses[third].closed);
  EXPECT_EQ(c.responses[third].error_code, NGHTTP2_REFUSED_STREAM);
  EXPECT_EQ(s.open_streams(), 2u);
}

TEST(ServerSessionTest, OversizeBodyIs413AndTheClientIsToldToStop) {
  Visitor v;
  ServerSession::Options o;
  o.max_body_bytes = 10;
  ServerSession s(&v, o);
  v.on_error = [&](int32_t id, int status) {
    s.SubmitHead(id, status, {{"content-type", "application/json"}}, 2, false);
    s.SubmitData(id, "{}");
    s.SubmitEnd(id);
  };
  Client c;
  std::string body(100, 'b');
  int32_t id = c.Request("POST", "/v1/embeddings", {}, &body);
  Pump(c, s);
  EXPECT_THAT(v.errors, ElementsAre(Pair(id, 413)));
  EXPECT_TRUE(v.ended.empty());
  EXPECT_EQ(c.responses[id].headers.at(":status"), "413");
  EXPECT_EQ(c.responses[id].headers.at("content-length"), "2");
  EXPECT_TRUE(c.responses[id].closed);
  EXPECT_EQ(s.open_streams(), 0u);
}

TEST(ServerSessionTest, OversizeHeadersAre431) {
  Visitor v;
  ServerSession::Options o;
  o.max_header_bytes = 200;
  ServerSession s(&v, o);
  v.on_error = [&](int32_t id, int status) {
    s.SubmitHead(id, status, {}, 0, true);
  };
  Client c;
  int32_t id = c.Request("GET", "/", {{"x-big", std::string(500, 'h')}});
  Pump(c, s);
  EXPECT_THAT(v.errors, ElementsAre(Pair(id, 431)));
  EXPECT_TRUE(v.heads.empty());
  EXPECT_EQ(c.responses[id].headers.at(":status"), "431");
}

TEST(ServerSessionTest, UpgradeServesTheHttp1RequestOnStreamOne) {
  Visitor v;
  ServerSession s(&v, ServerSession::Options{});
  Client c(true, 65535, /*upgrade=*/true);
  ASSERT_TRUE(s.Upgrade(absl::WebSafeBase64Escape(c.settings_payload), false));
  s.SubmitHead(1, 200, {{"content-type", "text/plain"}}, 5, false);
  s.SubmitData(1, "hello");
  s.SubmitEnd(1);
  Pump(c, s);
  EXPECT_EQ(c.responses[1].headers.at(":status"), "200");
  EXPECT_EQ(c.responses[1].body, "hello");
  EXPECT_THAT(v.closed, ElementsAre(Pair(1, NGHTTP2_NO_ERROR)));
  // The connection goes on with new streams.
  v.on_end = [&](int32_t id) { s.SubmitHead(id, 204, {}, std::nullopt, true); };
  int32_t id = c.Request("GET", "/next");
  Pump(c, s);
  EXPECT_EQ(id, 3);
  EXPECT_EQ(c.responses[3].headers.at(":status"), "204");
}

TEST(ServerSessionTest, UpgradeWithMalformedSettingsIsRefused) {
  Visitor v;
  ServerSession s(&v, ServerSession::Options{});
  EXPECT_FALSE(s.Upgrade("!!not base64!!", false));
  EXPECT_FALSE(s.Upgrade("AAM", false));  // Not a whole setting.
}

TEST(ServerSessionTest, ShutdownLetsOpenStreamsFinishThenEnds) {
  Visitor v;
  ServerSession s(&v, ServerSession::Options{});
  Client c;
  int32_t id = c.Request("GET", "/slow");
  Pump(c, s);
  s.SubmitHead(id, 200, {}, std::nullopt, false);
  s.Shutdown();
  Pump(c, s);
  EXPECT_EQ(c.goaway_error, NGHTTP2_NO_ERROR);
  EXPECT_EQ(c.goaway_last, id);
  EXPECT_FALSE(s.done());
  s.SubmitData(id, "rest");
  s.SubmitEnd(id);
  Pump(c, s);
  EXPECT_EQ(c.responses[id].body, "rest");
  EXPECT_TRUE(c.responses[id].closed);
  EXPECT_TRUE(s.done());
}

TEST(ServerSessionTest, HttpOneBytesAreAProtocolError) {
  Visitor v;
  ServerSession s(&v, ServerSession::Options{});
  EXPECT_FALSE(s.Feed("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(s.done());
}

TEST(ServerSessionTest, ARequestThatStopsArrivingIsReportedStalled) {
  Visitor v;
  ServerSession s(&v, ServerSession::Options{});
  Client c;
  int32_t id = c.OpenStream();  // A head, then nothing.
  Pump(c, s);
  int64_t now = absl::GetCurrentTimeNanos();
  EXPECT_TRUE(s.StalledRequests(now, 1'000'000'000, 1'000'000'000).empty());
  auto stalled =
      s.StalledRequests(now + 5'000'000'000, 1'000'000'000, 1'000'000'000);
  ASSERT_EQ(stalled.size(), 1u);
  EXPECT_EQ(stalled[0].id, id);
  EXPECT_TRUE(stalled[0].head_complete);
  s.IgnoreRequest(id);  // Answered: no longer waited for.
  EXPECT_TRUE(
      s.StalledRequests(now + 5'000'000'000, 1'000'000'000, 1'000'000'000)
          .empty());
}

TEST(ServerSessionTest, RequestBodiesInFlightAreBoundedPerConnection) {
  Visitor v;
  ServerSession::Options o;
  o.max_body_bytes = 1000;  // Per request, and for all open ones together.
  ServerSession s(&v, o);
  Client c;
  std::string body(600, 'b');
  int32_t first = c.Request("POST", "/a", {}, &body);
  Pump(c, s);  // Its request is complete but the stream stays open.
  int32_t second = c.Request("POST", "/b", {}, &body);
  Pump(c, s);
  EXPECT_EQ(v.bodies[first].size(), 600u);
  EXPECT_THAT(v.errors, ElementsAre(Pair(second, 413)));
}

TEST(ServerSessionTest, CookiesAreJoinedAnd204HasNoLength) {
  Visitor v;
  ServerSession s(&v, ServerSession::Options{});
  v.on_end = [&](int32_t id) { s.SubmitHead(id, 204, {}, 0, true); };
  Client c;
  int32_t id = c.Request("GET", "/", {{"cookie", "a=1"}, {"cookie", "b=2"}});
  Pump(c, s);
  ASSERT_NE(http1::FindHeader(v.heads[id].headers, "cookie"), nullptr);
  EXPECT_EQ(*http1::FindHeader(v.heads[id].headers, "cookie"), "a=1; b=2");
  EXPECT_EQ(c.responses[id].headers.at(":status"), "204");
  EXPECT_EQ(c.responses[id].headers.count("content-length"), 0u);
}

}  // namespace
}  // namespace modelplane::proxy::http2
