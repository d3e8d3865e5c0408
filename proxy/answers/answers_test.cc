#include <memory>
#include <string>
#include <vector>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/answers/activity.h"
#include "proxy/answers/admission.h"
#include "proxy/answers/answer.h"
#include "proxy/answers/cors.h"
#include "proxy/answers/models.h"
#include "proxy/answers/profiles.h"
#include "re2/re2.h"

namespace modelplane::proxy::answers {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// The models, selector, peer and profile every case reads, into `state`.
void Fill(router::RoutingState* state, bool aliases) {
  std::vector<v1::Model> models(3);
  models[0].set_id("b");
  models[0].set_state(v1::MODEL_STATE_READY);
  models[0].add_aliases("b-alias");
  models[1].set_id("a");
  models[1].set_state(v1::MODEL_STATE_FAILED);
  models[2].set_id("hidden");
  models[2].set_unlisted(true);
  models[2].set_state(v1::MODEL_STATE_STARTING);
  v1::DataPlaneSettings s;
  s.set_include_aliases_in_list(aliases);
  v1::Peer* p = s.add_peers();
  p->set_id("remote");
  p->set_proxy("http://127.0.0.1:9");
  p->add_models("gpt");
  v1::Selector* sel = s.add_selectors();
  sel->set_id("any");
  sel->set_strategy("pin");
  sel->add_targets("b");
  v1::Profile* prof = s.add_profiles();
  prof->set_name("fast");
  (*prof->mutable_pins())["a"] = "b";
  (*prof->mutable_pins())["remote/gpt"] = "";
  // Two nodes: n2 has b too, starting there.
  v1::Model b2;
  b2.set_id("b");
  b2.set_state(v1::MODEL_STATE_STARTING);
  b2.add_argv("/usr/bin/llama-server");
  b2.add_argv("--port");
  b2.add_argv("5800");
  b2.add_argv("it's");
  b2.set_upstream_url("http://127.0.0.1:5800");
  b2.mutable_ttl()->set_seconds(300);
  state->Update(
      router::RouteTable::Merge({{"n1", router::RouteTable::Build(models)},
                                 {"n2", router::RouteTable::Build({b2})}}),
      router::Settings::From(s));
}

std::shared_ptr<const router::Snapshot> Snapshot(bool aliases,
                                                 const char* active) {
  router::RoutingState state;
  Fill(&state, aliases);
  if (active != nullptr) state.SetActiveProfile(active);
  return state.Current();
}

std::vector<std::string> Ids(const std::string& list) {
  std::vector<std::string> ids;
  for (size_t at = list.find(R"("id":")"); at != std::string::npos;
       at = list.find(R"("id":")", at + 1)) {
    size_t from = at + 6;
    ids.push_back(list.substr(from, list.find('"', from) - from));
  }
  return ids;
}

TEST(ModelListTest, ListsModelsSelectorsAndPeersSortedWithoutUnlisted) {
  std::string list = ModelList(*Snapshot(false, nullptr));
  EXPECT_EQ(Ids(list),
            (std::vector<std::string>{"a", "any", "b", "remote/gpt"}));
  EXPECT_THAT(list, HasSubstr(R"("id":"a","object":"model")"));
  // A failed model says so; a selector is loaded while a target is.
  EXPECT_THAT(list, HasSubstr(R"("status":{"value":"failed"})"));
  EXPECT_THAT(list, HasSubstr(R"("id":"any","object":"model","owned_by":)"
                              R"("modelplane","name":"any")"));
  EXPECT_THAT(list, HasSubstr(R"("peer":"remote")"));
  // Each model once, with the nodes that have it.
  EXPECT_THAT(list,
              HasSubstr(R"("meta":{"llamaswap":{},"nodes":["n1","n2"]})"));
  EXPECT_THAT(list, HasSubstr(R"("meta":{"llamaswap":{},"nodes":["n1"]})"));
  // includeAliasesInList: each alias an entry.
  EXPECT_EQ(
      Ids(ModelList(*Snapshot(true, nullptr))),
      (std::vector<std::string>{"a", "any", "b", "b-alias", "remote/gpt"}));
  // The active profile: a pinned name is an entry to what it becomes, a
  // disabled one is gone.
  std::string pinned = ModelList(*Snapshot(false, "fast"));
  EXPECT_EQ(Ids(pinned), (std::vector<std::string>{"a", "any", "b"}));
  EXPECT_THAT(pinned, HasSubstr(R"("name":"b","profile":"fast")"));
}

// llama-swap's capabilities, as its /v1/models renders them.
TEST(ModelListTest, CapabilitiesAreOpenRouterFields) {
  v1::Model m;
  m.set_id("vl");
  v1::Capabilities* c = m.mutable_capabilities();
  c->add_input_modalities("text");
  c->add_input_modalities("image");
  c->add_output_modalities("text");
  c->set_tools(true);
  c->set_context(8192);
  (*m.mutable_metadata()->mutable_fields())["context_length"].set_number_value(
      1);
  (*m.mutable_metadata()->mutable_fields())["family"].set_string_value("qwen");
  router::RoutingState state;
  state.Update(router::RouteTable::Build({m}),
               std::make_shared<router::Settings>());
  std::string list = ModelList(*state.Current(), 1700000000);
  EXPECT_THAT(
      list,
      HasSubstr(
          R"("architecture":{"input_modalities":["text","image"],)"
          R"("output_modalities":["text"],"modality":"text+image->text"},)"
          R"("capabilities":{"function_calling":true,"vision":true},)"
          R"("supported_parameters":["tools","tool_choice"],)"
          R"("context_length":8192,)"
          R"("meta":{"llamaswap":{"family":"qwen"},"n_ctx":8192,)"));
  EXPECT_THAT(list, HasSubstr(R"("created":1700000000,)"));
}

TEST(ModelListTest, RunningListsWhatStartsRunsOrStops) {
  // llama-swap's fields (cmd, proxy, ttl, name, description), and the node.
  EXPECT_EQ(RunningList(*Snapshot(false, nullptr)),
            R"({"running":[{"model":"b","node":"n1","state":"ready","cmd":"",)"
            R"("proxy":"","ttl":0,"name":"","description":""},)"
            R"({"model":"b","node":"n2","state":"starting",)"
            R"("cmd":"/usr/bin/llama-server --port 5800 'it'\\''s'",)"
            R"("proxy":"http://127.0.0.1:5800","ttl":300,"name":"",)"
            R"("description":""},)"
            R"({"model":"hidden","node":"n1","state":"starting","cmd":"",)"
            R"("proxy":"","ttl":0,"name":"","description":""}]})");
}

TEST(ActivityTest, TheRingKeepsTheLastEntriesOldestFirst) {
  ActivityRing ring;
  auto add = [&ring](uint64_t id, size_t keep) {
    ActivityEntry e;
    e.id = id;
    ring.Add(e, keep);
  };
  for (uint64_t i = 1; i <= kActivityDefault + 5; ++i) add(i, kActivityDefault);
  std::vector<ActivityEntry> got = ring.Copy();
  ASSERT_EQ(got.size(), kActivityDefault);
  EXPECT_EQ(got.front().id, 6u);
  EXPECT_EQ(got.back().id, kActivityDefault + 5);
  // metricsMaxInMemory lowered by a reload: the oldest go at once.
  add(2000, 3);
  got = ring.Copy();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].id, kActivityDefault + 4);
  EXPECT_EQ(got[2].id, 2000u);
  // Raised again: the ring grows from there, order kept.
  add(2001, 5);
  add(2002, 5);
  add(2003, 5);
  got = ring.Copy();
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0].id, kActivityDefault + 5);
  EXPECT_EQ(got[4].id, 2003u);
}

