// Configs that load: what each model resolves to.
#include "server/core/config/loader.h"

#include <sys/stat.h>

#include <fstream>
#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

EnvLookup Env(std::map<std::string, std::string> vars = {}) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::shared_ptr<const Config> MustLoad(const std::string& yaml,
                                       const EnvLookup& env = Env()) {
  LoadResult r = LoadConfigText("test.yaml", yaml, env);
  EXPECT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r.warnings, IsEmpty()) << r.warnings[0].ToString();
  return r.config;
}

// A realistic llama-swap config: llama-server, vLLM in docker, whisper and
// an embedding model, with macros, groups, aliases, filters, env and hooks.
constexpr char kRealistic[] = R"yaml(
healthCheckTimeout: 300
startPort: 10001
globalTTL: 600
apiKeys: ["sk-one", "${env.EXTRA_KEY}"]

macros:
  "llama": >
    /usr/local/bin/llama-server
    --host 127.0.0.1 --port ${PORT}
  "models": ${env.MODELS_DIR}
  "ctx": 16384
  "model-file": ${models}/${MODEL_ID}.gguf

models:
  "qwen3-coder":
    name: "Qwen3 Coder"
    cmd: |
      ${llama}
      -m ${model-file}
      # --no-mmap ${not-a-macro}
      --ctx-size ${ctx} \
      --temp 0.7
    aliases: ["coder", "gpt-4o-mini"]
    ttl: 300
    metadata:
      context: ${ctx}
      port: ${PORT}
      label: "ctx-${ctx}"
      tags: [coding, moe]
    filters:
      stripParams: "temperature, top_p ,, top_p"
      setParams:
        top_k: 20
        chat_template_kwargs: {enable_thinking: false}

  "llama-8b":
    cmd: ${llama} -m ${models}/llama.gguf
    aliases: [llama]
    concurrencyLimit: 4
    env:
      - "CUDA_VISIBLE_DEVICES=0"
      - "LLAMA_ARG_THREADS=8"

  "vllm-qwen":
    proxy: http://127.0.0.1:8000
    cmd: >
      docker run --init --rm --name ${MODEL_ID} -p 8000:8000
      vllm/vllm-openai:latest --model "Qwen/Qwen2.5 7B"
    cmdStop: docker stop ${MODEL_ID} --pid ${PID}
    checkEndpoint: /v1/models
    unloadTimeout: 30
    useModelName: Qwen/Qwen2.5-7B-Instruct

  "whisper":
    cmd: /usr/local/bin/whisper-server --port ${PORT} -m ${models}/ggml.bin
    checkEndpoint: none
    ttl: 0
    readyPattern: "server is listening"
    healthCheckTimeout: 20
    maxQueueWait: 5
    priority: 3

  "nomic-embed":
    cmd: ${llama} -m ${models}/nomic.gguf --embedding
    unlisted: true
    ttl: -1

routing:
  router:
    use: group
    settings:
      groups:
        "big":
          members: ["qwen3-coder", "llama-8b", "vllm-qwen"]
        "always-on":
          persistent: true
          swap: false
          exclusive: false
          members: ["whisper"]
  scheduler:
    use: fifo
    settings:
      fifo:
        priority:
          coder: 7

hooks:
  on_startup:
    preload: ["llama", "whisper"]
)yaml";

class RealisticConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ =
        MustLoad(kRealistic,
                 Env({{"MODELS_DIR", "/srv/models"}, {"EXTRA_KEY", "sk-two"}}));
    ASSERT_NE(config_, nullptr);
  }
  const ModelConfig& Model(const std::string& id) {
    const ModelConfig* m = config_->FindModel(id);
    EXPECT_NE(m, nullptr) << id;
    return *m;
  }
  std::shared_ptr<const Config> config_;
};

TEST_F(RealisticConfigTest, GlobalsAndSortedModels) {
  EXPECT_EQ(config_->health_check_timeout, absl::Seconds(300));
  EXPECT_EQ(config_->global_ttl, absl::Seconds(600));
  EXPECT_EQ(config_->unload_timeout, absl::Seconds(10));
  EXPECT_THAT(config_->api_keys, ElementsAre("sk-one", "sk-two"));
  std::vector<std::string> ids;
  for (const ModelConfig& m : config_->models) ids.push_back(m.id);
  EXPECT_THAT(ids, ElementsAre("llama-8b", "nomic-embed", "qwen3-coder",
                               "vllm-qwen", "whisper"));
}

TEST_F(RealisticConfigTest, PortsInSortedIdOrderOnlyForModelsUsingThem) {
  EXPECT_EQ(Model("llama-8b").port, 10001);
  EXPECT_EQ(Model("nomic-embed").port, 10002);
  EXPECT_EQ(Model("qwen3-coder").port, 10003);
  EXPECT_EQ(Model("vllm-qwen").port, 0);
  EXPECT_EQ(Model("whisper").port, 10004);
  EXPECT_EQ(Model("qwen3-coder").proxy, "http://localhost:10003");
  EXPECT_EQ(Model("vllm-qwen").proxy, "http://127.0.0.1:8000");
}

