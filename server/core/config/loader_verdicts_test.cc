// Verdicts beside llama-swap's loader (docs/config.md, "Verdicts beside
// llama-swap's"): group members as llama-swap takes them (a name listed
// twice, or in two groups, is refused whatever it names; a name that is
// not a model id, a selector, an alias or a typo, loads, warned and left
// out of the group, where llama-swap loads it and never matches it), and
// the deliberate differences that need a test of their own.
#include <optional>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/config/loader.h"

namespace modelplane::config {
namespace {

using ::testing::ElementsAre;

EnvLookup NoEnv() {
  return [](const std::string&) -> std::optional<std::string> {
    return std::nullopt;
  };
}

std::vector<std::string> Lines(const std::vector<Diagnostic>& ds) {
  std::vector<std::string> out;
  for (const Diagnostic& d : ds) out.push_back(d.ToString());
  return out;
}

TEST(LoaderGroupsTest, MembersThatAreNotModelsAreWarnedAndLeftOut) {
  LoadResult r = LoadConfigText("test.yaml", R"yaml(models:
  a:
    cmd: /bin/sleep ${PORT}
    aliases: [aa]
  b:
    cmd: /bin/sleep ${PORT}
selectors:
  pick:
    strategy: pin
    targets: [a]
groups:
  g:
    members: [pick, a, aa, ghost]
)yaml",
                                NoEnv());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Lines(r.warnings),
              ElementsAre("test.yaml:13:15: groups.g.members[0]: 'pick' is "
                          "not a model; left out of the group",
                          "test.yaml:13:24: groups.g.members[2]: 'aa' is an "
                          "alias of model 'a'; left out of the group (groups "
                          "list model ids: list 'a')",
                          "test.yaml:13:28: groups.g.members[3]: 'ghost' is "
                          "not a model; left out of the group"));
  const Config& c = *r.config;
  ASSERT_EQ(c.groups.size(), 2u);
  EXPECT_EQ(c.groups[0].id, "g");
  EXPECT_THAT(c.groups[0].members, ElementsAre("a"));
  EXPECT_THAT(c.groups[1].members, ElementsAre("b"));  // The default group.
}

TEST(LoaderGroupsTest, ANameTwiceOrInTwoGroupsIsRefusedWhateverItNames) {
  for (const char* name : {"a", "ghost"}) {
    SCOPED_TRACE(name);
    std::string models = "models:\n  a:\n    cmd: /bin/sleep ${PORT}\n";
    LoadResult twice = LoadConfigText(
        "test.yaml",
        models + "groups:\n  g:\n    members: [" + name + ", " + name + "]\n",
        NoEnv());
    EXPECT_FALSE(twice.ok());
    EXPECT_THAT(
        Lines(twice.errors),
        ElementsAre(std::string("test.yaml:6:") + (name[1] == 0 ? "18" : "22") +
                    ": groups.g.members[1]: '" + name + "' is listed twice"));
    LoadResult two_groups =
        LoadConfigText("test.yaml",
                       models + "groups:\n  g:\n    members: [" + name +
                           "]\n  h:\n" + "    members: [" + name + "]\n",
                       NoEnv());
    EXPECT_FALSE(two_groups.ok());
    EXPECT_THAT(
        Lines(two_groups.errors),
        ElementsAre(std::string("test.yaml:8:15: groups.h.members[0]: ") +
                    (name[1] == 0 ? "model '" : "'") + name +
                    "' is already a member of group 'g' (a model is in "
                    "at most one group)"));
  }
}

// llama-swap refuses `performance.every` below 5 s; modelplane has no
// performance sampling, and warns the whole block away whatever it holds.
TEST(LoaderVerdictsTest, PerformanceValuesLlamaSwapRefusesAreWarnedAway) {
  LoadResult r = LoadConfigText(
      "test.yaml",
      "performance: {disabled: false, every: 1s}\ncaptureBuffer: -3\n"
      "models:\n  a:\n    cmd: /bin/sleep ${PORT}\n",
      NoEnv());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(Lines(r.warnings),
              ElementsAre("test.yaml:1:1: performance: llama-swap setting not "
                          "supported by modelplane yet; ignored",
                          "test.yaml:2:1: captureBuffer: llama-swap setting "
                          "not supported by modelplane yet; ignored"));
}

// llama-swap splices ${env.NAME} into the raw text, so a value with a quote
// can break the YAML around it; modelplane substitutes into the value.
TEST(LoaderVerdictsTest, AnEnvValueWithQuotesIsTheValue) {
  EnvLookup env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "FLAGS") return std::string("--name \"it's\" --x 'y'");
    return std::nullopt;
  };
  LoadResult r =
      LoadConfigText("test.yaml",
                     "models:\n  a:\n    cmd: \"/bin/sleep ${PORT}\"\n"
                     "    env: [\"FLAGS=${env.FLAGS}\"]\n",
                     env);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r.config->models.size(), 1u);
  EXPECT_THAT(r.config->models[0].env,
              ElementsAre("FLAGS=--name \"it's\" --x 'y'"));
}

