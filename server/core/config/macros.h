// Macro expansion for config.yaml, llama-swap compatible:
//
//   * `${env.NAME}` is replaced by the environment variable NAME in every
//     value of the file (macro values included); a missing variable is an
//     error. (llama-swap substitutes it in the raw text, so it also works in
//     keys; modelplane substitutes values only, so a value can never break
//     the YAML around it.)
//   * `macros:` is an ordered mapping. A macro may use the macros defined
//     before it; using one defined after it, or itself, is an error. Names
//     are [A-Za-z0-9_-], under 64 characters; PORT, MODEL_ID and PID are
//     reserved. Values are scalars and keep their YAML type.
//   * A model's own `macros:` override global ones of the same name (in
//     place, so a global macro that uses the name sees the override) and add
//     new ones after them. `${MODEL_ID}` is available to every macro of a
//     model.
//   * A value that is exactly `${name}` takes the macro's type (an int stays
//     an int); elsewhere the macro's text is spliced into the string.
//
//   MacroSet globals = MacroSet::Global(root.Get("macros"), env, &sink);
//   MacroSet m = globals.ForModel("qwen", model.Get("macros"), &sink);
//   m.Expand(&model_node);
#ifndef MODELPLANE_SERVER_CORE_CONFIG_MACROS_H_
#define MODELPLANE_SERVER_CORE_CONFIG_MACROS_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/core/config/diag_sink.h"
#include "server/core/config/yaml_tree.h"

namespace modelplane::config {

// Looks up an environment variable; nullopt when it is not set.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// Replaces `${env.NAME}` in every scalar under `node` (keys excepted).
// `path` names `node` in error messages.
void ExpandEnv(YamlNode* node, const std::string& path, const EnvLookup& env,
               DiagSink* sink);

// Every `${...}` reference in `text`, as the names between the braces.
std::vector<std::string> MacroRefs(absl::string_view text);

// True when `text` holds `${name}`.
bool UsesMacro(absl::string_view text, absl::string_view name);

class MacroSet {
 public:
  // The global `macros:` mapping (may be null). Errors go to `sink`.
  static MacroSet Global(const YamlNode* macros, DiagSink* sink);

  // This set plus a model's own macros and MODEL_ID.
  MacroSet ForModel(const std::string& model_id, const YamlNode* macros,
                    DiagSink* sink) const;

  // Expands every scalar under `node` (keys excepted).
  void Expand(YamlNode* node) const;

  // Whether a macro `name` is in the set (MODEL_ID too, in a model's).
  bool Defines(absl::string_view name) const;

  // Replaces `${name}` in every scalar under `node` with `value`, as a
  // macro named `name` would (used for ${PORT}).
  static void Substitute(YamlNode* node, absl::string_view name,
                         const YamlNode& value);

 private:
  struct Macro {
    std::string name;
    YamlNode value;  // A scalar.
  };

  // Checks and appends the entries of a `macros:` mapping. `scope` names it
  // in errors ("macros" or "models.<id>.macros").
  void AddAll(const YamlNode* macros, const std::string& scope, DiagSink* sink);
  void ExpandScalar(YamlNode* scalar) const;

  // Substituted from the last to the first, so a macro's value may use the
  // macros before it.
  std::vector<Macro> macros_;
};

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_MACROS_H_