TEST_F(RealisticConfigTest, CommandsResolvedAndSplit) {
  EXPECT_THAT(
      Model("qwen3-coder").argv,
      ElementsAre("/usr/local/bin/llama-server", "--host", "127.0.0.1",
                  "--port", "10003", "-m", "/srv/models/qwen3-coder.gguf",
                  "--ctx-size", "16384", "--temp", "0.7"));
  EXPECT_THAT(
      Model("vllm-qwen").argv,
      ElementsAre("docker", "run", "--init", "--rm", "--name", "vllm-qwen",
                  "-p", "8000:8000", "vllm/vllm-openai:latest", "--model",
                  "Qwen/Qwen2.5 7B"));
  EXPECT_THAT(Model("vllm-qwen").cmd_stop,
              ElementsAre("docker", "stop", "vllm-qwen", "--pid", "${PID}"));
  EXPECT_THAT(Model("llama-8b").cmd_stop, IsEmpty());
}

TEST_F(RealisticConfigTest, PerModelSettings) {
  const ModelConfig& coder = Model("coder");
  EXPECT_EQ(coder.id, "qwen3-coder");
  EXPECT_EQ(coder.name, "Qwen3 Coder");
  EXPECT_EQ(coder.ttl, absl::Seconds(300));
  EXPECT_EQ(coder.priority, 7);  // From routing.scheduler...priority.
  EXPECT_EQ(coder.concurrency_limit, 10);
  EXPECT_EQ(coder.check_endpoint, "/health");
  EXPECT_EQ(coder.health_check_timeout, absl::Seconds(300));
  EXPECT_EQ(coder.max_queue_wait, absl::Seconds(30));
  EXPECT_EQ(Model("gpt-4o-mini").id, "qwen3-coder");
  EXPECT_EQ(Model("llama-8b").concurrency_limit, 4);
  EXPECT_THAT(Model("llama-8b").env,
              ElementsAre("CUDA_VISIBLE_DEVICES=0", "LLAMA_ARG_THREADS=8"));
  EXPECT_EQ(Model("nomic-embed").ttl, absl::Seconds(600));  // -1: global.
  EXPECT_TRUE(Model("nomic-embed").unlisted);
  const ModelConfig& whisper = Model("whisper");
  EXPECT_EQ(whisper.ttl, absl::ZeroDuration());
  EXPECT_EQ(whisper.check_endpoint, "");
  EXPECT_EQ(whisper.ready_pattern, "server is listening");
  EXPECT_EQ(whisper.health_check_timeout, absl::Seconds(20));
  EXPECT_EQ(whisper.max_queue_wait, absl::Seconds(5));
  EXPECT_EQ(whisper.priority, 3);
  const ModelConfig& vllm = Model("vllm-qwen");
  EXPECT_EQ(vllm.unload_timeout, absl::Seconds(30));
  EXPECT_EQ(vllm.check_endpoint, "/v1/models");
  EXPECT_EQ(vllm.use_model_name, "Qwen/Qwen2.5-7B-Instruct");
}

TEST_F(RealisticConfigTest, MetadataKeepsTypesThroughMacros) {
  EXPECT_EQ(Model("qwen3-coder").metadata.ToJson(),
            R"({"context":16384,"port":10003,"label":"ctx-16384",)"
            R"("tags":["coding","moe"]})");
}

TEST_F(RealisticConfigTest, Filters) {
  const Filters& f = Model("qwen3-coder").filters;
  EXPECT_THAT(f.strip_params, ElementsAre("temperature", "top_p"));
  EXPECT_EQ(f.set_params.ToJson(),
            R"({"top_k":20,"chat_template_kwargs":{"enable_thinking":false}})");
}

TEST_F(RealisticConfigTest, GroupsWithImplicitDefault) {
  ASSERT_EQ(config_->groups.size(), 3u);
  const GroupConfig& big = config_->groups[0];
  EXPECT_EQ(big.id, "big");
  EXPECT_TRUE(big.swap && big.exclusive && !big.persistent);
  EXPECT_THAT(big.members, ElementsAre("qwen3-coder", "llama-8b", "vllm-qwen"));
  const GroupConfig& on = config_->groups[1];
  EXPECT_TRUE(!on.swap && !on.exclusive && on.persistent);
  const GroupConfig& implicit = config_->groups[2];
  EXPECT_EQ(implicit.id, kDefaultGroup);
  EXPECT_TRUE(implicit.swap && implicit.exclusive);
  EXPECT_THAT(implicit.members, ElementsAre("nomic-embed"));
  EXPECT_EQ(Model("whisper").group, "always-on");
  EXPECT_EQ(Model("nomic-embed").group, kDefaultGroup);
}

