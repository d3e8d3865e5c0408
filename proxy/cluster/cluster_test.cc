#include "proxy/cluster/cluster.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace modelplane::proxy::cluster {
namespace {

class FakeTransport : public lease::LeaseTransport {
 public:
  bool Connected() override { return connected; }
  void SendAcquire(const std::string&, uint64_t) override { ++acquires; }
  void SendRelease(const std::string&, uint64_t, absl::Time) override {}
  void SendCancel(const std::string&) override {}
  bool connected = true;
  int acquires = 0;
};

v1::Model M(const std::string& id, v1::ModelState state) {
  v1::Model m;
  m.set_id(id);
  m.set_state(state);
  return m;
}

std::shared_ptr<const v1::DataPlaneSettings> Keys(const std::string& hash,
                                                  bool draining = false) {
  auto s = std::make_shared<v1::DataPlaneSettings>();
  s->add_api_key_sha256(hash);
  s->set_draining(draining);
  return s;
}

class ClusterTest : public ::testing::Test {
 protected:
  ClusterTest() {
    ClusterOptions o;
    // Timers never fire here (no lease is granted).
    o.after = [](absl::Duration, std::function<void()>) {};
    o.on_settings = [this](const v1::DataPlaneSettings& s) {
      settings_seen_.push_back(s.api_key_sha256(0));
      // Told only once the workers' snapshot holds them (modelplane says
      // it listens after this; a request then must find the keys).
      const auto* keys = routing_.Current()->api_keys();
      EXPECT_TRUE(keys != nullptr && keys->count(s.api_key_sha256(0)) == 1)
          << s.api_key_sha256(0);
    };
    cluster_ = std::make_unique<Cluster>(&routing_, o);
    b_ = cluster_->AddNode("10.0.0.2:1", &tb_);
    a_ = cluster_->AddNode("10.0.0.1:1", &ta_);
  }
  void View(const std::string& node, std::vector<v1::Model> models,
            std::shared_ptr<const v1::DataPlaneSettings> settings) {
    cluster_->OnView(node, lease::ManagerLink::View{
                               router::RouteTable::Build(models), settings});
  }

  router::RoutingState routing_;
  FakeTransport ta_, tb_;
  std::vector<std::string> settings_seen_;
  std::unique_ptr<Cluster> cluster_;
  std::shared_ptr<Node> a_, b_;
};

TEST_F(ClusterTest, TheRoutesAreTheUnionAndTheSettingsTheFirstNodes) {
  View("10.0.0.2:1", {M("m", v1::MODEL_STATE_READY), M("b", {})},
       Keys("from-b"));
  // Only b has sent settings: they are in force.
  EXPECT_EQ(settings_seen_, std::vector<std::string>{"from-b"});
  View("10.0.0.1:1", {M("m", v1::MODEL_STATE_STOPPED), M("a", {})},
       Keys("from-a"));
  // a comes first by name: its settings win once it sent them.
  EXPECT_EQ(settings_seen_, (std::vector<std::string>{"from-b", "from-a"}));
  auto s = routing_.Current();
  ASSERT_NE(s->nodes(), nullptr);
  EXPECT_EQ(s->nodes()->nodes().size(), 2u);
  ASSERT_NE(s->routes().Find("m"), nullptr);
  const router::Route& m = *s->routes().Find("m");
  ASSERT_EQ(m.nodes.size(), 2u);
  EXPECT_EQ(m.nodes[0].node, "10.0.0.1:1");
  EXPECT_EQ(m.state, v1::MODEL_STATE_READY);
  EXPECT_NE(s->routes().Find("a"), nullptr);
  EXPECT_NE(s->routes().Find("b"), nullptr);
  EXPECT_TRUE(s->api_keys()->contains("from-a"));
  // A view from a node that is not a member changes nothing.
  uint64_t version = routing_.version();
  View("10.9.9.9:1", {M("x", {})}, nullptr);
  EXPECT_EQ(routing_.version(), version);
}

TEST_F(ClusterTest, PlacesWhereReadyAndNotOnALostNode) {
  View("10.0.0.1:1", {M("m", v1::MODEL_STATE_STOPPED)}, Keys("k"));
  View("10.0.0.2:1", {M("m", v1::MODEL_STATE_READY)}, Keys("k"));
  auto s = routing_.Current();
  absl::StatusOr<Placement> p =
      cluster_->PlaceKnown(*s, *s->routes().Find("m"), {});
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_NE(p->node, nullptr);
  EXPECT_EQ(p->node->name(), "10.0.0.2:1");
  EXPECT_EQ(p->reason, Reason::kReady);
  // Excluded (a request failed there): the other node, to start it (the
  // only one that could: no costs asked).
  p = cluster_->PlaceKnown(*s, *s->routes().Find("m"), {"10.0.0.2:1"});
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_NE(p->node, nullptr);
  EXPECT_EQ(p->node->name(), "10.0.0.1:1");
  EXPECT_EQ(p->reason, Reason::kCost);
  // b lost (its streams ended): its models are not running there any more,
  // and the node is not used.
  tb_.connected = false;
  cluster_->OnView("10.0.0.2:1",
                   lease::ManagerLink::View{nullptr, nullptr, false});
  s = routing_.Current();
  EXPECT_EQ(s->routes().Find("m")->state, v1::MODEL_STATE_STOPPED);
  p = cluster_->PlaceKnown(*s, *s->routes().Find("m"), {});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->node->name(), "10.0.0.1:1");
  // Both gone: Unavailable, naming the model.
  ta_.connected = false;
  p = cluster_->PlaceKnown(*s, *s->routes().Find("m"), {});
  EXPECT_TRUE(absl::IsUnavailable(p.status())) << p.status();
  EXPECT_NE(p.status().message().find("'m'"), std::string::npos);
}

