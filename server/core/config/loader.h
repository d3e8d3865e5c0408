// Loads a llama-swap compatible config.yaml into a Config (config.h).
//
// The loader is a pure function of the file's text and the environment, so
// it can be tested with tables and fuzzed: it never crashes, never throws,
// and reports every problem it finds (not only the first), each as
// `file:line:col: key.path: message`. docs/config.md describes the format.
//
//   LoadResult r = LoadConfigFile("config.yaml", ProcessEnv());
//   for (const Diagnostic& w : r.warnings) LOG(WARNING) << w.ToString();
//   if (!r.ok()) return r.status();
//   std::shared_ptr<const Config> config = r.config;
#ifndef MODELPLANE_SERVER_CORE_CONFIG_LOADER_H_
#define MODELPLANE_SERVER_CORE_CONFIG_LOADER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "server/core/config/config.h"
#include "server/core/config/decode_util.h"
#include "server/core/config/macros.h"

namespace modelplane::config {

struct LoadResult {
  std::shared_ptr<const Config> config;  // Null when there are errors.
  std::vector<Diagnostic> errors;
  std::vector<Diagnostic> warnings;

  bool ok() const { return config != nullptr; }
  // OK, or InvalidArgument with one error per line.
  absl::Status status() const;
};

// The ${PORT}s a running config gave its models. A reload passes them so
// that adding or removing one model moves no other model's port (a moved
// port changes the command, and the model would restart): every model that
// was in `previous` keeps its port, and new ones take the lowest ports from
// startPort that no kept model holds. Ignored when startPort changed.
struct PortHints {
  int start_port = 0;
  std::map<std::string, int> ports;  // Model id -> its ${PORT}.
  static PortHints Of(const Config& previous);
};

// The top-level keys a config takes (docs/config.md); `unsupported` are
// llama-swap's not built, loaded with a warning. A new one is held to the
// diff, the JSON print-out and the data-plane settings by
// server/rpc/config_fields_test.cc.
const KeySet& GlobalKeys();

// Loads from text; `file_name` is used in messages and as Config::file.
LoadResult LoadConfigText(absl::string_view file_name, absl::string_view text,
                          const EnvLookup& env,
                          const PortHints* hints = nullptr);

// Reads and loads a file. An unreadable file is an error like any other.
LoadResult LoadConfigFile(const std::string& path, const EnvLookup& env);

// llama-swap's -config / -config-dir: `path` (may be empty) and then every
// *.yml and *.yaml file directly in `dir` (may be empty; sorted by name),
// merged as llama-swap merges them: mappings key by key, lists joined, an
// equal scalar accepted, a null giving way; an id in two files (models,
// groups, peers, profiles, selectors, macros, the matrix's entries) or a
// setting made differently in two is an error. Messages name the file each
// position is in.
LoadResult LoadConfigSources(const std::string& path, const std::string& dir,
                             const EnvLookup& env,
                             const PortHints* hints = nullptr);
// The files LoadConfigSources reads from `dir`, sorted.
std::vector<std::string> ConfigDirFiles(const std::string& dir);

// The process environment (getenv).
EnvLookup ProcessEnv();

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_LOADER_H_