TEST_F(RealisticConfigTest, PreloadResolvesAliases) {
  EXPECT_THAT(config_->preload, ElementsAre("llama-8b", "whisper"));
}

TEST(LoaderTest, MacrosUseEarlierOnesAndModelOverridesApplyInPlace) {
  auto c = MustLoad(R"yaml(
macros:
  a: alpha
  b: ${a}-beta
  c: "${b}-gamma"
models:
  m1:
    cmd: run ${c} ${MODEL_ID}
    proxy: http://h:1
  m2:
    macros:
      a: ALPHA
      d: ${c}-delta
    cmd: run ${d}
    proxy: http://h:1
)yaml");
  EXPECT_THAT(c->FindModel("m1")->argv,
              ElementsAre("run", "alpha-beta-gamma", "m1"));
  EXPECT_THAT(c->FindModel("m2")->argv,
              ElementsAre("run", "ALPHA-beta-gamma-delta"));
}

TEST(LoaderTest, WholeValueMacroKeepsItsType) {
  auto c = MustLoad(R"yaml(
macros:
  port: 7000
  on: true
  ttl: 45
startPort: ${port}
models:
  m:
    cmd: x --port ${PORT}
    ttl: ${ttl}
    unlisted: ${on}
    metadata: {p: "${port}", s: "p${port}", q: '${on}'}
)yaml");
  const ModelConfig& m = *c->FindModel("m");
  EXPECT_EQ(c->start_port, 7000);
  EXPECT_EQ(m.port, 7000);
  EXPECT_EQ(m.ttl, absl::Seconds(45));
  EXPECT_TRUE(m.unlisted);
  EXPECT_EQ(m.metadata.ToJson(), R"({"p":7000,"s":"p7000","q":true})");
}

TEST(LoaderTest, PortsAssignedInSortedOrderFromStartPort) {
  auto c = MustLoad(R"yaml(
models:
  zeta: {cmd: "z --port ${PORT}"}
  alpha: {cmd: "a --port ${PORT}"}
  mid: {cmd: "m --port 9", proxy: "http://127.0.0.1:9"}
  beta: {cmd: "b ${PORT}"}
)yaml");
  EXPECT_EQ(c->FindModel("alpha")->port, 5800);
  EXPECT_EQ(c->FindModel("beta")->port, 5801);
  EXPECT_EQ(c->FindModel("mid")->port, 0);
  EXPECT_EQ(c->FindModel("zeta")->port, 5802);
}

// A port a model names itself is never another's ${PORT}: the two would
// answer each other's requests and health checks.
TEST(LoaderTest, PortsOthersNameThemselvesAreSkipped) {
  auto c = MustLoad(R"yaml(
models:
  fixed: {cmd: "f --port 5801", proxy: "http://127.0.0.1:5801"}
  p1: {cmd: "a --port ${PORT}"}
  p2: {cmd: "b --port ${PORT}"}
)yaml");
  EXPECT_EQ(c->FindModel("p1")->port, 5800);
  EXPECT_EQ(c->FindModel("p2")->port, 5802);
}

TEST(LoaderTest, PortFromAMacroCounts) {
  auto c = MustLoad(R"yaml(
macros:
  serve: "server --port ${PORT}"
models:
  a: {cmd: "${serve}"}
)yaml");
  EXPECT_THAT(c->FindModel("a")->argv, ElementsAre("server", "--port", "5800"));
}

TEST(LoaderTest, MergeKeysAndAnchors) {
  auto c = MustLoad(R"yaml(
models:
  base: &base
    cmd: llama-server --port ${PORT}
    ttl: 60
    concurrencyLimit: 2
  derived:
    <<: *base
    ttl: 5
)yaml");
  EXPECT_EQ(c->FindModel("derived")->ttl, absl::Seconds(5));
  EXPECT_EQ(c->FindModel("derived")->concurrency_limit, 2);
  EXPECT_EQ(c->FindModel("derived")->port, 5801);
}

TEST(LoaderTest, ZeroMaxQueueWaitMeansRevokeAtOnce) {
  auto c = MustLoad("models:\n  a: {cmd: \"x ${PORT}\", maxQueueWait: 0}\n");
  EXPECT_EQ(c->FindModel("a")->max_queue_wait, absl::ZeroDuration());
}

TEST(LoaderTest, ZeroMeansDefaultForLimitsAndTimeouts) {
  auto c = MustLoad(R"yaml(
unloadTimeout: 0
models:
  a:
    cmd: x ${PORT}
    concurrencyLimit: 0
    unloadTimeout: 0
)yaml");
  EXPECT_EQ(c->unload_timeout, absl::Seconds(10));
  EXPECT_EQ(c->FindModel("a")->unload_timeout, absl::Seconds(10));
  EXPECT_EQ(c->FindModel("a")->concurrency_limit, 10);
}