TEST_F(ClusterTest, ADrainingNodeStartsNothing) {
  View("10.0.0.1:1", {M("m", {})}, Keys("k", true));
  View("10.0.0.2:1", {M("m", {})}, Keys("k"));
  EXPECT_TRUE(a_->draining());
  auto s = routing_.Current();
  absl::StatusOr<Placement> p =
      cluster_->PlaceKnown(*s, *s->routes().Find("m"), {});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->node->name(), "10.0.0.2:1");
  View("10.0.0.2:1", {M("m", {})}, Keys("k", true));
  s = routing_.Current();
  p = cluster_->PlaceKnown(*s, *s->routes().Find("m"), {});
  EXPECT_TRUE(absl::IsUnavailable(p.status())) << p.status();
  EXPECT_NE(p.status().message().find("draining"), std::string::npos);
}

TEST_F(ClusterTest, ColdWithSeveralCandidatesAsksTheCostsThenPicksAlike) {
  View("10.0.0.1:1", {M("m", {})}, Keys("k"));
  View("10.0.0.2:1", {M("m", {})}, Keys("k"));
  auto s = routing_.Current();
  absl::StatusOr<Placement> p =
      cluster_->PlaceKnown(*s, *s->routes().Find("m"), {});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->node, nullptr);  // Ask the costs.
  // Test nodes have no manager to ask: unknown costs, rendezvous decides.
  std::vector<std::function<void()>> posted;
  absl::StatusOr<Placement> got = absl::UnknownError("not yet");
  cluster_->PlaceCold(
      s, *s->routes().Find("m"), {}, false,
      [&](std::function<void()> fn) { posted.push_back(std::move(fn)); },
      [&](absl::StatusOr<Placement> r) { got = std::move(r); });
  ASSERT_EQ(posted.size(), 1u);  // Through the post, never inline.
  posted[0]();
  ASSERT_TRUE(got.ok()) << got.status();
  std::string want =
      RendezvousWeight("m", "10.0.0.1:1") > RendezvousWeight("m", "10.0.0.2:1")
          ? "10.0.0.1:1"
          : "10.0.0.2:1";
  EXPECT_EQ(got->node->name(), want);
  EXPECT_EQ(got->reason, Reason::kCost);
}

TEST_F(ClusterTest, ANodeThatLeavesIsRetiredOnlyOnceItsRequestsEnded) {
  View("10.0.0.1:1", {M("m", v1::MODEL_STATE_READY)}, Keys("k"));
  View("10.0.0.2:1", {M("m", v1::MODEL_STATE_READY)}, Keys("k"));
  // A request in flight on b (its lease granted).
  std::vector<std::function<void()>> posted;
  bool admitted = false;
  b_->broker().Admit(
      "m", 10, [&](std::function<void()> fn) { posted.push_back(fn); },
      [&](absl::StatusOr<lease::Lease> l) { admitted = l.ok(); });
  b_->broker().OnGranted("m", 7, "http://10.0.0.2:5800");
  for (auto& fn : posted) fn();
  ASSERT_TRUE(admitted);
  cluster_->SetMembers({});  // Both leave (a DNS answer without them).
  EXPECT_TRUE(cluster_->nodes()->nodes().empty());
  auto s = routing_.Current();
  EXPECT_EQ(s->nodes()->Find("10.0.0.2:1"), nullptr);  // No new request.
  EXPECT_TRUE(cluster_->Reap());                       // b is still waited for.
  EXPECT_FALSE(b_->retired());
  EXPECT_TRUE(a_->retired());  // a had nothing: retired at once.
  b_->broker().Finish("m");
  EXPECT_FALSE(cluster_->Reap());
  EXPECT_TRUE(b_->retired());
  EXPECT_FALSE(b_->usable());
}

TEST_F(ClusterTest, ANodeThatLeavesIsRetiredOnceIdle) {
  // Members by address (links to nothing: they retry quietly).
  router::RoutingState routing;
  ClusterOptions o;
  o.after = [](absl::Duration, std::function<void()>) {};
  o.link.manager.target = "unused";
  Cluster c(&routing, o);
  c.SetMembers({"127.0.0.1:1", "127.0.0.1:2"});
  std::shared_ptr<Node> leaving = c.nodes()->Share("127.0.0.1:2");
  ASSERT_NE(leaving, nullptr);
  // A request waits for a lease there.
  leaving->broker().Admit(
      "m", 1, [](std::function<void()> fn) { fn(); },
      [](absl::StatusOr<lease::Lease>) {});
  c.SetMembers({"127.0.0.1:1"});
  EXPECT_EQ(c.nodes()->nodes().size(), 1u);  // No new request goes there.
  EXPECT_EQ(routing.Current()->nodes()->Find("127.0.0.1:2"), nullptr);
  // Its request is still there (not reachable: it was answered Unavailable
  // at once, so the node is idle and goes).
  EXPECT_FALSE(c.Reap());
  EXPECT_TRUE(leaving->retired());
  EXPECT_FALSE(leaving->usable());
  c.Shutdown();
}

}  // namespace
}  // namespace modelplane::proxy::cluster
