// The streaming answers (the event hub and /api/events, the logs), the
// web UI's files, /api/version and the UI's Load, through a recording
// Responder whose streams keep what is written.
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/answers/activity.h"
#include "proxy/answers/answer.h"
#include "proxy/answers/event_hub.h"
#include "proxy/answers/models.h"
#include "ui/assets.h"

namespace modelplane::proxy::answers {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class Recorded : public StreamOut {
 public:
  void Write(std::string data) override {
    if (!ended) text += data;
  }
  void End() override { ended = true; }
  bool closed() const override { return ended; }
  std::string text;
  bool ended = false;
};

class Recorder : public Responder {
 public:
  void Respond(int status, const std::string& type, const std::string& body,
               const http1::Headers& extra) override {
    answers.push_back({status, type, body, extra});
  }
  void RespondError(int status, const std::string& message) override {
    answers.push_back({status, "error", message, {}});
  }
  Deferred Later() override {
    return [this](std::function<void(Responder*)> fn) {
      pending.push_back(std::move(fn));
    };
  }
  std::shared_ptr<StreamOut> OpenStream(StreamSpec spec) override {
    specs.push_back(std::move(spec));
    streams.push_back(std::make_shared<Recorded>());
    return streams.back();
  }
  void RunLater() {
    std::vector<std::function<void(Responder*)>> run;
    run.swap(pending);
    for (auto& fn : run) fn(this);
  }
  struct Answer {
    int status;
    std::string type, body;
    http1::Headers extra;
  };
  std::vector<Answer> answers;
  std::vector<std::function<void(Responder*)>> pending;
  std::vector<StreamSpec> specs;
  std::vector<std::shared_ptr<Recorded>> streams;
};

std::shared_ptr<const router::Snapshot> Models() {
  router::RoutingState state;
  std::vector<v1::Model> models(2);
  models[0].set_id("qwen");
  models[0].set_state(v1::MODEL_STATE_READY);
  models[0].add_aliases("q");
  models[0].set_pid(4242);
  models[0].set_group("gpu");
  models[1].set_id("broken");
  models[1].set_state(v1::MODEL_STATE_FAILED);
  v1::Failure* f = models[1].mutable_failure();
  f->set_reason(v1::FAILURE_REASON_EXITED_DURING_START);
  f->set_message("exited with status 1 during start");
  f->add_last_lines("CUDA out of memory");
  state.Update(
      router::RouteTable::Merge({{"n1", router::RouteTable::Build(models)}}),
      std::make_shared<router::Settings>());
  return state.Current();
}

http1::RequestHead Head(const char* method, const char* target,
                        http1::Headers headers = {}) {
  http1::RequestHead h;
  h.method = method;
  h.target = target;
  h.headers = std::move(headers);
  return h;
}

TEST(EventHubTest, FramesAreLlamaSwapEnvelopes) {
  EXPECT_EQ(EventHub::Frame("modelStatus", R"([{"id":"a"}])"),
            "event: message\ndata: "
            R"({"type":"modelStatus","data":"[{\"id\":\"a\"}]"})"
            "\n\n");
}

TEST(EventHubTest, AReaderGetsTheStateThenEveryChangeInOrder) {
  EventHub hub(64);
  hub.AddLog("proxy", "line one\n");
  hub.SetModels("[1]");
  hub.SetInFlight(R"({"total":0})");
  auto a = std::make_shared<Recorded>();
  uint64_t id = hub.Subscribe(a);
  EXPECT_EQ(hub.readers(), 1u);
  std::string state = a->text;
  EXPECT_THAT(state,
              StartsWith(EventHub::Frame(
                  "logData", R"({"source":"proxy","data":"line one\n"})")));
  EXPECT_LT(state.find("line one"), state.find("modelStatus"));
  EXPECT_LT(state.find("modelStatus"), state.find("inflight"));
  a->text.clear();
  hub.SetModels("[1]");  // Unchanged: not sent.
  hub.SetInFlight(R"({"total":0})");
  EXPECT_EQ(a->text, "");
  hub.SetModels("[2]");
  hub.AddActivity(R"({"id":7})");
  hub.AddLog("proxy", "line two\n");
  EXPECT_EQ(a->text, EventHub::Frame("modelStatus", "[2]") +
                         EventHub::Frame("activity", R"({"id":7})") +
                         EventHub::Frame("logData", R"({"source":"proxy",)"
                                                    R"("data":"line two\n"})"));
  a->text.clear();
  hub.KeepAlive();
  EXPECT_EQ(a->text, ": keepalive\n\n");
  hub.Unsubscribe(id);
  EXPECT_EQ(hub.readers(), 0u);
  a->text.clear();
  hub.SetModels("[3]");
  EXPECT_EQ(a->text, "");
}

TEST(EventHubTest, LogHistoryKeepsTheNewestWholeLines) {
  EventHub hub(20);
  hub.AddLog("proxy", "0123456789\n");
  hub.AddLog("proxy", "abcdefghij\n");
  hub.AddLog("proxy", "ABCDEFGHIJ\n");
  EXPECT_EQ(hub.LogHistory(), "ABCDEFGHIJ\n");
  auto with = std::make_shared<Recorded>();
  auto without = std::make_shared<Recorded>();
  hub.SubscribeLog(with, true);
  hub.SubscribeLog(without, false);
  hub.AddLog("proxy", "next\n");
  EXPECT_EQ(with->text, "ABCDEFGHIJ\nnext\n");
  EXPECT_EQ(without->text, "next\n");
}

TEST(EventHubTest, EndedReadersAreForgottenAndEndAllEndsTheRest) {
  EventHub hub;
  auto a = std::make_shared<Recorded>();
  auto b = std::make_shared<Recorded>();
  hub.Subscribe(a);
  hub.Subscribe(b);
  a->End();  // Its client left.
  hub.SetModels("[9]");
  EXPECT_EQ(hub.readers(), 1u);
  hub.EndAll();
  EXPECT_TRUE(b->ended);
  EXPECT_EQ(hub.readers(), 0u);
}

TEST(EventsTest, OpensAnEventStreamThatCutsASlowReader) {
  EventHub hub;
  hub.SetModels("[]");
  Recorder r;
  Events(nullptr, &r);
  EXPECT_EQ(r.answers.back().status, 503);
  Events(&hub, &r);
  ASSERT_EQ(r.specs.size(), 1u);
  EXPECT_EQ(r.specs[0].content_type, "text/event-stream");
  EXPECT_EQ(r.specs[0].slow, StreamSpec::Slow::kCut);
  EXPECT_THAT(r.specs[0].marker, HasSubstr(R"("type":"dropped")"));
  EXPECT_THAT(r.streams[0]->text, HasSubstr(R"("type":"modelStatus")"));
  EXPECT_EQ(hub.readers(), 1u);
  r.specs[0].on_close();  // The client left: the hub forgets it.
  EXPECT_EQ(hub.readers(), 0u);
}

TEST(ModelStatusTest, SaysWhatEachNodeHas) {
  std::string json = ModelStatusJson(*Models());
  EXPECT_THAT(json, StartsWith(R"([{"id":"broken","name":"","description":"")"
                               R"(,"state":"failed","unlisted":false)"));
  EXPECT_THAT(json, HasSubstr(R"("failure":{"reason":"exited_during_start",)"
                              R"("message":"exited with status 1 during )"
                              R"(start","at_ms":null,"last_lines":["CUDA )"
                              R"(out of memory"]})"));
  EXPECT_THAT(json, HasSubstr(R"({"id":"qwen","name":"","description":"",)"
                              R"("state":"ready","unlisted":false,)"
                              R"("aliases":["q"])"));
  EXPECT_THAT(json, HasSubstr(R"("nodes":[{"node":"n1","state":"ready",)"
                              R"("group":"gpu","pid":4242,)"));
}