TEST(LoaderTest, UpstreamTimeoutsInSecondsWithLlamaSwapDefaults) {
  auto c = MustLoad(R"yaml(
models:
  a:
    cmd: x ${PORT}
  b:
    cmd: x ${PORT}
    timeouts:
      connect: 5
      responseHeader: 600.5
      idleConn: 0
)yaml");
  const ModelConfig::UpstreamTimeouts& a = c->FindModel("a")->timeouts;
  EXPECT_EQ(a.connect, absl::Seconds(30));
  EXPECT_EQ(a.response_header, absl::ZeroDuration());  // None: slow tokens.
  EXPECT_EQ(a.idle_connection, absl::Seconds(90));
  const ModelConfig::UpstreamTimeouts& b = c->FindModel("b")->timeouts;
  EXPECT_EQ(b.connect, absl::Seconds(5));
  EXPECT_EQ(b.response_header, absl::Milliseconds(600500));
  EXPECT_EQ(b.idle_connection, absl::ZeroDuration());  // 0: no limit.
}

TEST(LoaderTest, LegacyGroupsAndStripParamsSpelling) {
  auto c = MustLoad(R"yaml(
models:
  a:
    cmd: x ${PORT}
    filters: {strip_params: "seed"}
  b: {cmd: "y ${PORT}"}
groups:
  g: {swap: false, members: [a, b]}
)yaml");
  EXPECT_THAT(c->FindModel("a")->filters.strip_params, ElementsAre("seed"));
  ASSERT_EQ(c->groups.size(), 1u);  // No model left for the default group.
  EXPECT_FALSE(c->groups[0].swap);
  EXPECT_EQ(c->FindModel("b")->group, "g");
}

// llama-swap raises a healthCheckTimeout below 15 s to 15; modelplane uses
// it as written (docs/config.md, "Verdicts beside llama-swap's").
TEST(LoaderTest, HealthCheckTimeoutHasNoFloor) {
  auto c = MustLoad(
      "healthCheckTimeout: 3\nmodels:\n  a:\n    cmd: x ${PORT}\n"
      "    healthCheckTimeout: 2\n");
  EXPECT_EQ(c->health_check_timeout, absl::Seconds(3));
  EXPECT_EQ(c->models[0].health_check_timeout, absl::Seconds(2));
}

TEST(LoaderTest, UpstreamIgnorePathsDefaultToLlamaSwapsAndCanBeSet) {
  auto c = MustLoad("models:\n  a:\n    cmd: x ${PORT}\n");
  EXPECT_THAT(c->upstream_ignore_paths,
              ElementsAre(R"(.*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$)"));
  c = MustLoad(
      "upstream:\n  ignorePaths: ['^/static/', '\\.ico$']\n"
      "models:\n  a:\n    cmd: x ${PORT}\n");
  EXPECT_THAT(c->upstream_ignore_paths, ElementsAre("^/static/", "\\.ico$"));
  // An empty list is the default, as in llama-swap.
  c = MustLoad(
      "upstream: {ignorePaths: []}\nmodels:\n  a:\n    cmd: x\n"
      "    proxy: http://h:1\n");
  EXPECT_THAT(c->upstream_ignore_paths,
              ElementsAre(R"(.*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$)"));
}

TEST(LoaderTest, ProfilesPinToModelsSelectorsAndPeersOrDisable) {
  auto c = MustLoad(R"yaml(
peers:
  far: {proxy: "http://h:1", models: [big]}
selectors:
  any: {targets: [a]}
profiles:
  work:
    description: At work
    pins: {gpt-4o: a, fast: any, huge: far/big, bare: big, off: null}
  solo: {pins: {x: aa}}
models:
  a: {cmd: "x ${PORT}", aliases: [aa]}
)yaml");
  ASSERT_EQ(c->profiles.size(), 2u);
  EXPECT_EQ(c->profiles[0].name, "solo");  // Sorted.
  const ProfileConfig& w = c->profiles[1];
  EXPECT_EQ(w.description, "At work");
  ASSERT_EQ(w.pins.size(), 5u);
  EXPECT_EQ(w.pins[0], std::make_pair(std::string("gpt-4o"), std::string("a")));
  EXPECT_EQ(w.pins[4], std::make_pair(std::string("off"), std::string("")));
}

TEST(LoaderTest, SelectorsResolveTargetsThroughAliases) {
  auto c = MustLoad(R"yaml(
selectors:
  fast:
    strategy: spillover
    targets: [q1, qwen-b]
    settings: {spillover: 3}
    name: Fast
    metadata: {tier: 1}
  any: {targets: [q1, qwen-a, qwen-b]}
groups:
  pair: {swap: false, members: [qwen-a, qwen-b]}
models:
  qwen-a: {cmd: "x ${PORT}", aliases: [q1]}
  qwen-b: {cmd: "x ${PORT}"}
)yaml");
  ASSERT_EQ(c->selectors.size(), 2u);
  EXPECT_EQ(c->selectors[0].id, "any");        // Sorted.
  EXPECT_EQ(c->selectors[0].strategy, "pin");  // The default.
  // Two names for one model: once (pin takes the first anyway).
  EXPECT_THAT(c->selectors[0].targets, ElementsAre("qwen-a", "qwen-b"));
  const SelectorConfig& f = c->selectors[1];
  EXPECT_EQ(f.strategy, "spillover");
  EXPECT_THAT(f.targets, ElementsAre("qwen-a", "qwen-b"));  // Ids, once.
  EXPECT_EQ(f.spillover, 3);
  EXPECT_EQ(f.name, "Fast");
  EXPECT_EQ(f.metadata.ToJson(), R"({"tier":1})");
}

