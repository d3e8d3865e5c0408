#include "server/core/config/yaml_tree.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "re2/re2.h"

namespace modelplane::config {
namespace {

SourcePos PosOf(const YAML::Mark& mark) {
  if (mark.line < 0) return SourcePos{};
  return SourcePos{mark.line + 1, mark.column + 1};
}

class Converter {
 public:
  explicit Converter(Diagnostic* error) : error_(error) {}

  bool Convert(const YAML::Node& in, YamlNode* out) {
    // yaml-cpp lets an alias refer to the mapping that contains it; the
    // depth bound turns that cycle into an error instead of a stack overflow.
    if (depth_ >= kMaxYamlDepth) {
      return Fail(in.Mark(), absl::StrCat("nested more than ", kMaxYamlDepth,
                                          " levels deep (or an alias refers "
                                          "to its own parent)"));
    }
    ++depth_;
    bool ok = ConvertNode(in, out);
    --depth_;
    return ok;
  }

 private:
  bool ConvertNode(const YAML::Node& in, YamlNode* out) {
    if (++nodes_ > kMaxYamlNodes) {
      return Fail(in.Mark(),
                  absl::StrCat("document expands to more than ", kMaxYamlNodes,
                               " nodes (aliases used too often)"));
    }
    out->pos = PosOf(in.Mark());
    switch (in.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        out->kind = YamlNode::Kind::kNull;
        return true;
      case YAML::NodeType::Scalar: {
        const std::string& tag = in.Tag();
        if (tag == "tag:yaml.org,2002:null") {  // `!!null`: null, as in Go.
          out->kind = YamlNode::Kind::kNull;
          return true;
        }
        out->kind = YamlNode::Kind::kScalar;
        out->text = in.Scalar();
        out->quoted = tag == "!" || tag == "tag:yaml.org,2002:str";
        return true;
      }
      case YAML::NodeType::Sequence:
        out->kind = YamlNode::Kind::kSequence;
        for (const YAML::Node& item : in) {
          out->items.emplace_back();
          if (!Convert(item, &out->items.back())) return false;
        }
        return true;
      case YAML::NodeType::Map:
        out->kind = YamlNode::Kind::kMapping;
        return ConvertMap(in, out);
    }
    return Fail(in.Mark(), "unknown YAML node type");
  }

  bool ConvertMap(const YAML::Node& in, YamlNode* out) {
    absl::flat_hash_set<std::string> seen;
    std::vector<YamlNode> merges;
    for (const auto& kv : in) {
      YamlNode key, value;
      if (!Convert(kv.first, &key) || !Convert(kv.second, &value)) return false;
      if (!key.is_scalar()) {
        return Fail(kv.first.Mark(), "mapping keys must be plain strings");
      }
      if (key.text == "<<" && !key.quoted) {
        merges.push_back(std::move(value));
        continue;
      }
      if (!seen.insert(key.text).second) {
        return Fail(kv.first.Mark(), absl::StrCat("mapping key \"", key.text,
                                                  "\" already defined"));
      }
      out->entries.emplace_back(std::move(key), std::move(value));
    }
    // `<<: *a` or `<<: [*a, *b]`: keys not written here come from the merged
    // mappings, earlier ones first.
    for (const YamlNode& merge : merges) {
      std::vector<const YamlNode*> sources;
      if (merge.is_map()) sources.push_back(&merge);
      if (merge.is_seq()) {
        for (const YamlNode& m : merge.items) sources.push_back(&m);
      }
      if (sources.empty() && !merge.is_null()) {
        return FailAt(merge.pos,
                      "a merge key (<<) needs a mapping or a list "
                      "of mappings");
      }
      for (const YamlNode* source : sources) {
        if (!source->is_map()) {
          return FailAt(source->pos,
                        "a merge key (<<) needs a mapping or a "
                        "list of mappings");
        }
        for (const auto& [k, v] : source->entries) {
          if (seen.insert(k.text).second) out->entries.emplace_back(k, v);
        }
      }
    }
    return true;
  }

  bool Fail(const YAML::Mark& mark, std::string message) {
    return FailAt(PosOf(mark), std::move(message));
  }

  bool FailAt(SourcePos pos, std::string message) {
    error_->pos = pos;
    error_->message = std::move(message);
    return false;
  }

