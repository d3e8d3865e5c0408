#include "proxy/router/router.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace modelplane::proxy::router {
namespace {

using Kind = Decision::Kind;

// The routing state every case reads: models (one with an alias, ids with
// slashes, one READY), peers, selectors, a profile, ignorePaths.
class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<v1::Model> models;
    auto model = [&](const std::string& id, v1::ModelState state,
                     std::vector<std::string> aliases = {}) {
      v1::Model m;
      m.set_id(id);
      m.set_state(state);
      for (const std::string& a : aliases) m.add_aliases(a);
      models.push_back(m);
    };
    model("qwen", v1::MODEL_STATE_READY, {"qwen-alias"});
    model("llama", v1::MODEL_STATE_STOPPED);
    model("org/big", v1::MODEL_STATE_STOPPED);
    model("org/big/v2", v1::MODEL_STATE_STOPPED);
    model("warm-b", v1::MODEL_STATE_STARTING);
    v1::DataPlaneSettings s;
    s.add_api_key_sha256("k");
    s.add_upstream_ignore_paths(R"(.*\.(ico|png)$)");
    v1::Peer* p = s.add_peers();
    p->set_id("remote");
    p->set_proxy("http://127.0.0.1:9");
    p->add_models("gpt");
    p->add_models("shared");
    p->add_models("qwen");  // Local models come first.
    v1::Peer* q = s.add_peers();
    q->set_id("other");
    q->set_proxy("http://127.0.0.1:8");
    q->add_models("shared");
    auto selector = [&](const std::string& id, const std::string& strategy,
                        std::vector<std::string> targets, int spillover = 1) {
      v1::Selector* sel = s.add_selectors();
      sel->set_id(id);
      sel->set_strategy(strategy);
      for (const std::string& t : targets) sel->add_targets(t);
      sel->set_spillover(spillover);
    };
    selector("pinned", "pin", {"llama", "qwen"});
    selector("warm", "warm", {"llama", "warm-b", "qwen"});
    selector("warming", "warm", {"llama", "warm-b"});
    selector("spill", "spillover", {"llama", "qwen"}, 2);
    selector("gone", "pin", {"removed"});
    // A peer's model as a target (the config resolves it to
    // <peer>/<model>): pin and spillover only.
    selector("to-peer", "pin", {"remote/gpt", "llama"});
    selector("spill-peer", "spillover", {"llama", "remote/gpt"}, 1);
    v1::Profile* prof = s.add_profiles();
    prof->set_name("fast");
    (*prof->mutable_pins())["llama"] = "qwen";
    (*prof->mutable_pins())["big"] = "org/big";
    (*prof->mutable_pins())["off"] = "";
    state_.Update(RouteTable::Build(models), Settings::From(s));
  }

  Decision Go(const Request& r) {
    return Decide(r, *state_.Current(), [this](const std::string& m) {
      auto it = busy_.find(m);
      return it == busy_.end() ? 0 : it->second;
    });
  }
  Decision Get(absl::string_view target) { return Go({"GET", target}); }
  Decision Json(absl::string_view target, std::string model) {
    Request r{"POST", target, Body::kJson};
    r.body_model = std::move(model);
    return Go(r);
  }

  RoutingState state_;
  std::map<std::string, int> busy_;
};