TEST(LoaderTest, SelectorsTargetPeersModelsAsLlamaSwapDoes) {
  auto c = MustLoad(R"yaml(
peers:
  remote: {proxy: "https://example.com/api", models: [big, shared]}
  other: {proxy: "http://10.0.0.3:8080", models: [shared]}
selectors:
  spill:
    strategy: spillover
    targets: [a, big, other/shared]
  pinned: {targets: [remote/shared, remote/big, big]}
models:
  a: {cmd: "x ${PORT}"}
)yaml");
  ASSERT_EQ(c->selectors.size(), 2u);
  // A bare name one peer has, or <peer>/<model>; kept as <peer>/<model>,
  // once.
  EXPECT_THAT(c->selectors[0].targets,
              ElementsAre("remote/shared", "remote/big"));
  EXPECT_THAT(c->selectors[1].targets,
              ElementsAre("a", "remote/big", "other/shared"));
}

TEST(LoaderTest, PeersWithKeysFiltersTimeoutsAndMacros) {
  auto c = MustLoad(R"yaml(
macros:
  host: 10.0.0.2
peers:
  zeta:
    proxy: http://${host}:8080
    apiKey: pk-${host}
    models: [big, small, big]
    filters: {stripParams: "seed", setParams: {a.b: 1}}
    timeouts: {connect: 5, responseHeader: 600}
  alpha:
    proxy: http://10.0.0.3:8080
    models: [m]
models:
  a:
    cmd: x ${PORT}
)yaml");
  ASSERT_EQ(c->peers.size(), 2u);
  EXPECT_EQ(c->peers[0].id, "alpha");  // Sorted.
  const PeerConfig& z = c->peers[1];
  EXPECT_EQ(z.proxy, "http://10.0.0.2:8080");
  EXPECT_EQ(z.api_key, "pk-10.0.0.2");
  EXPECT_THAT(z.models, ElementsAre("big", "small"));
  EXPECT_THAT(z.filters.strip_params, ElementsAre("seed"));
  EXPECT_EQ(z.filters.set_params.ToJson(), R"({"a.b":1})");
  EXPECT_EQ(z.timeouts.connect, absl::Seconds(5));
  EXPECT_EQ(z.timeouts.response_header, absl::Seconds(600));
  EXPECT_TRUE(c->peers[0].api_key.empty());
}

// A directory of config files under the test's temp dir.
std::string WriteDir(const std::string& name,
                     const std::map<std::string, std::string>& files) {
  std::string dir = ::testing::TempDir() + "/" + name;
  mkdir(dir.c_str(), 0755);
  for (const auto& [file, text] : files) {
    std::ofstream(dir + "/" + file) << text;
  }
  return dir;
}

TEST(LoaderTest, SwapMatrixInEitherForm) {
  const char* models = R"yaml(
models:
  qwen: {cmd: "x ${PORT}", aliases: [qw]}
  llama: {cmd: "x ${PORT}"}
  whisper: {cmd: "x ${PORT}"}
)yaml";
  auto legacy = MustLoad(std::string(models) + R"yaml(
matrix:
  vars: {q: qwen, l: llama}
  evict_costs: {q: 5}
  sets:
    chat: "(l | q) & whisper"
    big: "q"
    all: "+chat | +big"
)yaml");
  ASSERT_TRUE(legacy->matrix.has_value());
  using S = std::vector<std::string>;
  // Each set once, in definition order ("big" and "all" add nothing new).
  EXPECT_THAT(
      legacy->matrix->allowed,
      ElementsAre(S{"llama", "whisper"}, S{"qwen", "whisper"}, S{"qwen"}));
  EXPECT_EQ(legacy->matrix->CostOf("qwen"), 5);
  EXPECT_EQ(legacy->matrix->CostOf("llama"), 1);
  auto routed = MustLoad(std::string(models) + R"yaml(
routing:
  router:
    use: matrix
    settings:
      matrix:
        sets: {pair: "qwen & llama"}
)yaml");
  ASSERT_TRUE(routed->matrix.has_value());
  EXPECT_THAT(routed->matrix->allowed, ElementsAre(S{"llama", "qwen"}));
  EXPECT_FALSE(MustLoad(models)->matrix.has_value());
  // +ref may name a later set (as in llama-swap); a cycle is an error.
  auto later = MustLoad(std::string(models) + R"yaml(
matrix:
  sets:
    all: "+chat | +big"
    chat: "llama & whisper"
    big: "qwen"
)yaml");
  EXPECT_THAT(later->matrix->allowed,
              ElementsAre(S{"llama", "whisper"}, S{"qwen"}));
  LoadResult cycle = LoadConfigText("c.yaml", std::string(models) + R"yaml(
matrix:
  sets: {a: "+b", b: "+a & qwen"}
)yaml",
                                    Env());
  ASSERT_FALSE(cycle.ok());
  EXPECT_THAT(cycle.errors[0].ToString(), HasSubstr("no such set, or one that "
                                                    "refers back"));
  // A legacy matrix next to routing.scheduler is still the matrix.
  auto with_scheduler = MustLoad(std::string(models) + R"yaml(
matrix:
  sets: {s: "qwen & llama"}
routing:
  scheduler: {use: fifo}
)yaml");
  EXPECT_TRUE(with_scheduler->matrix.has_value());
}

