#include "proxy/router/route_table.h"

#include "gtest/gtest.h"

namespace modelplane::proxy::router {
namespace {

TEST(RouteTableTest, ResolvesIdsAndAliasesWithTheirSettings) {
  v1::Model a;
  a.set_id("qwen");
  a.add_aliases("gpt-4o-mini");
  a.set_concurrency_limit(4);
  a.set_use_model_name("Qwen/Qwen2.5");
  a.mutable_filters()->add_strip_params("temperature");
  (*a.mutable_filters()->mutable_set_params()->mutable_fields())["top_k"]
      .set_number_value(20);
  (*a.mutable_metadata()->mutable_fields())["ctx"].set_number_value(8192);
  v1::Model b;
  b.set_id("embed");
  b.set_unlisted(true);
  auto t = RouteTable::Build({a, b});
  ASSERT_NE(t->Find("gpt-4o-mini"), nullptr);
  const Route& r = *t->Find("gpt-4o-mini");
  EXPECT_EQ(r.id, "qwen");
  EXPECT_EQ(r.concurrency_limit, 4);
  EXPECT_EQ(r.filters.use_model_name, "Qwen/Qwen2.5");
  EXPECT_EQ(r.filters.strip_params, std::vector<std::string>{"temperature"});
  EXPECT_EQ(r.filters.set_params_json, R"({"top_k":20})");
  EXPECT_EQ(r.metadata_json, R"({"ctx":8192})");
  EXPECT_EQ(t->Find("embed")->concurrency_limit, 10);  // Default.
  EXPECT_TRUE(t->Find("embed")->unlisted);
  EXPECT_EQ(t->Find("nope"), nullptr);
  EXPECT_EQ(t->routes()[0].id, "embed");  // Sorted.
}

v1::Model ModelIn(const std::string& id, v1::ModelState state, int limit) {
  v1::Model m;
  m.set_id(id);
  m.set_state(state);
  m.set_concurrency_limit(limit);
  return m;
}

TEST(RouteTableTest, MergeIsTheUnionOfTheNodesWithEachModelOnce) {
  auto n1 = RouteTable::Build({ModelIn("a", v1::MODEL_STATE_STOPPED, 2),
                               ModelIn("b", v1::MODEL_STATE_STARTING, 3)});
  auto n2 = RouteTable::Build({ModelIn("a", v1::MODEL_STATE_READY, 7),
                               ModelIn("c", v1::MODEL_STATE_FAILED, 1)});
  auto t = RouteTable::Merge({{"10.0.0.1:50051", n1},
                              {"10.0.0.2:50051", n2},
                              {"10.0.0.3:50051", nullptr}});
  ASSERT_EQ(t->routes().size(), 3u);
  const Route& a = *t->Find("a");
  // The first node's settings; every node's state; the most ready as the
  // model's.
  EXPECT_EQ(a.concurrency_limit, 2);
  ASSERT_EQ(a.nodes.size(), 2u);
  EXPECT_EQ(a.nodes[0].node, "10.0.0.1:50051");
  EXPECT_EQ(a.nodes[0].state, v1::MODEL_STATE_STOPPED);
  EXPECT_EQ(a.nodes[1].node, "10.0.0.2:50051");
  EXPECT_EQ(a.nodes[1].state, v1::MODEL_STATE_READY);
  EXPECT_EQ(a.state, v1::MODEL_STATE_READY);
  EXPECT_EQ(t->Find("b")->state, v1::MODEL_STATE_STARTING);
  ASSERT_EQ(t->Find("c")->nodes.size(), 1u);
  EXPECT_EQ(t->Find("c")->nodes[0].node, "10.0.0.2:50051");
  EXPECT_EQ(t->Find("c")->state, v1::MODEL_STATE_FAILED);
  EXPECT_EQ(t->routes()[0].id, "a");  // Sorted.
  EXPECT_TRUE(RouteTable::Merge({})->routes().empty());
}

TEST(PeerTableTest, NamesArePeerSlashModelOrABareNameOnlyOnePeerHas) {
  v1::Peer a;
  a.set_id("a");
  a.set_proxy("http://10.0.0.1:8080");
  a.set_api_key("k");
  a.add_models("big");
  a.add_models("shared");
  a.mutable_filters()->add_strip_params("seed");
  a.mutable_upstream_timeouts()->mutable_connect()->set_seconds(5);
  v1::Peer b;
  b.set_id("b");
  b.set_proxy("http://10.0.0.2:8080");
  b.add_models("shared");
  auto t = PeerTable::Build({b, a});
  ASSERT_EQ(t->routes().size(), 3u);
  EXPECT_EQ(t->routes()[0].name(), "a/big");  // Sorted by name.
  const PeerRoute* big = t->Find("big");
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big, t->Find("a/big"));
  EXPECT_EQ(big->peer, "a");
  EXPECT_EQ(big->model, "big");
  EXPECT_EQ(big->upstream, "http://10.0.0.1:8080");
  EXPECT_EQ(big->api_key, "k");
  EXPECT_EQ(big->filters.strip_params, std::vector<std::string>{"seed"});
  EXPECT_EQ(big->connect_timeout, absl::Seconds(5));
  EXPECT_EQ(t->Find("shared"), nullptr);  // Two peers have it.
  ASSERT_NE(t->Find("b/shared"), nullptr);
  EXPECT_EQ(t->Find("b/shared")->upstream, "http://10.0.0.2:8080");
  EXPECT_EQ(t->Find("c/big"), nullptr);
  EXPECT_TRUE(PeerTable::Build({})->routes().empty());
}

TEST(PeerTableTest, APeersBasePathIsWhereItsRequestsGo) {
  v1::Peer p;
  p.set_id("p");
  p.set_proxy("http://10.0.0.1:8080/api/");
  p.add_models("m");
  v1::Peer q;
  q.set_id("q");
  q.set_proxy("http://10.0.0.2:8080/");
  q.add_models("n");
  auto t = PeerTable::Build({p, q});
  EXPECT_EQ(t->Find("p/m")->upstream, "http://10.0.0.1:8080");
  EXPECT_EQ(t->Find("p/m")->base_path, "/api");
  EXPECT_EQ(t->Find("q/n")->upstream, "http://10.0.0.2:8080");
  EXPECT_EQ(t->Find("q/n")->base_path, "");
}

}  // namespace
}  // namespace modelplane::proxy::router