// The proxy's own endpoints (docs/proxy.md, "Requests").
TEST_F(RouterTest, LocalAnswers) {
  struct Case {
    std::string method, target;
    Kind kind;
  } cases[] = {
      {"OPTIONS", "/v1/chat/completions", Kind::kPreflight},
      {"OPTIONS", "/anything", Kind::kPreflight},
      {"GET", "/health", Kind::kHealth},
      {"HEAD", "/health", Kind::kHealth},
      {"GET", "/wol-health", Kind::kHealth},
      {"GET", "/running", Kind::kRunning},
      {"HEAD", "/running", Kind::kRunning},
      {"GET", "/metrics", Kind::kMetrics},
      {"GET", "/api/metrics/activity?model=m&limit=5", Kind::kActivity},
      {"GET", "/v1/models", Kind::kModels},
      {"HEAD", "/models", Kind::kModels},
      {"GET", "/v1/models?x=1", Kind::kModels},
      {"GET", "/api/profiles", Kind::kProfiles},
      {"PUT", "/api/profiles/active", Kind::kSetProfile},
      {"POST", "/unload", Kind::kUnload},
      {"POST", "/api/models/unload", Kind::kUnload},
      {"GET", "/api/events", Kind::kEvents},
      {"GET", "/api/version", Kind::kVersion},
      {"GET", "/logs", Kind::kLogs},
      {"GET", "/logs/stream", Kind::kLogs},
      {"GET", "/logs/stream/proxy?no-history", Kind::kLogs},
      {"GET", "/logs/stream/org/model%201", Kind::kLogs},
      {"POST", "/api/models/load/qwen", Kind::kLoad},
      {"GET", "/", Kind::kUi},
      {"GET", "/ui", Kind::kUi},
      {"GET", "/ui/", Kind::kUi},
      {"HEAD", "/ui/app.js", Kind::kUi},
      {"GET", "/favicon.ico", Kind::kUi},
  };
  for (const Case& c : cases) {
    Decision d = Go({c.method, c.target});
    EXPECT_EQ(d.kind, c.kind) << c.method << " " << c.target;
    // What the exchange tells from the head alone agrees.
    absl::string_view path = absl::string_view(c.target).substr(
        0, absl::string_view(c.target).find('?'));
    EXPECT_EQ(NeedsKey(c.method, path), !d.open())
        << c.method << " " << c.target;
  }
  EXPECT_TRUE(NeedsKey("POST", "/health"));
  EXPECT_TRUE(NeedsKey("GET", "/v1/chat/completions"));
  // Health and preflights need no key; nothing else does without one.
  EXPECT_TRUE(Get("/health").open());
  EXPECT_TRUE(Go({"OPTIONS", "/x"}).open());
  EXPECT_FALSE(Get("/metrics").open());
  EXPECT_FALSE(Get("/v1/models").open());
  // POST /health is no health check.
  EXPECT_EQ(Go({"POST", "/health"}).status, 404);
}

TEST_F(RouterTest, TheWebUisRoutes) {
  // The UI's files need no key (they hold no data); its API does.
  EXPECT_TRUE(Get("/ui/index.html").open());
  EXPECT_TRUE(Get("/").open());
  EXPECT_FALSE(Get("/api/events").open());
  EXPECT_FALSE(Get("/logs/stream").open());
  EXPECT_TRUE(NeedsKey("POST", "/ui/"));
  EXPECT_EQ(Go({"POST", "/"}).status, 404);
  // The log sources, decoded: a model id may hold slashes and escapes.
  Decision d = Get("/logs/stream/org/model%201?no-history");
  EXPECT_TRUE(d.stream);
  EXPECT_EQ(d.source, "org/model 1");
  EXPECT_EQ(Get("/logs/stream").source, "");
  EXPECT_TRUE(Get("/logs/stream").stream);
  EXPECT_FALSE(Get("/logs").stream);
  EXPECT_EQ(Get("/logs/streamx").kind, Kind::kError);
  // Load takes POST and names its model.
  EXPECT_EQ(Go({"POST", "/api/models/load/org/m%2B1"}).model, "org/m+1");
  Decision get = Get("/api/models/load/qwen");
  EXPECT_EQ(get.status, 405);
  EXPECT_EQ(get.allow, "POST");
}

TEST_F(RouterTest, UnloadTakesPostAndNamesItsModel) {
  EXPECT_EQ(Go({"POST", "/unload?model=qwen"}).unload, "qwen");
  EXPECT_EQ(Go({"POST", "/unload"}).unload, "");  // Every model.
  for (const char* method : {"GET", "HEAD", "PUT", "DELETE"}) {
    Decision d = Go({method, "/unload"});
    EXPECT_EQ(d.kind, Kind::kError) << method;
    EXPECT_EQ(d.status, 405) << method;
    EXPECT_EQ(d.allow, "POST") << method;
  }
  // llama-swap's UI API: the model after the path, slashes and escapes.
  EXPECT_EQ(Go({"POST", "/api/models/unload/org/big%2Fv2"}).unload,
            "org/big/v2");
  EXPECT_EQ(Go({"POST", "/api/models/unload/"}).status, 400);
  EXPECT_EQ(Go({"GET", "/api/models/unload/qwen"}).status, 404);
  EXPECT_EQ(Go({"POST", "/api/models/unloadx"}).status, 404);
}