// llama-swap's rule: the --config file may not be in --config-dir too.
TEST(LoaderTest, TheConfigFileMayNotAlsoBeInTheConfigDir) {
  std::string dir =
      WriteDir("twice", {{"a.yaml", "models:\n  a: {cmd: \"x ${PORT}\"}\n"}});
  LoadResult r = LoadConfigSources(dir + "/../twice/a.yaml", dir, Env());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0].ToString(),
              HasSubstr("is also in --config-dir " + dir + " (as " + dir +
                        "/a.yaml); give it once"));
}

TEST(LoaderTest, ConfigDirFilesAreMergedInNameOrder) {
  std::string dir =
      WriteDir("merge", {{"b.yaml",
                          "models:\n  b: {cmd: \"x ${PORT}\"}\n"
                          "groups:\n  g: {members: [a, b]}\n"},
                         {"a.yml",
                          "macros:\n  flag: -v\n"
                          "models:\n  a: {cmd: \"x ${flag} ${PORT}\"}\n"},
                         {"notes.txt", "not: yaml: at: all"}});
  std::string main = dir + "/../merge-main.yaml";
  std::ofstream(main)
      << "startPort: 9000\nmodels:\n  m: {cmd: \"x ${PORT}\"}\n";
  LoadResult r = LoadConfigSources(main, dir, Env());
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<std::string> ids;
  for (const ModelConfig& m : r.config->models) ids.push_back(m.id);
  EXPECT_THAT(ids, ElementsAre("a", "b", "m"));
  EXPECT_EQ(r.config->start_port, 9000);
  EXPECT_THAT(r.config->FindModel("a")->argv, ElementsAre("x", "-v", "9000"));
  EXPECT_EQ(r.config->FindModel("a")->group, "g");
  EXPECT_EQ(r.config->file, main);
  // Only the directory.
  r = LoadConfigSources("", dir, Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r.config->models.size(), 2u);
}

// A file that is empty, or whose `models` are all commented out, is refused
// as a lone config file is: one truncated while it is saved (a reload, or
// --watch-config, reading it then) would otherwise stop its models.
TEST(LoaderTest, ConfigDirRefusesAnEmptyFileOrNullModels) {
  for (const char* text :
       {"", "# only comments\n", "models:\n#  b: {}\n", "models: ~\n"}) {
    std::string dir = WriteDir(
        "nullfile",
        {{"a.yaml", "models:\n  a: {cmd: \"x ${PORT}\"}\n"}, {"b.yaml", text}});
    LoadResult r = LoadConfigSources("", dir, Env());
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_THAT(r.errors[0].ToString(), ::testing::StartsWith(dir + "/b.yaml:"))
        << text;
    EXPECT_THAT(r.errors[0].ToString(),
                ::testing::AnyOf(HasSubstr("the file is empty"),
                                 HasSubstr("models: is empty (null)")))
        << text;
  }
  // A file without models at all is fine, as is `models: {}`.
  std::string dir =
      WriteDir("nomodels", {{"a.yaml", "models:\n  a: {cmd: \"x ${PORT}\"}\n"},
                            {"b.yaml", "models: {}\nhealthCheckTimeout: 30\n"},
                            {"c.yaml", "apiKeys: [k]\n"}});
  EXPECT_TRUE(LoadConfigSources("", dir, Env()).ok());
}

TEST(LoaderTest, ConfigDirMergesSettingsAsLlamaSwap) {
  // Groups one per file under routing, keys in two lists, an equal scalar
  // twice, a null that gives way.
  std::string dir = WriteDir(
      "deep", {{"1.yaml",
                "logLevel: info\napiKeys: [k1]\nmodels:\n  a: {cmd: x, proxy: "
                "'http://h:1'}\n  b: {cmd: x, proxy: 'http://h:2'}\n"
                "routing:\n  router:\n    settings:\n      groups:\n"
                "        g1: {members: [a]}\n"},
               {"2.yaml",
                "logLevel: info\napiKeys: [k2]\nmacros:\n"
                "routing:\n  router:\n    settings:\n      groups:\n"
                "        g2: {members: [b]}\n"}});
  LoadResult r = LoadConfigSources("", dir, Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r.config->api_keys, ElementsAre("k1", "k2"));
  EXPECT_EQ(r.config->FindModel("a")->group, "g1");
  EXPECT_EQ(r.config->FindModel("b")->group, "g2");
}