TEST(LogsTest, TheProxysLogHistoryThenLive) {
  auto snap = Models();
  EventHub hub;
  hub.AddLog("proxy", "started\n");
  Recorder r;
  http1::RequestHead logs = Head("GET", "/logs");
  Logs({*snap, logs, ""}, "", false, &hub, nullptr, &r);
  EXPECT_EQ(r.answers.back().status, 200);
  EXPECT_EQ(r.answers.back().body, "started\n");
  http1::RequestHead stream = Head("GET", "/logs/stream/proxy");
  Logs({*snap, stream, ""}, "proxy", true, &hub, nullptr, &r);
  http1::RequestHead fresh = Head("GET", "/logs/stream?no-history");
  Logs({*snap, fresh, ""}, "", true, &hub, nullptr, &r);
  ASSERT_EQ(r.streams.size(), 2u);
  EXPECT_EQ(r.specs[0].slow, StreamSpec::Slow::kSkip);
  EXPECT_EQ(r.specs[0].skipped(42), "\n[42 bytes dropped]\n");
  hub.AddLog("proxy", "more\n");
  EXPECT_EQ(r.streams[0]->text, "started\nmore\n");
  EXPECT_EQ(r.streams[1]->text, "more\n");
}

TEST(LogsTest, AModelsOutputComesFromItsManager) {
  auto snap = Models();
  EventHub hub;
  Recorder r;
  http1::RequestHead head = Head("GET", "/logs/stream/q?node=n1");
  Logs({*snap, head, ""}, "nope", true, &hub, nullptr, &r);
  EXPECT_EQ(r.answers.back().status, 404);
  EXPECT_THAT(r.answers.back().body, HasSubstr("no model 'nope'"));
  Logs({*snap, head, ""}, "q", true, &hub, nullptr, &r);
  EXPECT_EQ(r.answers.back().status, 503);  // No manager.
  http1::RequestHead elsewhere = Head("GET", "/logs/stream/q?node=n9");
  Logs(
      {*snap, elsewhere, ""}, "q", true, &hub,
      [](auto&, auto, auto) { return std::function<void()>(); }, &r);
  EXPECT_EQ(r.answers.back().status, 404);
  EXPECT_THAT(r.answers.back().body, HasSubstr("no node 'n9'"));
  LogRequest asked;
  LogChunkFn chunk;
  std::function<void(absl::Status)> end;
  bool cancelled = false;
  LogsFn logs = [&](const LogRequest& req, LogChunkFn c, auto e) {
    asked = req;
    chunk = std::move(c);
    end = std::move(e);
    return [&cancelled] { cancelled = true; };
  };
  Logs({*snap, head, ""}, "q", true, &hub, logs, &r);
  EXPECT_EQ(asked.model, "q");
  EXPECT_EQ(asked.node, "n1");
  EXPECT_EQ(asked.history_bytes, 0xffffffffu);
  ASSERT_EQ(r.streams.size(), 1u);
  chunk("loading model\n", 0);
  chunk("ready\n", 300);  // The manager's reader fell behind.
  EXPECT_EQ(r.streams[0]->text,
            "loading model\n\n[300 bytes dropped]\nready\n");
  r.specs[0].on_close();  // The client left: the call is cancelled.
  EXPECT_TRUE(cancelled);
  end(absl::NotFoundError("the model was removed"));
  EXPECT_TRUE(r.streams[0]->ended);
}