// The body routes: the model from the JSON body, a multipart form or an
// urlencoded form; versionless /v/ and /audioapi/ lose their prefix.
TEST_F(RouterTest, BodyRoutesForwardToTheModelTheBodyNames) {
  Decision d = Json("/v1/chat/completions", "qwen");
  ASSERT_EQ(d.kind, Kind::kModel);
  EXPECT_EQ(d.route->id, "qwen");
  EXPECT_EQ(d.model, "qwen");
  EXPECT_EQ(d.target, "/v1/chat/completions");
  EXPECT_FALSE(d.renamed);
  EXPECT_EQ(Json("/v1/chat/completions", "qwen-alias").route->id, "qwen");
  EXPECT_EQ(Json("/v/chat/completions", "qwen").target, "/chat/completions");
  EXPECT_EQ(Json("/audioapi/v1/tasks/run", "qwen").target, "/v1/tasks/run");
  EXPECT_EQ(Json("/v1/completions?x=1", "qwen").target, "/v1/completions?x=1");

  Request multipart{"POST", "/v1/audio/transcriptions", Body::kMultipart};
  multipart.body_model = "llama";
  EXPECT_EQ(Go(multipart).route->id, "llama");
  Request form{"POST", "/v1/embeddings", Body::kForm};
  form.form = "input=hi&model=llama";
  EXPECT_EQ(Go(form).route->id, "llama");
}

// Every body route in docs/proxy.md ("Requests"), one by one: a POST is
// routed by its body's model, forwarded under the path the docs say; any
// other method on it is not a body route.
TEST_F(RouterTest, EveryBodyRouteForwardsByItsBody) {
  struct Case {
    const char* path;
    const char* target;  // Forwarded as.
  } cases[] = {
      {"/v1/chat/completions", "/v1/chat/completions"},
      {"/v1/completions", "/v1/completions"},
      {"/v1/responses", "/v1/responses"},
      {"/v1/embeddings", "/v1/embeddings"},
      {"/v1/rerank", "/v1/rerank"},
      {"/v1/rerank/", "/v1/rerank/"},
      {"/v1/reranking", "/v1/reranking"},
      {"/rerank", "/rerank"},
      {"/reranking", "/reranking"},
      {"/v1/audio/speech", "/v1/audio/speech"},
      {"/v1/audio/transcriptions", "/v1/audio/transcriptions"},
      {"/v1/audio/voices", "/v1/audio/voices"},
      {"/v1/images/generations", "/v1/images/generations"},
      {"/v1/images/edits", "/v1/images/edits"},
      {"/v1/messages", "/v1/messages"},
      {"/v1/messages/count_tokens", "/v1/messages/count_tokens"},
      {"/completion", "/completion"},
      {"/infill", "/infill"},
      {"/sdapi/v1/txt2img", "/sdapi/v1/txt2img"},
      {"/sdapi/v1/img2img", "/sdapi/v1/img2img"},
      {"/audioapi/v1/tasks/run", "/v1/tasks/run"},
      {"/v/chat/completions", "/chat/completions"},
      {"/v/completions", "/completions"},
      {"/v/responses", "/responses"},
      {"/v/embeddings", "/embeddings"},
      {"/v/rerank", "/rerank"},
      {"/v/reranking", "/reranking"},
      {"/v/messages", "/messages"},
      {"/v/messages/count_tokens", "/messages/count_tokens"},
  };
  EXPECT_EQ(std::size(cases), std::size(kBodyRoutes));
  for (const Case& c : cases) {
    EXPECT_TRUE(IsBodyRoute("POST", c.path)) << c.path;
    EXPECT_FALSE(IsBodyRoute("GET", c.path)) << c.path;
    Decision d = Json(c.path, "qwen");
    ASSERT_EQ(d.kind, Kind::kModel) << c.path;
    EXPECT_EQ(d.route->id, "qwen") << c.path;
    EXPECT_EQ(d.target, c.target) << c.path;
  }
  EXPECT_FALSE(IsBodyRoute("POST", "/v1/chat/completions/"));
  EXPECT_FALSE(IsBodyRoute("POST", "/v1/models"));
}