  Diagnostic* error_;
  size_t nodes_ = 0;
  int depth_ = 0;
};

std::optional<Value> PlainScalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    return Value();
  }
  if (s == "true" || s == "True" || s == "TRUE") return Value::Bool(true);
  if (s == "false" || s == "False" || s == "FALSE") return Value::Bool(false);
  static const LazyRE2 kInt = {R"([-+]?[0-9]+)"};
  static const LazyRE2 kHex = {R"(0x[0-9a-fA-F]+)"};
  static const LazyRE2 kOct = {R"(0o[0-7]+)"};
  static const LazyRE2 kFloat = {
      R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)"};
  int64_t i;
  if (RE2::FullMatch(s, *kInt) && absl::SimpleAtoi(s, &i)) {
    return Value::Int(i);
  }
  if (RE2::FullMatch(s, *kHex) || RE2::FullMatch(s, *kOct)) {
    errno = 0;
    unsigned long long u =
        std::strtoull(s.c_str() + 2, nullptr, s[1] == 'x' ? 16 : 8);
    if (errno == 0 && u <= static_cast<unsigned long long>(
                               std::numeric_limits<int64_t>::max())) {
      return Value::Int(static_cast<int64_t>(u));
    }
  }
  double d;
  if (RE2::FullMatch(s, *kFloat) && absl::SimpleAtod(s, &d)) {
    return Value::Double(d);
  }
  std::string lower = absl::AsciiStrToLower(s);
  if (lower == ".inf" || lower == "+.inf") {
    return Value::Double(std::numeric_limits<double>::infinity());
  }
  if (lower == "-.inf") {
    return Value::Double(-std::numeric_limits<double>::infinity());
  }
  if (lower == ".nan") return Value::Double(std::nan(""));
  return std::nullopt;
}

}  // namespace

const YamlNode* YamlNode::Get(absl::string_view key) const {
  for (const auto& [k, v] : entries) {
    if (k.text == key) return &v;
  }
  return nullptr;
}

const char* YamlNode::KindName() const {
  switch (kind) {
    case Kind::kNull:
      return "null";
    case Kind::kScalar:
      return "a scalar";
    case Kind::kSequence:
      return "a list";
    case Kind::kMapping:
      return "a mapping";
  }
  return "?";
}

namespace {

void StampFile(YamlNode* node, int file) {
  node->pos.file = file;
  for (YamlNode& item : node->items) StampFile(&item, file);
  for (auto& [key, value] : node->entries) {
    StampFile(&key, file);
    StampFile(&value, file);
  }
}

}  // namespace

std::optional<YamlNode> ParseYaml(absl::string_view text, Diagnostic* error,
                                  int file) {
  error->pos.file = file;
  try {
    YAML::Node root = YAML::Load(std::string(text));
    YamlNode out;
    if (!Converter(error).Convert(root, &out)) {
      error->pos.file = file;
      return std::nullopt;
    }
    if (file != 0) StampFile(&out, file);
    return out;
  } catch (const YAML::Exception& e) {
    error->pos = PosOf(e.mark);
    error->pos.file = file;
    error->message = absl::StrCat("YAML syntax: ", e.msg);
    return std::nullopt;
  } catch (const std::exception& e) {
    // yaml-cpp can throw other exceptions on pathological input (deep
    // nesting); the loader must never crash on a file's bytes.
    error->pos = SourcePos{};
    error->pos.file = file;
    error->message = absl::StrCat("YAML parser failed: ", e.what());
    return std::nullopt;
  }
}

Value ToValue(const YamlNode& node) {
  switch (node.kind) {
    case YamlNode::Kind::kNull:
      return Value();
    case YamlNode::Kind::kScalar: {
      if (node.quoted) return Value::String(node.text);
      std::optional<Value> typed = PlainScalar(node.text);
      return typed ? *std::move(typed) : Value::String(node.text);
    }
    case YamlNode::Kind::kSequence: {
      Value v = Value::EmptyArray();
      for (const YamlNode& item : node.items) {
        v.AsArray().push_back(ToValue(item));
      }
      return v;
    }
    case YamlNode::Kind::kMapping: {
      Value v = Value::Object();
      for (const auto& [k, item] : node.entries) v.Set(k.text, ToValue(item));
      return v;
    }
  }
  return Value();
}

}  // namespace modelplane::config
