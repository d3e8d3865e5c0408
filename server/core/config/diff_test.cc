#include "server/core/config/diff.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/config/loader.h"

namespace modelplane::config {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::shared_ptr<const Config> Load(const std::string& yaml) {
  LoadResult r = LoadConfigText("d.yaml", yaml, [](const std::string&) {
    return std::optional<std::string>();
  });
  EXPECT_TRUE(r.ok()) << r.status();
  return r.config;
}

constexpr char kBase[] = R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", ttl: 60, aliases: [aa]}
  b: {cmd: "srv-b --port ${PORT}", env: ["X=1"]}
  c: {cmd: "srv-c --port ${PORT}"}
  d: {cmd: "srv-d --port 9", proxy: "http://127.0.0.1:9"}
groups:
  g: {members: [a, b]}
)yaml";

TEST(DiffConfigsTest, IdenticalConfigsAreUnchanged) {
  ConfigDiff d = DiffConfigs(*Load(kBase), *Load(kBase));
  EXPECT_TRUE(d.empty());
  EXPECT_THAT(d.unchanged, ElementsAre("a", "b", "c", "d"));
}

TEST(DiffConfigsTest, ClassifiesEachModel) {
  ConfigDiff d = DiffConfigs(*Load(kBase), *Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", ttl: 120, aliases: [aa, a2]}
  b: {cmd: "srv-b --port ${PORT}", env: ["X=2"]}
  c: {cmd: "srv-c --port ${PORT}"}
  e: {cmd: "srv-e --port 10", proxy: "http://127.0.0.1:10"}
groups:
  g: {members: [a, b]}
)yaml"));
  EXPECT_THAT(d.update, ElementsAre("a"));   // ttl and aliases only.
  EXPECT_THAT(d.restart, ElementsAre("b"));  // env.
  EXPECT_THAT(d.unchanged, ElementsAre("c"));
  EXPECT_THAT(d.removed, ElementsAre("d"));
  EXPECT_THAT(d.added, ElementsAre("e"));
  // The default group held c and d; now c and e.
  EXPECT_THAT(d.groups_changed, ElementsAre("(default)"));
  EXPECT_FALSE(d.globals_changed);
}

TEST(DiffConfigsTest, SettingsTheProxyReadsAreUpdates) {
  ConfigDiff d = DiffConfigs(*Load(kBase), *Load(R"yaml(
sendLoadingState: true
models:
  a: {cmd: "srv-a --port ${PORT}", ttl: 60, aliases: [aa],
      timeouts: {responseHeader: 30}}
  b: {cmd: "srv-b --port ${PORT}", env: ["X=1"],
      filters: {setParamsByID: {"b": {t: 1}}}}
  c: {cmd: "srv-c --port ${PORT}"}
  d: {cmd: "srv-d --port 9", proxy: "http://127.0.0.1:9",
      sendLoadingState: false}
groups:
  g: {members: [a, b]}
)yaml"));
  // a: a timeout; b: setParamsByID; c: sendLoadingState (the global one);
  // d: its own value equals the old default.
  EXPECT_THAT(d.update, ElementsAre("a", "b", "c"));
  EXPECT_THAT(d.unchanged, ElementsAre("d"));
}

TEST(DiffConfigsTest, PeersAndIgnorePathsAreGlobalsTheProxyRefetches) {
  std::string peers =
      "peers:\n  p: {proxy: 'http://h:1', models: [m], apiKey: k}\n";
  ConfigDiff d = DiffConfigs(*Load(kBase), *Load(peers + kBase));
  EXPECT_TRUE(d.globals_changed);
  EXPECT_THAT(d.unchanged, ElementsAre("a", "b", "c", "d"));
  d = DiffConfigs(*Load(peers + kBase), *Load(peers + kBase));
  EXPECT_FALSE(d.globals_changed);
  std::string other_key =
      "peers:\n  p: {proxy: 'http://h:1', models: [m], apiKey: k2}\n";
  EXPECT_TRUE(DiffConfigs(*Load(peers + kBase), *Load(other_key + kBase))
                  .globals_changed);
  EXPECT_TRUE(
      DiffConfigs(
          *Load(kBase),
          *Load(std::string("upstream: {ignorePaths: ['^/s/']}\n") + kBase))
          .globals_changed);
}

TEST(DiffConfigsTest, CommandAndProxyChangesNeedRestart) {
  auto before = Load(kBase);
  auto after = Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT} --flash-attn", ttl: 60, aliases: [aa]}
  b: {cmd: "srv-b --port ${PORT}", env: ["X=1"]}
  c: {cmd: "srv-c --port ${PORT}"}
  d: {cmd: "srv-d --port 9", proxy: "http://127.0.0.1:19"}
groups:
  g: {members: [a, b]}
)yaml");
  ConfigDiff d = DiffConfigs(*before, *after);
  EXPECT_THAT(d.restart, ElementsAre("a", "d"));
  EXPECT_TRUE(NeedsRestart(*before->FindModel("a"), *after->FindModel("a")));
}