TEST(ActivityTest, PagesNewestFirstFilteredByModelAndStatus) {
  std::vector<ActivityEntry> all;
  for (uint64_t i = 1; i <= 6; ++i) {
    ActivityEntry e;
    e.id = i;
    e.unix_ms = 1700000000000 + static_cast<int64_t>(i);
    e.model = i % 2 == 0 ? "a" : "b";
    e.node = "n1";
    e.path = "/v1/chat/completions";
    e.status = i == 6 ? 502 : 200;
    e.output_tokens = 10;
    e.tokens_per_second = 20;
    e.duration_ms = 500;
    all.push_back(e);
  }
  std::string page = ActivityPage(all, "", 0, 0, 4);
  EXPECT_THAT(page, HasSubstr(R"({"activity":[{"id":6,)"));
  EXPECT_THAT(page, HasSubstr(R"("next_before":3})"));
  EXPECT_THAT(page, HasSubstr(R"("timestamp":"2023-11-14T22:13:20.006Z")"));
  EXPECT_THAT(page, HasSubstr(R"("tokens_per_second":20.000)"));
  EXPECT_THAT(page, HasSubstr(R"("input_tokens":null)"));
  // The next page, from before the last id seen.
  EXPECT_EQ(ActivityPage(all, "", 0, 3, 4),
            ActivityPage({all[0], all[1]}, "", 0, 0, 4));
  std::string a = ActivityPage(all, "a", 200, 0, 10);
  EXPECT_THAT(a, HasSubstr(R"({"activity":[{"id":4,)"));
  EXPECT_THAT(a, Not(HasSubstr(R"("id":6)")));  // 502.
  EXPECT_THAT(a, Not(HasSubstr(R"("model":"b")")));
  EXPECT_THAT(a, HasSubstr(R"("next_before":null})"));
  // Only the newest `keep` of all the workers' entries.
  std::string kept = ActivityPage(all, "", 0, 0, 10, 2);
  EXPECT_THAT(kept, HasSubstr(R"({"activity":[{"id":6,)"));
  EXPECT_THAT(kept, HasSubstr(R"("id":5,)"));
  EXPECT_THAT(kept, Not(HasSubstr(R"("id":4,)")));
}

