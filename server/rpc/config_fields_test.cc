// Holds the config's settings together: every key a `models.<id>` entry
// takes (config::ModelKeys, the loader's own list; and the keys of its
// `timeouts` and `filters`) has a sample here,
// and changing it alone must show in the reload diff (restart or update),
// in the JSON print-out (--print-config) and, unless listed below with the
// reason, in the API's Model. Every top-level key (config::GlobalKeys) has
// one too, held to the diff, the print-out and the data plane's settings.
// A key added to the loader and forgotten in diff.cc, config_json.cc or
// convert.cc fails this test.
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/core/config/config_json.h"
#include "server/core/config/diff.h"
#include "server/core/config/loader.h"
#include "server/core/config/model_decoder.h"
#include "server/rpc/convert.h"

namespace modelplane::rpc {
namespace {

// Each key's value in the changed config (the base sets none but cmd).
const std::map<std::string, std::vector<std::string>>& Samples() {
  static const auto* samples =
      new std::map<std::string, std::vector<std::string>>{
          {"cmd", {"cmd: other ${PORT}"}},
          {"cmdStop", {"cmdStop: kill ${PID}"}},
          {"proxy", {"proxy: http://127.0.0.1:9999"}},
          {"checkEndpoint", {"checkEndpoint: /ready"}},
          {"ttl", {"ttl: 60"}},
          {"unloadTimeout", {"unloadTimeout: 7"}},
          {"aliases", {"aliases: [other]"}},
          {"env", {"env: [A=1]"}},
          {"name", {"name: Other"}},
          {"description", {"description: d"}},
          {"unlisted", {"unlisted: true"}},
          {"metadata", {"metadata: {k: v}"}},
          {"useModelName", {"useModelName: up"}},
          {"concurrencyLimit", {"concurrencyLimit: 3"}},
          {"filters", {"filters: {stripParams: temperature}"}},
          {"macros", {"macros: {flag: -v}", "cmd: x ${flag} ${PORT}"}},
          {"timeouts", {"timeouts: {connect: 5}"}},
          {"sendLoadingState", {"sendLoadingState: true"}},
          {"healthCheckTimeout", {"healthCheckTimeout: 77"}},
          {"readyPattern", {"readyPattern: ready"}},
          {"maxQueueWait", {"maxQueueWait: 3"}},
          {"priority", {"priority: 5"}},
          {"replicas", {"replicas: {max: 2, spilloverAfterMs: 500}"}},
          {"compat", {"compat: {ignoreWebsockets: true}"}},
          {"capabilities",
           {"capabilities: {in: [text, image], out: [text], tools: true}"}},
          {"tls", {"tls: {insecureSkipVerify: true}"}},
          {"resources", {"resources: {vramMiB: 4096, gpus: [0, 1]}"}},
          {"sleep", {"sleep: /sleep?level=1", "wake: /wake_up"}},
          {"wake", {"sleep: {cmd: 'pause ${PID}'}", "wake: {cmd: 'go'}"}},
      };
  return *samples;
}

// Settings of the manager's alone, not in the API's Model (why).
const std::map<std::string, std::string>& NotInTheApi() {
  static const auto* keys = new std::map<std::string, std::string>{
      {"cmdStop", "the command is the manager's business"},
      {"checkEndpoint", "the health probe is the manager's"},
      {"unloadTimeout", "how the manager stops it"},
      {"env", "the process environment is the manager's business"},
      {"macros", "expanded into cmd (the sample changes cmd)"},
      {"healthCheckTimeout", "how long the manager waits for it"},
      {"readyPattern", "how the manager sees it ready"},
      {"maxQueueWait", "the scheduler's"},
      {"priority", "the scheduler's"},
      {"sleep", "how the manager evicts it (its state shows it asleep)"},
      {"wake", "how the manager wakes it"},
  };
  return *keys;
}

std::shared_ptr<const config::Config> Load(
    const std::vector<std::string>& model_lines) {
  std::string text = "models:\n  a:\n";
  bool cmd = false;
  for (const std::string& l : model_lines) {
    absl::StrAppend(&text, "    ", l, "\n");
    cmd |= l.rfind("cmd:", 0) == 0;
  }
  if (!cmd) absl::StrAppend(&text, "    cmd: x ${PORT}\n");
  config::LoadResult r = config::LoadConfigText(
      "f.yaml", text, [](auto&) { return std::optional<std::string>(); });
  EXPECT_TRUE(r.ok()) << text << r.status();
  return r.config;
}

v1::Model Proto(const config::Config& c) {
  scheduler::ModelView view;
  view.config = std::make_shared<config::ModelConfig>(c.models[0]);
  v1::Model out;
  ToProto(view, &out);
  return out;
}

TEST(ConfigFieldsTest, EveryModelKeyShowsInTheDiffThePrintOutAndTheApi) {
  std::shared_ptr<const config::Config> base = Load({});
  ASSERT_NE(base, nullptr);
  std::set<std::string> missing;
  for (absl::string_view key : config::ModelKeys().supported) {
    auto sample = Samples().find(std::string(key));
    if (sample == Samples().end()) {
      missing.insert(std::string(key));
      continue;
    }
    std::shared_ptr<const config::Config> changed = Load(sample->second);
    ASSERT_NE(changed, nullptr) << key;
    config::ConfigDiff d = config::DiffConfigs(*base, *changed);
    bool seen = !d.restart.empty() || !d.update.empty();
    EXPECT_TRUE(seen) << key << ": the reload diff does not see it (diff.cc)";
    EXPECT_NE(config::ConfigToJson(*base), config::ConfigToJson(*changed))
        << key << ": --print-config does not show it (config_json.cc)";
    if (NotInTheApi().count(std::string(key)) == 0) {
      EXPECT_FALSE(google::protobuf::util::MessageDifferencer::Equals(
          Proto(*base), Proto(*changed)))
          << key << ": the API's Model does not carry it (convert.cc)";
    }
  }
  EXPECT_TRUE(missing.empty())
      << "model keys with no sample here: " << absl::StrJoin(missing, ", ");
  // And no sample for a key the loader does not take.
  for (const auto& [key, lines] : Samples()) {
    const auto& supported = config::ModelKeys().supported;
    EXPECT_NE(std::find(supported.begin(), supported.end(), key),
              supported.end())
        << key;
  }
}

// The sub-keys of a model's `timeouts` and `filters` maps, held the same
// way (config::ModelTimeoutKeys, config::ModelFilterKeys).
TEST(ConfigFieldsTest, EveryTimeoutAndFilterKeyShowsToo) {
  const std::map<std::string, std::string> samples = {
      {"connect", "timeouts: {connect: 5}"},
      {"responseHeader", "timeouts: {responseHeader: 5}"},
      {"idleConn", "timeouts: {idleConn: 5}"},
      {"tlsHandshake", "timeouts: {tlsHandshake: 5}"},
      {"keepalive", "timeouts: {keepalive: 5}"},
      {"expectContinue", "timeouts: {expectContinue: 5}"},
      {"stripParams", "filters: {stripParams: temperature}"},
      {"strip_params", "filters: {strip_params: temperature}"},
      {"setParams", "filters: {setParams: {top_k: 5}}"},
      {"setParamsByID", "filters: {setParamsByID: {a: {top_k: 5}}}"},
  };
  std::shared_ptr<const config::Config> base = Load({});
  ASSERT_NE(base, nullptr);
  std::vector<absl::string_view> keys;
  for (absl::string_view k : config::ModelTimeoutKeys().supported) {
    keys.push_back(k);
  }
  for (absl::string_view k : config::ModelFilterKeys().supported) {
    keys.push_back(k);
  }
  for (absl::string_view key : keys) {
    auto sample = samples.find(std::string(key));
    ASSERT_NE(sample, samples.end()) << key << " has no sample here";
    std::shared_ptr<const config::Config> changed = Load({sample->second});
    ASSERT_NE(changed, nullptr) << key;
    config::ConfigDiff d = config::DiffConfigs(*base, *changed);
    EXPECT_FALSE(d.update.empty() && d.restart.empty())
        << key << ": the reload diff does not see it (diff.cc)";
    EXPECT_NE(config::ConfigToJson(*base), config::ConfigToJson(*changed))
        << key << ": --print-config does not show it (config_json.cc)";
    EXPECT_FALSE(google::protobuf::util::MessageDifferencer::Equals(
        Proto(*base), Proto(*changed)))
        << key << ": the API's Model does not carry it (convert.cc)";
  }
}

// Every top-level key (config::GlobalKeys): changed alone, the reload diff
// sees it and --print-config shows it; the data plane's settings (what the
// proxy gets in SETTINGS events) change with the keys that are the data
// plane's, and only with those.
TEST(ConfigFieldsTest, EveryGlobalKeyShowsInTheDiffThePrintOutAndTheSettings) {
  struct Sample {
    std::string yaml;  // Top-level lines.
    bool data_plane;   // Part of v1::DataPlaneSettings.
  };
  const std::map<std::string, Sample> samples = {
      {"models", {"", false}},  // The base itself; covered above.
      {"macros", {"macros: {m: -v}\n", false}},
      {"healthCheckTimeout", {"healthCheckTimeout: 99\n", false}},
      {"globalTTL", {"globalTTL: 60\n", false}},
      {"unloadTimeout", {"unloadTimeout: 9\n", false}},
      {"startPort", {"startPort: 7000\n", false}},
      {"logLevel", {"logLevel: debug\n", false}},
      {"apiKeys", {"apiKeys: [k1]\n", true}},
      {"groups", {"groups: {g: {members: [a]}}\n", false}},
      {"routing",
       {"routing: {router: {use: group, settings: {groups: {g: {members: "
        "[a]}}}}}\n",
        false}},
      {"hooks",
       {"hooks: {on_startup: {preload: [a], profile: work}}\n"
        "profiles: {work: {pins: {x: a}}}\n",
        true}},
      {"includeAliasesInList", {"includeAliasesInList: true\n", true}},
      {"sendLoadingState", {"sendLoadingState: true\n", false}},
      {"upstream", {"upstream: {ignorePaths: ['\\.ico$']}\n", true}},
      {"peers",
       {"peers: {p: {proxy: 'http://127.0.0.1:9', models: [m]}}\n", true}},
      {"selectors", {"selectors: {s: {targets: [a]}}\n", true}},
      {"profiles", {"profiles: {work: {pins: {x: a}}}\n", true}},
      {"logToStdout", {"logToStdout: both\n", false}},
      {"matrix", {"matrix: {sets: {one: a}}\n", false}},
      {"metricsMaxInMemory", {"metricsMaxInMemory: 50\n", true}},
      {"store", {"store: {path: /tmp/activity.db, maxRows: 5}\n", true}},
      {"gpu", {"gpu: {reservePercent: 10, memoryWaitTimeout: 2}\n", false}},
  };
  // Keys whose change alone is not a change of anything (why).
  const std::map<std::string, std::string> invisible = {
      {"models", "the base; every model key is held by the test above"},
      {"macros", "expanded where used; used nowhere here"},
  };
  // Keys read when the manager starts, not on a reload (why): printed, but
  // no change for the reload diff.
  const std::map<std::string, std::string> at_start = {
      {"logToStdout",
       "where model output goes is set up at start, as in llama-swap"},
  };
  auto load = [](const std::string& top) {
    std::string text = top + "models:\n  a:\n    cmd: x ${PORT}\n";
    config::LoadResult r = config::LoadConfigText(
        "f.yaml", text, [](auto&) { return std::optional<std::string>(); });
    EXPECT_TRUE(r.ok()) << text << r.status();
    return r.config;
  };
  auto settings = [](const config::Config& c) {
    v1::DataPlaneSettings s;
    ToProto(c, &s);
    return s;
  };
  std::shared_ptr<const config::Config> base = load("");
  ASSERT_NE(base, nullptr);
  for (absl::string_view key : config::GlobalKeys().supported) {
    auto sample = samples.find(std::string(key));
    ASSERT_NE(sample, samples.end()) << key << " has no sample here";
    if (invisible.count(std::string(key)) != 0) continue;
    std::shared_ptr<const config::Config> changed = load(sample->second.yaml);
    ASSERT_NE(changed, nullptr) << key;
    config::ConfigDiff d = config::DiffConfigs(*base, *changed);
    EXPECT_EQ(d.empty(), at_start.count(std::string(key)) != 0)
        << key << ": the reload diff (diff.cc)";
    EXPECT_NE(config::ConfigToJson(*base), config::ConfigToJson(*changed))
        << key << ": --print-config does not show it (config_json.cc)";
    EXPECT_EQ(!google::protobuf::util::MessageDifferencer::Equals(
                  settings(*base), settings(*changed)),
              sample->second.data_plane)
        << key << ": the data-plane settings (convert.cc)";
  }
}

}  // namespace
}  // namespace modelplane::rpc
