#include "proxy/router/snapshot.h"

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace modelplane::proxy::router {
namespace {

std::shared_ptr<const RouteTable> Models(std::vector<std::string> ids) {
  std::vector<v1::Model> models;
  for (const std::string& id : ids) {
    v1::Model m;
    m.set_id(id);
    models.push_back(m);
  }
  return RouteTable::Build(models);
}

v1::DataPlaneSettings WithProfile(const std::string& name,
                                  const std::string& key = "") {
  v1::DataPlaneSettings s;
  v1::Profile* p = s.add_profiles();
  p->set_name(name);
  (*p->mutable_pins())["a"] = "b";
  if (!key.empty()) s.add_api_key_sha256(key);
  return s;
}

TEST(SettingsTest, TheActivityKeptComesFromTheManager) {
  v1::DataPlaneSettings s;
  EXPECT_EQ(Settings::From(s)->activity_limit, 1000u);  // An older manager.
  s.set_metrics_max_in_memory(5);
  EXPECT_EQ(Settings::From(s)->activity_limit, 5u);
}

TEST(SnapshotTest, NothingIsKnownUntilTheSettingsArrive) {
  RoutingState state;
  std::shared_ptr<const Snapshot> s = state.Current();
  EXPECT_EQ(s->api_keys(), nullptr);  // Fails closed.
  EXPECT_TRUE(s->routes().routes().empty());
  EXPECT_TRUE(s->ignore_paths().empty());
  state.SetSettings(Settings::From(WithProfile("p", "abc")));
  ASSERT_NE(state.Current()->api_keys(), nullptr);
  EXPECT_TRUE(state.Current()->api_keys()->contains("abc"));
}

// A request keeps the snapshot it began with: a change publishes a new
// one and leaves the held one as it was.
TEST(SnapshotTest, AHeldSnapshotNeverChanges) {
  RoutingState state;
  state.SetModels(Models({"a"}));
  std::shared_ptr<const Snapshot> held = state.Current();
  state.SetModels(Models({"b"}));
  state.SetSettings(Settings::From(WithProfile("p")));
  EXPECT_NE(held->routes().Find("a"), nullptr);
  EXPECT_EQ(held->routes().Find("b"), nullptr);
  EXPECT_EQ(held->settings(), nullptr);
  std::shared_ptr<const Snapshot> now = state.Current();
  EXPECT_NE(now->routes().Find("b"), nullptr);
  EXPECT_GT(now->version(), held->version());
}

// The models and the settings of one point of the manager's stream come in
// one snapshot: no request sees the one without the other.
TEST(SnapshotTest, ModelsAndSettingsArePublishedTogether) {
  RoutingState state;
  uint64_t before = state.version();
  state.Update(Models({"a"}), Settings::From(WithProfile("p", "k")));
  EXPECT_EQ(state.version(), before + 1);
  std::shared_ptr<const Snapshot> s = state.Current();
  EXPECT_NE(s->routes().Find("a"), nullptr);
  ASSERT_NE(s->api_keys(), nullptr);
  // Null leaves a part as it was.
  state.Update(Models({"b"}), nullptr);
  EXPECT_TRUE(state.Current()->api_keys()->contains("k"));
  EXPECT_NE(state.Current()->routes().Find("b"), nullptr);
}

TEST(SnapshotTest, ReaderFollowsTheVersion) {
  RoutingState state;
  SnapshotReader reader(&state);
  const Snapshot* first = reader.Current().get();
  EXPECT_EQ(reader.Current().get(), first);  // Nothing moved: the same.
  state.SetModels(Models({"a"}));
  EXPECT_NE(reader.Current()->routes().Find("a"), nullptr);
}

TEST(SnapshotTest, ActiveProfileStaysOnlyWhileTheProfilesStayTheSame) {
  RoutingState state;
  EXPECT_FALSE(state.SetActiveProfile("p"));  // No settings yet.
  state.SetSettings(Settings::From(WithProfile("p")));
  EXPECT_FALSE(state.SetActiveProfile("q"));
  ASSERT_TRUE(state.SetActiveProfile("p"));
  EXPECT_EQ(state.Current()->active_profile()->name, "p");
  // The same profiles (other keys): kept.
  state.SetSettings(Settings::From(WithProfile("p", "k")));
  ASSERT_NE(state.Current()->active_profile(), nullptr);
  // Changed profiles: deselected, as llama-swap does on a reload.
  v1::DataPlaneSettings changed = WithProfile("p");
  (*changed.mutable_profiles(0)->mutable_pins())["a"] = "c";
  state.SetSettings(Settings::From(changed));
  EXPECT_EQ(state.Current()->active_profile(), nullptr);
  ASSERT_TRUE(state.SetActiveProfile("p"));
  ASSERT_TRUE(state.SetActiveProfile(""));
  EXPECT_EQ(state.Current()->active_profile(), nullptr);
}

TEST(SnapshotTest, TheStartupProfileIsOnAtStartAndAfterAReloadChangesIt) {
  RoutingState state;
  v1::DataPlaneSettings s = WithProfile("p");
  v1::Profile* q = s.add_profiles();
  q->set_name("q");
  s.set_startup_profile("p");
  state.SetSettings(Settings::From(s));
  ASSERT_NE(state.Current()->active_profile(), nullptr);
  EXPECT_EQ(state.Current()->active_profile()->name, "p");
  // Switched by hand: other settings changes keep the switch.
  ASSERT_TRUE(state.SetActiveProfile("q"));
  s.add_api_key_sha256("k");
  state.SetSettings(Settings::From(s));
  EXPECT_EQ(state.Current()->active_profile()->name, "q");
  // A reload that names another startup profile turns it on.
  s.set_startup_profile("q");
  ASSERT_TRUE(state.SetActiveProfile(""));
  state.SetSettings(Settings::From(s));
  EXPECT_EQ(state.Current()->active_profile()->name, "q");
  // One that changes the profiles turns the startup one on again.
  (*s.mutable_profiles(0)->mutable_pins())["a"] = "c";
  ASSERT_TRUE(state.SetActiveProfile("p"));
  state.SetSettings(Settings::From(s));
  EXPECT_EQ(state.Current()->active_profile()->name, "q");
}

}  // namespace
}  // namespace modelplane::proxy::router