// As llama-swap's merge: a macro in two files with one value is one macro
// (another value is a clash); the matrix is one file's, key by key.
TEST(LoaderTest, ConfigDirMacrosAndTheMatrixMergeAsLlamaSwap) {
  std::string same = WriteDir(
      "macros-same",
      {{"1.yaml",
        "macros:\n  v: -q\nmodels:\n  a: {cmd: \"x ${v} ${PORT}\"}\n"},
       {"2.yaml",
        "macros:\n  v: -q\nmodels:\n  b: {cmd: \"y ${v} ${PORT}\"}\n"}});
  LoadResult r = LoadConfigSources("", same, Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r.config->models.size(), 2u);
  std::string other =
      WriteDir("macros-other",
               {{"1.yaml",
                 "macros:\n  v: -q\nmodels:\n  a: {cmd: \"x ${v} ${PORT}\"}\n"},
                {"2.yaml", "macros:\n  v: -w\n"}});
  r = LoadConfigSources("", other, Env());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0].ToString(),
              HasSubstr("2.yaml:2:6: macros.v: set differently in two files"));
  std::string matrix = WriteDir(
      "matrix-split",
      {{"1.yaml",
        "matrix:\n  sets: {x: a}\nmodels:\n  a: {cmd: \"x ${PORT}\"}\n"},
       {"2.yaml", "matrix:\n  sets: {y: a}\n"}});
  r = LoadConfigSources("", matrix, Env());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0].ToString(),
              HasSubstr("2.yaml:2:3: matrix.sets: defined again"));
}

TEST(LoaderTest, ConfigDirClashesAndErrorsNameTheirFile) {
  std::string dir =
      WriteDir("clash", {{"1.yaml",
                          "logLevel: info\nmodels:\n  a: {cmd: x, proxy: "
                          "'http://h:1'}\n"},
                         {"2.yaml",
                          "logLevel: debug\nmodels:\n  a: {cmd: y, proxy: "
                          "'http://h:2'}\n  b: {cmd: y, ttl: soon, proxy: "
                          "'http://h:3'}\n"}});
  LoadResult r = LoadConfigSources("", dir, Env());
  ASSERT_FALSE(r.ok());
  std::vector<std::string> errors;
  for (const Diagnostic& d : r.errors) errors.push_back(d.ToString());
  EXPECT_THAT(errors,
              ElementsAre(dir +
                              "/2.yaml:1:11: logLevel: set differently in "
                              "two files (first at " +
                              dir + "/1.yaml:1:11)",
                          dir +
                              "/2.yaml:3:3: models.a: defined again (first "
                              "at " +
                              dir + "/1.yaml:3:3)"));
  // Past the merge, a value's error names its own file.
  std::string bad = WriteDir("bad", {{"1.yaml", "models: {}\n"},
                                     {"2.yaml",
                                      "models:\n  b: {cmd: y, ttl: "
                                      "soon, proxy: 'http://h:3'}\n"}});
  r = LoadConfigSources("", bad, Env());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_THAT(r.errors[0].ToString(),
              ::testing::StartsWith(bad + "/2.yaml:2:20: models.b.ttl:"));
  EXPECT_THAT(
      LoadConfigSources("", WriteDir("empty", {}), Env()).errors[0].ToString(),
      HasSubstr("no *.yml or *.yaml file"));
  EXPECT_THAT(LoadConfigSources("", dir + "/nope", Env()).errors[0].ToString(),
              HasSubstr("cannot read the config directory"));
}

TEST(LoaderTest, ModelCannotBeStrippedOrSet) {
  LoadResult r = LoadConfigText("f.yaml", R"yaml(
models:
  a:
    cmd: x ${PORT}
    filters:
      stripParams: "stop.1, model, seed, stop.1, model.x"
      setParams: {model: other, seed: 1, model.x: 2, a.b: 3}
)yaml",
                                Env());
  ASSERT_TRUE(r.ok()) << r.status();
  // Paths (sjson's, as llama-swap's), in the order written, once each.
  EXPECT_THAT(r.config->models[0].filters.strip_params,
              ElementsAre("stop.1", "seed"));
  EXPECT_EQ(r.config->models[0].filters.set_params.ToJson(),
            R"({"seed":1,"a.b":3})");
  ASSERT_EQ(r.warnings.size(), 4u);
  EXPECT_EQ(r.warnings[0].ToString(),
            "f.yaml:6:20: models.a.filters.stripParams: 'model' can never be "
            "stripped; ignored");
  EXPECT_EQ(r.warnings[1].ToString(),
            "f.yaml:6:20: models.a.filters.stripParams: 'model.x' can never "
            "be stripped; ignored");
  EXPECT_EQ(r.warnings[2].ToString(),
            "f.yaml:7:19: models.a.filters.setParams.model: the model cannot "
            "be set by a filter; ignored (use useModelName)");
  EXPECT_THAT(r.warnings[3].ToString(),
              HasSubstr("models.a.filters.setParams.model.x: the model "
                        "cannot be set"));
}