TEST(UiTest, ServesItsFilesCompressedWithStrongETagsAndAStrictPolicy) {
  auto snap = Models();
  Recorder r;
  http1::RequestHead root = Head("GET", "/");
  Ui({*snap, root, ""}, &r);
  EXPECT_EQ(r.answers.back().status, 302);
  EXPECT_EQ(*http1::FindHeader(r.answers.back().extra, "location"), "/ui/");
  http1::RequestHead plain = Head("GET", "/ui/");
  Ui({*snap, plain, ""}, &r);
  const Recorder::Answer& index = r.answers.back();
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.type, "text/html; charset=utf-8");
  EXPECT_THAT(index.body, HasSubstr("<title>modelplane</title>"));
  EXPECT_EQ(http1::FindHeader(index.extra, "content-encoding"), nullptr);
  EXPECT_THAT(*http1::FindHeader(index.extra, "content-security-policy"),
              HasSubstr("default-src 'none'; script-src 'self'"));
  std::string etag = *http1::FindHeader(index.extra, "etag");
  http1::RequestHead br =
      Head("GET", "/ui/app.js", {{"accept-encoding", "gzip, deflate, br"}});
  Ui({*snap, br, ""}, &r);
  EXPECT_EQ(*http1::FindHeader(r.answers.back().extra, "content-encoding"),
            "br");
  std::string br_etag = *http1::FindHeader(r.answers.back().extra, "etag");
  EXPECT_THAT(br_etag, testing::EndsWith("-br\""));
  http1::RequestHead gz =
      Head("GET", "/ui/app.js", {{"accept-encoding", "gzip, br;q=0"}});
  Ui({*snap, gz, ""}, &r);
  EXPECT_EQ(*http1::FindHeader(r.answers.back().extra, "content-encoding"),
            "gzip");
  http1::RequestHead again =
      Head("GET", "/ui/app.js",
           {{"accept-encoding", "br"}, {"if-none-match", br_etag}});
  Ui({*snap, again, ""}, &r);
  EXPECT_EQ(r.answers.back().status, 304);
  http1::RequestHead stale =
      Head("GET", "/ui/", {{"if-none-match", "\"other\""}});
  Ui({*snap, stale, ""}, &r);
  EXPECT_EQ(r.answers.back().status, 200);
  EXPECT_EQ(*http1::FindHeader(r.answers.back().extra, "etag"), etag);
  // The page's routes are the page; /favicon.ico is the icon.
  http1::RequestHead route = Head("GET", "/ui/activity");
  Ui({*snap, route, ""}, &r);
  EXPECT_EQ(r.answers.back().status, 200);
  EXPECT_THAT(r.answers.back().body, HasSubstr("<title>modelplane</title>"));
  http1::RequestHead icon = Head("GET", "/favicon.ico");
  Ui({*snap, icon, ""}, &r);
  EXPECT_EQ(r.answers.back().type, "image/svg+xml");
  http1::RequestHead missing = Head("GET", "/ui/nope.js");
  Ui({*snap, missing, ""}, &r);
  EXPECT_EQ(r.answers.back().status, 404);
}