// llama-swap refuses a store.path that is a directory; modelplane's store
// is opened by each proxy on its own host, which says so there.
TEST(LoaderVerdictsTest, AStorePathThatIsADirectoryLoads) {
  LoadResult r = LoadConfigText(
      "test.yaml",
      "store: {path: /tmp}\nmodels:\n  a:\n    cmd: /bin/sleep ${PORT}\n",
      NoEnv());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r.config->store_path, "/tmp");
}

// A store block needs its file, as in llama-swap; `store: ~` is none.
TEST(LoaderVerdictsTest, AStoreBlockNeedsItsPath) {
  const std::string model = "models:\n  a:\n    cmd: /bin/sleep ${PORT}\n";
  LoadResult none = LoadConfigText("test.yaml", "store: {}\n" + model, NoEnv());
  EXPECT_THAT(Lines(none.errors),
              ElementsAre("test.yaml:1:8: store: missing required key 'path'"));
  LoadResult blank =
      LoadConfigText("test.yaml", "store: {path: '  '}\n" + model, NoEnv());
  EXPECT_THAT(Lines(blank.errors),
              ElementsAre("test.yaml:1:15: store.path: must not be empty"));
  LoadResult null = LoadConfigText("test.yaml", "store: ~\n" + model, NoEnv());
  ASSERT_TRUE(null.ok()) << null.status();
  EXPECT_EQ(null.config->store_path, "");
}

// An unknown macro in a setParamsByID name is refused, as llama-swap's
// expansion refuses it; a defined one stays as written, warned.
TEST(LoaderVerdictsTest, AnUnknownMacroInASetParamsByIdNameIsRefused) {
  LoadResult r = LoadConfigText("test.yaml", R"yaml(macros: {base: qwen}
models:
  a:
    cmd: /bin/sleep ${PORT}
    filters:
      setParamsByID: {"${nope}:x": {t: 1}, "${base}:y": {t: 2}}
)yaml",
                                NoEnv());
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Lines(r.errors),
              ElementsAre("test.yaml:6:23: models.a.filters.setParamsByID."
                          "${nope}:x: unknown macro '${nope}'"));
  EXPECT_THAT(Lines(r.warnings),
              ::testing::Contains(
                  "test.yaml:6:44: models.a.filters.setParamsByID.${base}:y: "
                  "only ${MODEL_ID} is expanded in a setParamsByID name; this "
                  "one stays as written"));
}

// A blank value leaves the default, as llama-swap's decoder does.
TEST(LoaderVerdictsTest, ABlankValueLeavesTheDefault) {
  LoadResult r = LoadConfigText("test.yaml", R"yaml(startPort:
globalTTL:
logToStdout:
store:
sendLoadingState:
models:
  a:
    cmd: /bin/sleep ${PORT}
    ttl:
    unlisted:
    concurrencyLimit:
    timeouts: {connect: }
)yaml",
                                NoEnv());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r.config->models.size(), 1u);
  const ModelConfig& m = r.config->models[0];
  EXPECT_EQ(m.port, 5800);
  EXPECT_EQ(m.ttl, absl::ZeroDuration());
  EXPECT_FALSE(m.unlisted);
  EXPECT_EQ(m.timeouts.connect, absl::Seconds(30));
  EXPECT_EQ(r.config->log_to_stdout, "proxy");
  EXPECT_EQ(r.config->store_path, "");
}

// A model's metadata is a mapping, as llama-swap's decoder requires.
TEST(LoaderVerdictsTest, MetadataThatIsNotAMappingIsRefused) {
  LoadResult r = LoadConfigText(
      "test.yaml",
      "models:\n  a:\n    cmd: /bin/sleep ${PORT}\n    metadata: hello\n",
      NoEnv());
  EXPECT_THAT(Lines(r.errors),
              ElementsAre("test.yaml:4:15: models.a.metadata: must be a "
                          "mapping, not a scalar"));
}

// llama-swap assigns ports past 65535 and fails when the model starts;
// modelplane refuses the config.
TEST(LoaderVerdictsTest, APortAssignedPast65535IsRefused) {
  LoadResult r = LoadConfigText(
      "test.yaml",
      "startPort: 65535\nmodels:\n  a:\n    cmd: /bin/sleep ${PORT}\n"
      "  b:\n    cmd: /bin/sleep ${PORT}\n",
      NoEnv());
  EXPECT_FALSE(r.ok());
  EXPECT_THAT(Lines(r.errors),
              ElementsAre("test.yaml:5:3: models.b: ${PORT} would be 65536, "
                          "past 65535 (lower startPort)"));
}

}  // namespace
}  // namespace modelplane::config
