// A YAML document as a plain tree with source positions: the config loader's
// view of config.yaml. Parsing goes through yaml-cpp, the one place in the
// config layer that deals with exceptions (yaml-cpp reports errors by
// throwing; they become a Diagnostic here and never escape).
//
// Aliases are expanded (each use becomes a copy), `<<` merge keys are applied
// (keys written in the mapping win over merged ones), duplicate keys are an
// error, and a document that would expand past kMaxNodes nodes (an "alias
// bomb") is refused.
//
//   absl::StatusOr<YamlNode> root = ParseYaml(text, &error);
#ifndef MODELPLANE_SERVER_CORE_CONFIG_YAML_TREE_H_
#define MODELPLANE_SERVER_CORE_CONFIG_YAML_TREE_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/core/config/config.h"
#include "server/core/config/value.h"

namespace modelplane::config {

struct YamlNode {
  enum class Kind { kNull, kScalar, kSequence, kMapping };
  Kind kind = Kind::kNull;
  // kScalar: the text; `quoted` when it was quoted or tagged (then it is a
  // string whatever it looks like), else it is typed by the core schema.
  std::string text;
  bool quoted = false;
  SourcePos pos;
  std::vector<YamlNode> items;                         // kSequence
  std::vector<std::pair<YamlNode, YamlNode>> entries;  // kMapping, in order

  bool is_null() const { return kind == Kind::kNull; }
  bool is_scalar() const { return kind == Kind::kScalar; }
  bool is_map() const { return kind == Kind::kMapping; }
  bool is_seq() const { return kind == Kind::kSequence; }
  // kMapping: the value of `key`, or nullptr.
  const YamlNode* Get(absl::string_view key) const;
  // "a mapping", "a list", "a string", "null": for error messages.
  const char* KindName() const;
};

// Calls `fn(scalar, path)` for every scalar value under `node` (keys
// excepted), with its key path ("a.b[2].c"). `Node` is YamlNode or const
// YamlNode.
template <typename Node, typename Fn>
void ForEachScalar(Node* node, const std::string& path, Fn&& fn) {
  switch (node->kind) {
    case YamlNode::Kind::kScalar:
      fn(node, path);
      break;
    case YamlNode::Kind::kSequence:
      for (size_t i = 0; i < node->items.size(); ++i) {
        ForEachScalar(&node->items[i], path + "[" + std::to_string(i) + "]",
                      fn);
      }
      break;
    case YamlNode::Kind::kMapping:
      for (auto& entry : node->entries) {
        ForEachScalar(
            &entry.second,
            path.empty() ? entry.first.text : path + "." + entry.first.text,
            fn);
      }
      break;
    case YamlNode::Kind::kNull:
      break;
  }
}

inline constexpr size_t kMaxYamlNodes = 100000;
inline constexpr int kMaxYamlDepth = 100;

// Parses one YAML document. On failure, fills `error` (position and message;
// the caller sets the file) and returns nullopt. An empty document is a null
// node.
// `file` goes into every position (SourcePos::file), the error's too.
std::optional<YamlNode> ParseYaml(absl::string_view text, Diagnostic* error,
                                  int file = 0);

// Typed reading of a plain scalar by the YAML 1.2 core schema: null (~, null,
// empty), bool (true/false), int (decimal, 0x, 0o), float (incl. .inf, .nan);
// anything else, or a quoted scalar, is a string. Mappings and sequences
// convert recursively.
Value ToValue(const YamlNode& node);

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_YAML_TREE_H_