TEST(DiffConfigsTest, RemovingAModelShiftsLaterPortsWhichRestartsThem) {
  // ${PORT} follows sorted ids: without "a", "b" and "c" move down a port,
  // and a moved port is a changed command line.
  ConfigDiff d = DiffConfigs(*Load(kBase), *Load(R"yaml(
models:
  b: {cmd: "srv-b --port ${PORT}", env: ["X=1"]}
  c: {cmd: "srv-c --port ${PORT}"}
  d: {cmd: "srv-d --port 9", proxy: "http://127.0.0.1:9"}
groups:
  g: {members: [b]}
)yaml"));
  EXPECT_THAT(d.removed, ElementsAre("a"));
  EXPECT_THAT(d.restart, ElementsAre("b", "c"));
  EXPECT_THAT(d.unchanged, ElementsAre("d"));
  EXPECT_THAT(d.groups_changed, ElementsAre("g"));
}

std::shared_ptr<const Config> Reload(const Config& running,
                                     const std::string& yaml) {
  PortHints hints = PortHints::Of(running);
  LoadResult r = LoadConfigText(
      "d.yaml", yaml,
      [](const std::string&) { return std::optional<std::string>(); }, &hints);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.config;
}

TEST(DiffConfigsTest, AReloadKeepsEveryPortSoRemovingAModelRestartsNoOther) {
  auto before = Load(kBase);
  auto after = Reload(*before, R"yaml(
models:
  b: {cmd: "srv-b --port ${PORT}", env: ["X=1"]}
  c: {cmd: "srv-c --port ${PORT}"}
  d: {cmd: "srv-d --port 9", proxy: "http://127.0.0.1:9"}
groups:
  g: {members: [b]}
)yaml");
  ConfigDiff d = DiffConfigs(*before, *after);
  EXPECT_THAT(d.removed, ElementsAre("a"));
  EXPECT_THAT(d.restart, IsEmpty());
  EXPECT_THAT(d.unchanged, ElementsAre("b", "c", "d"));
  EXPECT_EQ(after->FindModel("c")->port, 5802);
}

TEST(DiffConfigsTest, AReloadGivesANewModelAFreePortAndRestartsNoOther) {
  auto before = Load(kBase);  // a 5800, b 5801, c 5802.
  auto after = Reload(*before, R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", ttl: 60, aliases: [aa]}
  aa2: {cmd: "srv-new --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}", env: ["X=1"]}
  c: {cmd: "srv-c --port ${PORT}"}
  d: {cmd: "srv-d --port 9", proxy: "http://127.0.0.1:9"}
groups:
  g: {members: [a, b]}
)yaml");
  ConfigDiff d = DiffConfigs(*before, *after);
  EXPECT_THAT(d.added, ElementsAre("aa2"));
  EXPECT_THAT(d.restart, IsEmpty());
  EXPECT_THAT(d.unchanged, ElementsAre("a", "b", "c", "d"));
  EXPECT_EQ(after->FindModel("aa2")->port, 5803);
  // Without the running config's ports (a fresh start) the sorted order
  // decides, as llama-swap's: the new model takes 5801 and b, c move.
  EXPECT_EQ(Load(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}"}
  aa2: {cmd: "srv-new --port ${PORT}"}
  b: {cmd: "srv-b --port ${PORT}"}
)yaml")
                ->FindModel("b")
                ->port,
            5802);
}