TEST(UiTest, TheUiIsSmall) {
  size_t compressed = 0;
  for (const EmbeddedFile& f : ui::Files()) {
    EXPECT_FALSE(f.brotli.empty()) << f.path;
    EXPECT_LT(f.brotli.size(), f.identity.size()) << f.path;
    compressed += f.brotli.size();
  }
  EXPECT_LT(compressed, 150u << 10);  // The issue's bound: 150 KB in all.
  EXPECT_NE(ui::FindFile("/ui/index.html"), nullptr);
}

TEST(ActivityTest, AnErrorsMessageIsTakenFromItsBody) {
  EXPECT_EQ(ErrorMessageOf(R"({"error":{"message":"model 'x' failed"}})"),
            "model 'x' failed");
  EXPECT_EQ(ErrorMessageOf(R"({"error":"busy"})"), "busy");
  EXPECT_EQ(ErrorMessageOf(R"({"message":"no"})"), "no");
  EXPECT_EQ(ErrorMessageOf("upstream said no"), "upstream said no");
  EXPECT_EQ(ErrorMessageOf(std::string(2000, 'x')).size(), 512u);
  ActivityEntry e;
  e.id = 3;
  e.status = 503;
  e.error = "no node";
  e.cached_tokens = 12;
  std::string json = ActivityJson(e);
  EXPECT_THAT(json, HasSubstr(R"("cached_tokens":12,"draft_tokens":null,)"
                              R"("draft_accepted_tokens":null,)"
                              R"("error":"no node")"));
}

TEST(VersionTest, SaysTheVersionAndTheCommit) {
  Recorder r;
  Version(&r);
  EXPECT_THAT(r.answers.back().body, StartsWith(R"({"version":")"));
  EXPECT_THAT(r.answers.back().body, HasSubstr(R"("commit":")"));
}

TEST(LoadTest, StartsAKnownModelAndSaysWhere) {
  auto snap = Models();
  Recorder r;
  http1::RequestHead head =
      Head("POST", "/api/models/load/q", {{"host", "127.0.0.1"}});
  AnswerRequest q{*snap, head, ""};
  Load(q, "q", nullptr, &r);
  EXPECT_EQ(r.answers.back().status, 503);
  Load(
      q, "nope", [](auto, auto, auto) {}, &r);
  EXPECT_EQ(r.answers.back().status, 404);
  std::string asked;
  Load(
      q, "q",
      [&asked](const std::string& model, const std::string&, auto done) {
        asked = model;
        done(std::string("n1"));
      },
      &r);
  EXPECT_EQ(asked, "qwen");  // The alias's model.
  r.RunLater();
  EXPECT_EQ(r.answers.back().status, 202);
  EXPECT_EQ(r.answers.back().body,
            R"({"model":"qwen","node":"n1","state":"starting"})");
}

}  // namespace
}  // namespace modelplane::proxy::answers
