// Typed reads of YAML values for the config loader. Each Read* checks the
// node's type, reports a precise error to the sink (file:line:col, key path,
// what was expected) and returns false when it does not fit.
#ifndef MODELPLANE_SERVER_CORE_CONFIG_DECODE_UTIL_H_
#define MODELPLANE_SERVER_CORE_CONFIG_DECODE_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/core/config/diag_sink.h"
#include "server/core/config/yaml_tree.h"

namespace modelplane::config {

// A scalar as text (numbers and bools too). Null reads as "".
bool ReadString(const YamlNode& node, const std::string& path, DiagSink* sink,
                std::string* out);
// ReadBool, ReadInt, ReadSeconds and ReadNumber: a blank (null) value
// returns false with no error, so the caller's default stays, as
// llama-swap's YAML decoder leaves a field it reads null.
// true/false (also yes/no/on/off, as llama-swap's YAML library accepts).
bool ReadBool(const YamlNode& node, const std::string& path, DiagSink* sink,
              bool* out);
bool ReadInt(const YamlNode& node, const std::string& path, DiagSink* sink,
             int64_t* out);
// A number of seconds (int or float), as llama-swap's timeouts are.
bool ReadSeconds(const YamlNode& node, const std::string& path, DiagSink* sink,
                 double* out);
// A finite number (int or float, unquoted); else an error naming `what`
// ("a number of seconds", "a percentage").
bool ReadNumber(const YamlNode& node, const std::string& path, DiagSink* sink,
                const char* what, double* out);
// A list of strings.
bool ReadStringList(const YamlNode& node, const std::string& path,
                    DiagSink* sink, std::vector<std::string>* out);

absl::Duration Seconds(double s);

// What the loader knows of a mapping's keys.
struct KeySet {
  std::vector<absl::string_view> supported;
  // llama-swap keys that modelplane does not implement yet: loaded with a
  // warning naming the key, never silently ignored.
  std::vector<absl::string_view> unsupported;
};

// Warns about every key of `map` that `keys` does not support: unsupported
// llama-swap keys by name, unknown ones with the nearest known key
// suggested ("did you mean ...").
void CheckKeys(const YamlNode& map, const std::string& path, const KeySet& keys,
               DiagSink* sink);

// The known key nearest to `key` by edit distance (case-insensitive), or ""
// when none is close.
std::string NearestKey(absl::string_view key,
                       const std::vector<absl::string_view>& known);

std::string JoinPath(const std::string& path, absl::string_view key);

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_DECODE_UTIL_H_
