#include "server/core/config/config.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace modelplane::config {

std::string Diagnostic::ToString() const {
  std::string out = file.empty() ? "config" : file;
  if (pos.line > 0) absl::StrAppend(&out, ":", pos.line, ":", pos.column);
  absl::StrAppend(&out, ": ");
  if (!key_path.empty()) absl::StrAppend(&out, key_path, ": ");
  absl::StrAppend(&out, message);
  return out;
}

const ModelConfig* Config::FindModel(const std::string& name) const {
  auto it = std::lower_bound(
      models.begin(), models.end(), name,
      [](const ModelConfig& m, const std::string& id) { return m.id < id; });
  if (it != models.end() && it->id == name) return &*it;
  for (const ModelConfig& m : models) {
    if (std::find(m.aliases.begin(), m.aliases.end(), name) !=
        m.aliases.end()) {
      return &m;
    }
  }
  return nullptr;
}

const GroupConfig* Config::FindGroup(const std::string& id) const {
  for (const GroupConfig& g : groups) {
    if (g.id == id) return &g;
  }
  return nullptr;
}

}  // namespace modelplane::config