TEST(ProfilesTest, ListAndTheActiveName) {
  EXPECT_EQ(ProfileList(*Snapshot(false, nullptr)),
            R"({"active":null,"profiles":[{"name":"fast","description":"",)"
            R"("pins":{"a":"b","remote/gpt":null}}]})");
  EXPECT_THAT(ProfileList(*Snapshot(false, "fast")),
              HasSubstr(R"({"active":"fast")"));
  EXPECT_EQ(*ActiveProfileName(R"({"name":"fast"})"), "fast");
  EXPECT_EQ(*ActiveProfileName(R"({"name":null})"), "");
  for (const char* bad : {"", "[]", R"({"name":1})", R"({"nom":"x"})"}) {
    EXPECT_EQ(ActiveProfileName(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(AdmissionTest, KeysInEveryFormLlamaSwapTakesThemAndNeverForwarded) {
  absl::flat_hash_set<std::string> keys = {Sha256Hex("secret")};
  struct Case {
    http1::Headers headers;
    bool ok;
  } cases[] = {
      {{{"Authorization", "Bearer secret"}}, true},
      {{{"authorization", "bearer   secret"}}, true},
      {{{"Authorization", "Basic dTpzZWNyZXQ="}}, true},  // u:secret
      {{{"x-api-key", "secret"}}, true},
      {{{"Authorization", "Bearer wrong"}}, false},
      {{{"Proxy-Authorization", "Bearer secret"}}, false},
      {{}, false},
  };
  for (Case& c : cases) {
    http1::Headers h = c.headers;
    h.emplace_back("Other", "kept");
    EXPECT_EQ(Authorized(keys, &h), c.ok);
    if (c.ok) {  // The key headers are gone; the rest stays.
      EXPECT_EQ(h.size(), 1u);
      EXPECT_EQ(h[0].first, "Other");
    }
  }
  http1::Headers none;
  EXPECT_TRUE(Authorized({}, &none));  // No keys: everyone.
}

TEST(AdmissionTest, StateChangesRefuseOtherSitesAndRebinding) {
  EXPECT_TRUE(MayChangeState({{"Host", "127.0.0.1:8080"}}, true, false).ok());
  EXPECT_TRUE(MayChangeState({{"Host", "localhost:8080"},
                              {"Origin", "http://localhost:8080"}},
                             true, false)
                  .ok());
  absl::Status cross = MayChangeState(
      {{"Host", "127.0.0.1:8080"}, {"Origin", "http://evil.example"}}, false,
      true);
  EXPECT_EQ(cross.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(cross.message()), HasSubstr("another site"));
  // A rebinding page's Host is its own name: refused on a loopback proxy
  // without keys, taken with keys or beyond loopback.
  EXPECT_EQ(MayChangeState({{"Host", "evil.example:8080"}}, true, false).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(MayChangeState({{"Host", "evil.example:8080"}}, true, true).ok());
  EXPECT_TRUE(
      MayChangeState({{"Host", "evil.example:8080"}}, false, false).ok());
  EXPECT_TRUE(MayChangeState({{"Host", "[::1]:8080"}}, true, false).ok());
}

TEST(CorsTest, PreflightEchoesOnlyTokenCharacters) {
  http1::Headers h = PreflightHeaders(
      {{"Access-Control-Request-Headers", "X-Custom, content-type\r\nEvil"}},
      false);
  EXPECT_EQ(http1::FindHeader(h, "access-control-allow-headers")->find('\r'),
            std::string::npos);
  EXPECT_EQ(*http1::FindHeader(h, "access-control-allow-origin"), "*");
  h = PreflightHeaders({}, true);
  EXPECT_EQ(*http1::FindHeader(h, "access-control-allow-headers"),
            "Content-Type, Authorization, Accept, X-Requested-With, "
            "X-Api-Key");
  EXPECT_EQ(http1::FindHeader(h, "access-control-allow-origin"), nullptr);
}

// The handlers through a recording Responder: what they answer, at once
// or later (Later() keeps the deferred work until the test runs it, as the
// exchange's loop would).
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
  std::shared_ptr<StreamOut> OpenStream(StreamSpec) override {
    ADD_FAILURE() << "no handler here streams";
    return nullptr;
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
};

http1::RequestHead Head(const char* method, const char* target,
                        http1::Headers headers = {{"host", "127.0.0.1"}}) {
  http1::RequestHead h;
  h.method = method;
  h.target = target;
  h.headers = std::move(headers);
  return h;
}

TEST(HandlersTest, HealthModelsRunningAndProfilesAnswerAtOnce) {
  auto snap = Snapshot(false, nullptr);
  http1::RequestHead head = Head("GET", "/v1/models");
  AnswerRequest q{*snap, head, ""};
  Recorder r;
  Health(&r);
  Models(q, &r);
  Running(q, &r);
  Profiles(q, &r);
  ASSERT_EQ(r.answers.size(), 4u);
  EXPECT_EQ(r.answers[0].status, 200);
  EXPECT_EQ(r.answers[0].body, "OK");
  // Each entry's `created` is the time of the answer.
  std::string body = r.answers[1].body;
  RE2::GlobalReplace(&body, R"("created":\d+)", R"("created":0)");
  EXPECT_EQ(body, ModelList(*snap));
  EXPECT_THAT(r.answers[1].body, Not(HasSubstr(R"("created":0)")));
  EXPECT_EQ(r.answers[2].body, RunningList(*snap));
  EXPECT_EQ(r.answers[3].body, ProfileList(*snap));
  EXPECT_TRUE(r.pending.empty());
}

TEST(HandlersTest, SetProfileSwitchesAndShowsIt) {
  auto snap = Snapshot(false, nullptr);
  router::RoutingState state;
  Fill(&state, false);
  http1::RequestHead head = Head("PUT", "/api/profiles/active");
  Recorder r;
  SetProfile({*snap, head, R"({"name":"nope"})"}, &state, &r);
  SetProfile({*snap, head, R"({"x":1})"}, &state, &r);
  SetProfile({*snap, head, R"({"name":"fast"})"}, &state, &r);
  ASSERT_EQ(r.answers.size(), 3u);
  EXPECT_EQ(r.answers[0].status, 404);
  EXPECT_EQ(r.answers[1].status, 400);
  EXPECT_EQ(r.answers[2].status, 200);
  EXPECT_THAT(r.answers[2].body, HasSubstr(R"("active":"fast")"));
  ASSERT_NE(state.Current()->active_profile(), nullptr);
  // From another site: refused before anything changes.
  http1::RequestHead cross =
      Head("PUT", "/api/profiles/active",
           {{"host", "127.0.0.1:8080"}, {"origin", "http://evil.example"}});
  SetProfile({*snap, cross, R"({"name":null})"}, &state, &r);
  EXPECT_EQ(r.answers.back().status, 403);
  EXPECT_NE(state.Current()->active_profile(), nullptr);
}

TEST(HandlersTest, UnloadAnswersOnceTheManagerHas) {
  auto snap = Snapshot(false, nullptr);
  http1::RequestHead head = Head("POST", "/unload");
  AnswerRequest q{*snap, head, ""};
  Recorder r;
  Unload(q, "b", nullptr, &r);  // No manager link.
  EXPECT_EQ(r.answers.back().status, 503);
  std::vector<std::string> asked;
  std::function<void(absl::StatusOr<std::vector<std::string>>)> done;
  UnloadFn unload = [&](const std::string& model, auto d) {
    asked.push_back(model);
    done = std::move(d);
  };
  Unload(q, "nope", unload, &r);
  EXPECT_EQ(r.answers.back().status, 404);
  Unload(q, "b-alias", unload, &r);  // An alias stops its model.
  ASSERT_EQ(asked, std::vector<std::string>{"b"});
  size_t before = r.answers.size();
  done(std::vector<std::string>{"b"});  // The manager answers (any thread)...
  EXPECT_EQ(r.answers.size(), before);  // ... and the loop sends it.
  r.RunLater();
  EXPECT_EQ(r.answers.back().status, 200);
  EXPECT_EQ(r.answers.back().body, R"({"status":"ok","stopped":["b"]})");
  Unload(q, "", unload, &r);  // Every model.
  EXPECT_EQ(asked.back(), "");
  done(absl::UnavailableError("manager gone"));
  r.RunLater();
  EXPECT_EQ(r.answers.back().status, 503);
  EXPECT_EQ(r.answers.back().body, "manager gone");
}

TEST(HandlersTest, MetricsAreRenderedThenAnsweredOnTheLoop) {
  Recorder r;
  Metrics(nullptr, &r);
  EXPECT_EQ(r.answers.back().status, 503);
  Metrics([](std::function<void(std::string)> done) { done("m 1\n"); }, &r);
  EXPECT_EQ(r.answers.size(), 1u);
  r.RunLater();
  ASSERT_EQ(r.answers.size(), 2u);
  EXPECT_EQ(r.answers[1].status, 200);
  EXPECT_EQ(r.answers[1].body, "m 1\n");
  EXPECT_THAT(r.answers[1].type, HasSubstr("text/plain; version=0.0.4"));
}

TEST(HandlersTest, PreflightIs204WithItsHeaders) {
  auto snap = Snapshot(false, nullptr);
  http1::RequestHead head =
      Head("OPTIONS", "/v1/chat/completions",
           {{"access-control-request-headers", "x-a, x-b"}});
  Recorder r;
  Preflight({*snap, head, "", /*has_origin=*/false}, &r);
  ASSERT_EQ(r.answers.size(), 1u);
  EXPECT_EQ(r.answers[0].status, 204);
  EXPECT_EQ(r.answers[0].extra, PreflightHeaders(head.headers, false));
}

}  // namespace
}  // namespace modelplane::proxy::answers