TEST_F(RouterTest, BodyRoutesRefuseWhatTheyCannotRouteBy) {
  struct Case {
    Request request;
    int status;
    std::string message;
  };
  Request scan_error{"POST", "/v1/chat/completions", Body::kJson};
  scan_error.body_model = "qwen";  // Found, but the body is refused.
  scan_error.scan_error = "the JSON body has the key \"model\" twice";
  Request no_model{"POST", "/v1/chat/completions", Body::kJson};
  Request no_field{"POST", "/v1/audio/transcriptions", Body::kMultipart};
  Request form_twice{"POST", "/v1/embeddings", Body::kForm};
  form_twice.form = "model=a&model=b";
  Request form_none{"POST", "/v1/embeddings", Body::kForm};
  form_none.form = "input=x";
  Case cases[] = {
      {scan_error, 400, "the JSON body has the key \"model\" twice"},
      {no_model, 400, "the request body names no model"},
      {no_field, 400, "the form has no model field"},
      {form_twice, 400, "the form names the model twice"},
      {form_none, 400, "the form has no model field"},
      {Request{"GET", "/v1/whatever?model=a&model=b"}, 400,
       "the query names the model twice"},
      {Request{"GET", "/nothing/here"}, 404, "no route for GET /nothing/here"},
  };
  for (const Case& c : cases) {
    Decision d = Go(c.request);
    EXPECT_EQ(d.kind, Kind::kError) << c.message;
    EXPECT_EQ(d.status, c.status) << c.message;
    EXPECT_EQ(d.message, c.message);
  }
  Decision unknown = Json("/v1/chat/completions", "nope");
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.message, "unknown model 'nope'");
}

// Any other route: the model in `?model=`, the target as it is.
TEST_F(RouterTest, QueryModelRoutesAnyPath) {
  Decision d = Get("/props?model=llama&x=1");
  ASSERT_EQ(d.kind, Kind::kModel);
  EXPECT_EQ(d.route->id, "llama");
  EXPECT_EQ(d.target, "/props?model=llama&x=1");
  // Percent-decoded, on any method.
  d = Go({"DELETE", "/slots?model=org%2Fbig"});
  ASSERT_EQ(d.kind, Kind::kModel);
  EXPECT_EQ(d.route->id, "org/big");
  // Named twice: 400.
  EXPECT_EQ(Get("/props?model=llama&model=qwen").status, 400);
}

// /upstream/<model>/<rest>: the longest known name wins (ids contain '/'),
// a bare model name is redirected to its directory, ignorePaths never
// start a model.
TEST_F(RouterTest, UpstreamPaths) {
  Decision d = Get("/upstream/org/big/v2/props?x=1");
  ASSERT_EQ(d.kind, Kind::kModel);
  EXPECT_EQ(d.route->id, "org/big/v2");
  EXPECT_EQ(d.target, "/props?x=1");
  EXPECT_EQ(Get("/upstream/org/big/other").route->id, "org/big");
  EXPECT_EQ(Get("/upstream/org/big/other").target, "/other");

  Decision redirect = Get("/upstream/qwen");
  EXPECT_EQ(redirect.kind, Kind::kRedirect);
  EXPECT_EQ(redirect.status, 301);
  EXPECT_EQ(redirect.location, "/upstream/qwen/");
  Decision post = Go({"POST", "/upstream/qwen?a=b"});
  EXPECT_EQ(post.status, 308);
  EXPECT_EQ(post.location, "/upstream/qwen/?a=b");

  // ignorePaths: a model not READY is not started for its favicon...
  Decision icon = Get("/upstream/llama/favicon.ico");
  EXPECT_EQ(icon.status, 409);
  EXPECT_EQ(icon.message,
            "model 'llama' is not loaded, and /favicon.ico matches "
            "upstream.ignorePaths: such a request does not start a model");
  // ...a READY one serves it.
  EXPECT_EQ(Get("/upstream/qwen/favicon.ico").kind, Kind::kModel);
  // An unknown name: 404 like any unknown model.
  EXPECT_EQ(Get("/upstream/nope/x").status, 404);
  // A peer's model and a selector are names /upstream knows too.
  EXPECT_EQ(Get("/upstream/remote/gpt/x").kind, Kind::kPeer);
  EXPECT_EQ(Get("/upstream/pinned/x").route->id, "llama");
}