TEST(DiffConfigsTest, AFreedPortGoesToTheNextNewModel) {
  auto before = Load(kBase);  // a 5800, b 5801, c 5802.
  auto after = Reload(*before, R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", ttl: 60, aliases: [aa]}
  c: {cmd: "srv-c --port ${PORT}"}
  e: {cmd: "srv-e --port ${PORT}"}
  f: {cmd: "srv-f --port ${PORT}"}
)yaml");
  EXPECT_EQ(after->FindModel("c")->port, 5802);
  EXPECT_EQ(after->FindModel("e")->port, 5801);
  EXPECT_EQ(after->FindModel("f")->port, 5803);
}

TEST(DiffConfigsTest, APortANewModelNamesItselfIsGivenUp) {
  auto before = Load(kBase);  // a 5800, b 5801, c 5802.
  auto after = Reload(*before, R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", ttl: 60, aliases: [aa]}
  b: {cmd: "srv-b --port ${PORT}", env: ["X=1"]}
  c: {cmd: "srv-c --port ${PORT}"}
  z: {cmd: "srv-z --port 5801", proxy: "http://127.0.0.1:5801"}
groups:
  g: {members: [a, b]}
)yaml");
  ConfigDiff d = DiffConfigs(*before, *after);
  EXPECT_EQ(after->FindModel("b")->port, 5803);
  EXPECT_THAT(d.restart, ElementsAre("b"));
  EXPECT_EQ(d.restart_reasons["b"],
            "cmd changed (${PORT} 5801 -> 5803), proxy changed");
}

TEST(DiffConfigsTest, AMovedStartPortMovesEveryPort) {
  auto before = Load(kBase);
  auto after = Reload(*before, std::string("startPort: 7000\n") + kBase);
  ConfigDiff d = DiffConfigs(*before, *after);
  EXPECT_THAT(d.restart, ElementsAre("a", "b", "c"));
  // The default proxy (http://localhost:${PORT}) moves with it.
  EXPECT_EQ(d.restart_reasons["a"],
            "cmd changed (${PORT} 5800 -> 7000), proxy changed");
}

TEST(DiffConfigsTest, EachRestartSaysWhy) {
  auto before = Load(kBase);
  auto after = Reload(*before, R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT} --flash-attn", ttl: 60, aliases: [aa]}
  b: {cmd: "srv-b --port ${PORT}", env: ["X=2"]}
  c: {cmd: "srv-c --port ${PORT}", proxy: "http://127.0.0.2:${PORT}"}
  d: {cmd: "srv-d --port 9", proxy: "http://127.0.0.1:9"}
groups:
  g: {members: [a, b]}
)yaml");
  ConfigDiff d = DiffConfigs(*before, *after);
  EXPECT_THAT(d.restart, ElementsAre("a", "b", "c"));
  EXPECT_EQ(d.restart_reasons["a"], "cmd changed");
  EXPECT_EQ(d.restart_reasons["b"], "env changed");
  EXPECT_EQ(d.restart_reasons["c"], "proxy changed");
}

TEST(DiffConfigsTest, GroupAndGlobalChanges) {
  ConfigDiff d = DiffConfigs(*Load(kBase), *Load(R"yaml(
globalTTL: 30
models:
  a: {cmd: "srv-a --port ${PORT}", ttl: 60, aliases: [aa]}
  b: {cmd: "srv-b --port ${PORT}", env: ["X=1"]}
  c: {cmd: "srv-c --port ${PORT}"}
  d: {cmd: "srv-d --port 9", proxy: "http://127.0.0.1:9"}
groups:
  g: {members: [a, b], exclusive: false}
  h: {members: [c]}
)yaml"));
  EXPECT_THAT(d.groups_changed, ElementsAre("(default)", "g", "h"));
  // b and d inherit the new globalTTL; c also moved from the default group
  // to h. None of that needs a restart. (a sets its own ttl.)
  EXPECT_THAT(d.update, ElementsAre("b", "c", "d"));
  EXPECT_THAT(d.unchanged, ElementsAre("a"));
  EXPECT_TRUE(d.globals_changed);
}

}  // namespace
}  // namespace modelplane::config
