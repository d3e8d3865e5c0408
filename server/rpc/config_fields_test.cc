// Holds the config's model settings together: every key a `models.<id>`
// entry takes (config::ModelKeys, the loader's own list) has a sample here,
// and changing it alone must show in the reload diff (restart or update),
// in the JSON print-out (--print-config) and, unless listed below with the
// reason, in the API's Model. A key added to the loader and forgotten in
// diff.cc, config_json.cc or convert.cc fails this test.
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
      };
  return *samples;
}

// Settings of the manager's alone, not in the API's Model (why).
const std::map<std::string, std::string>& NotInTheApi() {
  static const auto* keys = new std::map<std::string, std::string>{
      {"cmd", "the command is the manager's business"},
      {"cmdStop", "the command is the manager's business"},
      {"checkEndpoint", "the health probe is the manager's"},
      {"unloadTimeout", "how the manager stops it"},
      {"env", "the process environment is the manager's business"},
      {"macros", "expanded into cmd (the sample changes cmd)"},
      {"healthCheckTimeout", "how long the manager waits for it"},
      {"readyPattern", "how the manager sees it ready"},
      {"maxQueueWait", "the scheduler's"},
      {"priority", "the scheduler's"},
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

}  // namespace
}  // namespace modelplane::rpc
