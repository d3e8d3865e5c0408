// modelmanager: the control plane of modelplane.
//
//   modelmanager --config config.yaml [--listen 127.0.0.1:50051]   serve
//   modelmanager --config config.yaml --check         validate, summarize
//   modelmanager --config config.yaml --print-config  the resolved config
//
// --check and --print-config start nothing. docs/manager.md has the rest.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/flags.h"
#include "common/lock_checks.h"
#include "common/version.h"
#include "server/core/config/config_json.h"
#include "server/core/config/loader.h"
#include "server/runtime/process_launcher.h"
#include "server/runtime/supervisor.h"
#include "server/serve.h"

namespace modelplane {
namespace {

constexpr int kExitInvalid = 2;

// An argv word as a shell would need it written.
std::string Quote(const std::string& word) {
  if (!word.empty() &&
      word.find_first_of(" \t\n'\"\\$`#&|;<>()*?[]{}~") == std::string::npos) {
    return word;
  }
  std::string out = "'";
  for (char c : word) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

void PrintSummary(const config::Config& c) {
  for (const config::ModelConfig& m : c.models) {
    std::vector<std::string> words;
    for (const std::string& w : m.argv) words.push_back(Quote(w));
    // Under a swap matrix groups do not apply.
    printf("%s\tgroup=%s\tupstream=%s\targv=%s\n", m.id.c_str(),
           c.matrix ? "-" : m.group.c_str(), m.proxy.c_str(),
           absl::StrJoin(words, " ").c_str());
  }
  if (c.matrix) {
    printf("%s: OK: %zu model(s), swap matrix of %zu allowed set(s)\n",
           c.file.c_str(), c.models.size(), c.matrix->allowed.size());
    return;
  }
  printf("%s: OK: %zu model(s), %zu group(s)\n", c.file.c_str(),
         c.models.size(), c.groups.size());
}

int Main(int argc, char** argv) {
  SkipLockOrderChecksWhenOptimized();
  FlagParser parser(
      "modelmanager --config FILE [--listen ADDR] [flags]\n"
      "       modelmanager --config FILE (--check | --print-config)");
  bool check = false;
  bool print_config = false;
  ServeOptions serve;
  RegisterServeFlags(&parser, &serve, /*one_host=*/false);
  bool version = false;
  parser.Bool("version", &version, "print the version and the build's commit");
  parser.Bool("check", &check,
              "validate the config, print warnings and a line per model");
  parser.Bool("print-config", &print_config,
              "print the resolved config as JSON");
  absl::StatusOr<std::vector<std::string>> rest = parser.Parse(argc, argv);
  if (!rest.ok() && absl::IsNotFound(rest.status())) {
    printf("%s", parser.Usage().c_str());
    return 0;
  }
  if (rest.ok() && version) {
    printf("%s\n", VersionLine("modelmanager").c_str());
    return 0;
  }
  std::string problem;
  if (!rest.ok()) {
    problem = std::string(rest.status().message());
  } else if (!rest->empty()) {
    problem = absl::StrCat("unexpected argument '", rest->front(), "'");
  } else {
    problem = CheckServeOptions(serve);
  }
  if (!problem.empty()) {
    fprintf(stderr, "modelmanager: %s\n%s", problem.c_str(),
            parser.Usage().c_str());
    return kExitInvalid;
  }
  if (!check && !print_config) return Serve(serve);
  const std::string& config_path = serve.config_path;
  const std::string& config_dir = serve.config_dir;
  config::LoadResult result =
      config::LoadConfigSources(config_path, config_dir, config::ProcessEnv());
  for (const config::Diagnostic& w : result.warnings) {
    fprintf(stderr, "warning: %s\n", w.ToString().c_str());
  }
  for (const config::Diagnostic& e : result.errors) {
    fprintf(stderr, "%s\n", e.ToString().c_str());
  }
  if (!result.ok()) {
    fprintf(stderr, "%s: invalid: %zu error(s)\n",
            (config_path.empty() ? config_dir : config_path).c_str(),
            result.errors.size());
    return kExitInvalid;
  }
  if (check) {
    // A command that cannot run here is only a warning (it may be installed
    // before the model is first used), but it is the likeliest typo.
    for (const config::ModelConfig& m : result.config->models) {
      absl::Status runnable =
          runtime::CheckExecutable(actor::SpawnSpec{m.argv, m.env});
      if (runnable.ok()) continue;
      fprintf(
          stderr, "warning: %s\n",
          config::Diagnostic{result.config->file, m.pos,
                             absl::StrCat("models.", m.id, ".cmd"),
                             absl::StrCat("cannot run: ", runnable.message())}
              .ToString()
              .c_str());
    }
    PrintSummary(*result.config);
  }
  if (print_config) printf("%s", config::ConfigToJson(*result.config).c_str());
  return 0;
}

}  // namespace
}  // namespace modelplane

int main(int argc, char** argv) {
  // Supervisors (forks of this process) write their title over it.
  modelplane::runtime::SetProcessTitleArea(argc, argv);
  return modelplane::Main(argc, argv);
}