// Peers' models: by <peer>/<model>, or by a bare name only one peer has;
// local models first.
TEST_F(RouterTest, PeerModels) {
  Decision d = Json("/v1/chat/completions", "remote/gpt");
  ASSERT_EQ(d.kind, Kind::kPeer);
  EXPECT_EQ(d.peer->name(), "remote/gpt");
  EXPECT_EQ(d.model, "remote/gpt");
  EXPECT_EQ(Json("/v1/chat/completions", "gpt").peer->name(), "remote/gpt");
  // Two peers have it: only by its full name.
  EXPECT_EQ(Json("/v1/chat/completions", "shared").status, 404);
  EXPECT_EQ(Json("/v1/chat/completions", "other/shared").peer->peer, "other");
  // A local model wins over a peer's of the same name.
  EXPECT_EQ(Json("/v1/chat/completions", "qwen").kind, Kind::kModel);
  EXPECT_EQ(Json("/v1/chat/completions", "remote/qwen").kind, Kind::kPeer);
}

TEST_F(RouterTest, SelectorsPickATarget) {
  Decision pin = Json("/v1/chat/completions", "pinned");
  ASSERT_EQ(pin.kind, Kind::kModel);
  EXPECT_EQ(pin.route->id, "llama");
  EXPECT_EQ(pin.model, "llama");
  EXPECT_TRUE(pin.renamed);  // The upstream is told the model it went to.
  // warm: the first READY target, else a STARTING one, else the first.
  EXPECT_EQ(Json("/v1/chat/completions", "warm").route->id, "qwen");
  EXPECT_EQ(Json("/v1/chat/completions", "warming").route->id, "warm-b");
  // spillover: in order up to 2 each, then the least busy.
  EXPECT_EQ(Json("/v1/chat/completions", "spill").route->id, "llama");
  busy_["llama"] = 2;
  EXPECT_EQ(Json("/v1/chat/completions", "spill").route->id, "qwen");
  busy_["qwen"] = 5;
  EXPECT_EQ(Json("/v1/chat/completions", "spill").route->id, "llama");
  // No target in the table (a reload under way): 503.
  Decision gone = Json("/v1/chat/completions", "gone");
  EXPECT_EQ(gone.status, 503);
  EXPECT_EQ(gone.message,
            "selector 'gone' has no target model (a reload may be under way)");
}

TEST_F(RouterTest, SelectorsTargetAPeersModel) {
  Decision pin = Json("/v1/chat/completions", "to-peer");
  ASSERT_EQ(pin.kind, Kind::kPeer) << pin.message;
  EXPECT_EQ(pin.peer->name(), "remote/gpt");
  EXPECT_TRUE(pin.renamed);
  // spillover: the local model up to its limit, then the peer (whose
  // requests are not counted: it takes what spills over).
  EXPECT_EQ(Json("/v1/chat/completions", "spill-peer").route->id, "llama");
  busy_["llama"] = 1;
  Decision spilled = Json("/v1/chat/completions", "spill-peer");
  ASSERT_EQ(spilled.kind, Kind::kPeer);
  EXPECT_EQ(spilled.peer->name(), "remote/gpt");
}

TEST_F(RouterTest, TheActiveProfilePinsNames) {
  EXPECT_EQ(Json("/v1/chat/completions", "llama").route->id, "llama");
  ASSERT_TRUE(state_.SetActiveProfile("fast"));
  Decision d = Json("/v1/chat/completions", "llama");
  ASSERT_EQ(d.kind, Kind::kModel);
  EXPECT_EQ(d.route->id, "qwen");
  EXPECT_TRUE(d.renamed);
  // A pin to a name that is no model's id (pins name what a client may).
  EXPECT_EQ(Json("/v1/chat/completions", "big").route->id, "org/big");
  EXPECT_EQ(Get("/upstream/big/x").route->id, "org/big");
  // Pinned to nothing: disabled.
  Decision off = Json("/v1/chat/completions", "off");
  EXPECT_EQ(off.status, 404);
  EXPECT_EQ(off.message, "model 'off' is disabled by profile 'fast'");
  // Names it does not pin go through.
  EXPECT_FALSE(Json("/v1/chat/completions", "qwen").renamed);
}

}  // namespace
}  // namespace modelplane::proxy::router