TEST(LoaderTest, SetParamsByIdNamesAreAliasesWithTheModelIdExpanded) {
  auto c = MustLoad(R"yaml(
models:
  qwen:
    cmd: x ${PORT}
    filters:
      setParamsByID:
        "${MODEL_ID}:think": {enable_thinking: true, temperature: 0.6}
        "${MODEL_ID}": {enable_thinking: false}
    aliases: [q]
)yaml");
  const ModelConfig* m = c->FindModel("qwen:think");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->id, "qwen");
  EXPECT_THAT(m->aliases, ElementsAre("q", "qwen:think"));  // Not the id.
  ASSERT_EQ(m->filters.set_params_by_id.size(), 2u);
  EXPECT_EQ(m->filters.set_params_by_id.at("qwen:think").ToJson(),
            R"({"enable_thinking":true,"temperature":0.6})");
  EXPECT_EQ(m->filters.set_params_by_id.at("qwen").ToJson(),
            R"({"enable_thinking":false})");
}

TEST(LoaderTest, OtherMacrosInSetParamsByIdNamesAreWarnedAndKept) {
  LoadResult r = LoadConfigText("b.yaml", R"yaml(
macros: {base: qwen}
models:
  a:
    cmd: x ${PORT}
    filters:
      setParamsByID: {"${base}:think": {t: 1}}
)yaml",
                                Env());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_THAT(
      r.warnings[0].ToString(),
      HasSubstr("only ${MODEL_ID} is expanded in a setParamsByID name"));
  EXPECT_NE(r.config->FindModel("${base}:think"), nullptr);
}

TEST(LoaderTest, IncludeAliasesInList) {
  EXPECT_FALSE(MustLoad("models: {}\n")->include_aliases_in_list);
  LoadResult r = LoadConfigText(
      "a.yaml", "includeAliasesInList: true\nmodels: {}\n", Env());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r.config->include_aliases_in_list);
  EXPECT_TRUE(r.warnings.empty());
}

TEST(LoaderTest, BoolSpellingsLlamaSwapAccepts) {
  auto c = MustLoad(R"yaml(
models:
  a: {cmd: "x ${PORT}", unlisted: yes}
  b: {cmd: "x ${PORT}", unlisted: off}
  c: {cmd: "x ${PORT}", unlisted: On}
)yaml");
  EXPECT_TRUE(c->FindModel("a")->unlisted);
  EXPECT_FALSE(c->FindModel("b")->unlisted);
  EXPECT_TRUE(c->FindModel("c")->unlisted);
}

// A top-level YAML anchor holder (llama-swap users' `x-defaults: &model`
// merged by `<<: *model`) is skipped whole, its macros included, with one
// warning; the models get what it holds.
TEST(LoaderAnchorsTest, AnAnchorHolderIsSkippedWholeWithOneWarning) {
  LoadResult r = LoadConfigText("test.yaml", R"yaml(
x-defaults:
  base: &model
    cmd: /bin/sleep ${PORT}
    ttl: 60
  unused: &unused
    cmd: /bin/sleep ${PORT} ${env.NOT_SET} ${MODEL_ID}
models:
  a:
    <<: *model
    aliases: [aa]
)yaml",
                                Env());
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].ToString(),
            "test.yaml:2:1: x-defaults: unknown key; ignored");
  ASSERT_EQ(r.config->models.size(), 1u);
  EXPECT_EQ(r.config->models[0].ttl, absl::Seconds(60));
}

// The GPU settings: a 5 % reserve and a 5 s wait for the driver unless
// said otherwise (docs/gpu.md).
TEST(LoaderTest, GpuSettingsDefaultAndRead) {
  auto c = MustLoad("models:\n  a: {cmd: \"srv --port ${PORT}\"}\n");
  EXPECT_EQ(c->gpu_reserve_percent, 5);
  EXPECT_EQ(c->gpu_memory_wait, absl::Seconds(5));
  c = MustLoad(
      "gpu: {reservePercent: 12.5, memoryWaitTimeout: 0.25}\n"
      "models:\n  a: {cmd: \"srv --port ${PORT}\"}\n");
  EXPECT_EQ(c->gpu_reserve_percent, 12.5);
  EXPECT_EQ(c->gpu_memory_wait, absl::Milliseconds(250));
}

}  // namespace
}  // namespace modelplane::config
