#include "server/core/config/macros.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "re2/re2.h"

namespace modelplane::config {
namespace {

constexpr size_t kMaxMacroName = 63;

bool IsReserved(absl::string_view name) {
  return name == "PORT" || name == "MODEL_ID" || name == "PID";
}

std::string Ref(absl::string_view name) {
  return absl::StrCat("${", name, "}");
}

// Replaces `${name}` in `scalar` by `value`: the whole scalar takes the
// value's text and type when it is exactly `${name}`.
void SubstituteOne(YamlNode* scalar, absl::string_view name,
                   const YamlNode& value) {
  std::string ref = Ref(name);
  if (scalar->text == ref) {
    scalar->text = value.text;
    scalar->quoted = value.quoted;
    return;
  }
  if (scalar->text.find(ref) != std::string::npos) {
    scalar->text = absl::StrReplaceAll(scalar->text, {{ref, value.text}});
  }
}

}  // namespace

std::vector<std::string> MacroRefs(absl::string_view text) {
  // llama-swap's macro names (and env.NAME): `${A:-x}` or `${a.b}` is text,
  // as there.
  static const LazyRE2 kRef = {
      R"(\$\{([a-zA-Z0-9_-]+|env\.[a-zA-Z_][a-zA-Z0-9_]*)\})"};
  std::vector<std::string> refs;
  re2::StringPiece input(text.data(), text.size());
  std::string name;
  while (RE2::FindAndConsume(&input, *kRef, &name)) refs.push_back(name);
  return refs;
}

bool UsesMacro(absl::string_view text, absl::string_view name) {
  return text.find(Ref(name)) != absl::string_view::npos;
}

void ExpandEnv(YamlNode* node, const std::string& path, const EnvLookup& env,
               DiagSink* sink) {
  static const LazyRE2 kEnvName = {R"([A-Za-z_][A-Za-z0-9_]*)"};
  ForEachScalar(node, path, [&](YamlNode* scalar, const std::string& at) {
    if (scalar->text.find("${env.") == std::string::npos) return;
    for (const std::string& ref : MacroRefs(scalar->text)) {
      if (ref.rfind("env.", 0) != 0) continue;
      std::string name = ref.substr(4);
      if (!RE2::FullMatch(name, *kEnvName)) {
        sink->Error(scalar->pos, at,
                    absl::StrCat("bad environment variable name '", name, "'"));
        continue;
      }
      std::optional<std::string> value = env(name);
      if (!value) {
        sink->Error(scalar->pos, at,
                    absl::StrCat("environment variable '", name,
                                 "' is not set (used as ${env.", name, "})"));
        continue;
      }
      if (value->find_first_of(std::string("\r\n\0", 3)) != std::string::npos) {
        sink->Error(scalar->pos, at,
                    absl::StrCat("environment variable '", name,
                                 "' holds a newline or NUL, which a config "
                                 "value cannot take"));
        continue;
      }
      YamlNode v;
      v.kind = YamlNode::Kind::kScalar;
      v.text = *value;
      v.quoted = scalar->quoted;
      SubstituteOne(scalar, ref, v);
    }
  });
}

MacroSet MacroSet::Global(const YamlNode* macros, DiagSink* sink) {
  MacroSet set;
  set.AddAll(macros, "macros", sink);
  return set;
}

MacroSet MacroSet::ForModel(const std::string& model_id, const YamlNode* macros,
                            DiagSink* sink) const {
  MacroSet set;
  YamlNode id;
  id.kind = YamlNode::Kind::kScalar;
  id.text = model_id;
  id.quoted = true;
  set.macros_.push_back(Macro{"MODEL_ID", std::move(id)});
  for (const Macro& m : macros_) set.macros_.push_back(m);
  set.AddAll(macros, absl::StrCat("models.", model_id, ".macros"), sink);
  return set;
}

void MacroSet::AddAll(const YamlNode* macros, const std::string& scope,
                      DiagSink* sink) {
  static const LazyRE2 kName = {R"([A-Za-z0-9_-]+)"};
  if (macros == nullptr || macros->is_null()) return;
  if (!macros->is_map()) {
    sink->Error(macros->pos, scope,
                absl::StrCat("must be a mapping of name: value, not ",
                             macros->KindName()));
    return;
  }
  std::vector<size_t> added;  // Indexes of this scope's macros.
  for (const auto& [key, value] : macros->entries) {
    std::string path = absl::StrCat(scope, ".", key.text);
    if (!RE2::FullMatch(key.text, *kName) || key.text.size() > kMaxMacroName) {
      sink->Error(key.pos, path,
                  "macro names use only letters, digits, '_' and '-', and "
                  "are at most 63 characters long");
      continue;
    }
    if (IsReserved(key.text)) {
      sink->Error(key.pos, path,
                  absl::StrCat("macro name '", key.text,
                               "' is reserved (PORT, MODEL_ID and PID are set "
                               "by modelplane)"));
      continue;
    }
    if (!value.is_scalar()) {
      sink->Error(value.pos, path,
                  absl::StrCat("a macro's value must be a string, number or "
                               "bool, not ",
                               value.KindName()));
      continue;
    }
    auto it = std::find_if(macros_.begin(), macros_.end(),
                           [&](const Macro& m) { return m.name == key.text; });
    if (it != macros_.end() && it->name != "MODEL_ID") {
      if (std::find(added.begin(), added.end(), it - macros_.begin()) !=
          added.end()) {
        continue;  // A duplicate key; the YAML layer already rejected it.
      }
      it->value = value;  // A model macro overrides a global one in place.
      added.push_back(it - macros_.begin());
    } else {
      macros_.push_back(Macro{key.text, value});
      added.push_back(macros_.size() - 1);
    }
  }
  // A macro may use only the macros before it in substitution order.
  for (size_t index : added) {
    const Macro& m = macros_[index];
    for (const std::string& ref : MacroRefs(m.value.text)) {
      std::string path = absl::StrCat(scope, ".", m.name);
      if (ref == m.name) {
        sink->Error(m.value.pos, path,
                    absl::StrCat("macro '", m.name, "' refers to itself"));
        continue;
      }
      auto used = std::find_if(macros_.begin(), macros_.end(),
                               [&](const Macro& o) { return o.name == ref; });
      if (used != macros_.end() &&
          static_cast<size_t>(used - macros_.begin()) > index) {
        sink->Error(m.value.pos, path,
                    absl::StrCat("macro '", m.name, "' uses ${", ref,
                                 "}, which is defined after it (a macro may "
                                 "use only the macros defined before it)"));
      }
    }
  }
}

void MacroSet::ExpandScalar(YamlNode* scalar) const {
  for (auto it = macros_.rbegin(); it != macros_.rend(); ++it) {
    if (scalar->text.find("${") == std::string::npos) return;
    SubstituteOne(scalar, it->name, it->value);
  }
}

bool MacroSet::Defines(absl::string_view name) const {
  for (const Macro& m : macros_) {
    if (m.name == name) return true;
  }
  return false;
}

void MacroSet::Expand(YamlNode* node) const {
  ForEachScalar(node, "", [this](YamlNode* scalar, const std::string&) {
    ExpandScalar(scalar);
  });
}

void MacroSet::Substitute(YamlNode* node, absl::string_view name,
                          const YamlNode& value) {
  ForEachScalar(node, "", [&](YamlNode* scalar, const std::string&) {
    SubstituteOne(scalar, name, value);
  });
}

}  // namespace modelplane::config
