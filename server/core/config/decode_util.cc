#include "server/core/config/decode_util.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace modelplane::config {
namespace {

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      bool same =
          absl::ascii_tolower(a[i - 1]) == absl::ascii_tolower(b[j - 1]);
      row[j] =
          std::min({row[j] + 1, row[j - 1] + 1, diagonal + (same ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

void TypeError(const YamlNode& node, const std::string& path, DiagSink* sink,
               absl::string_view want) {
  std::string got = node.is_scalar() ? absl::StrCat("\"", node.text, "\"")
                                     : std::string(node.KindName());
  sink->Error(node.pos, path, absl::StrCat("must be ", want, ", not ", got));
}

}  // namespace

std::string JoinPath(const std::string& path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

bool ReadString(const YamlNode& node, const std::string& path, DiagSink* sink,
                std::string* out) {
  if (node.is_null()) {
    out->clear();
    return true;
  }
  if (!node.is_scalar()) {
    TypeError(node, path, sink, "a string");
    return false;
  }
  *out = node.text;
  return true;
}

bool ReadBool(const YamlNode& node, const std::string& path, DiagSink* sink,
              bool* out) {
  if (node.is_null()) return false;  // Blank: the default stays.
  std::string t = absl::AsciiStrToLower(node.text);
  if (node.is_scalar() && !node.quoted) {
    if (t == "true" || t == "yes" || t == "on") {
      *out = true;
      return true;
    }
    if (t == "false" || t == "no" || t == "off") {
      *out = false;
      return true;
    }
  }
  TypeError(node, path, sink, "true or false");
  return false;
}

bool ReadInt(const YamlNode& node, const std::string& path, DiagSink* sink,
             int64_t* out) {
  if (node.is_null()) return false;  // Blank: the default stays.
  if (node.is_scalar() && !node.quoted) {
    Value v = ToValue(node);
    if (v.kind() == Value::Kind::kInt) {
      *out = v.AsInt();
      return true;
    }
  }
  TypeError(node, path, sink, "an integer");
  return false;
}

bool ReadSeconds(const YamlNode& node, const std::string& path, DiagSink* sink,
                 double* out) {
  return ReadNumber(node, path, sink, "a number of seconds", out);
}

bool ReadNumber(const YamlNode& node, const std::string& path, DiagSink* sink,
                const char* what, double* out) {
  if (node.is_null()) return false;  // Blank: the default stays.
  if (node.is_scalar() && !node.quoted) {
    Value v = ToValue(node);
    if (v.kind() == Value::Kind::kInt) {
      *out = static_cast<double>(v.AsInt());
      return true;
    }
    if (v.kind() == Value::Kind::kDouble && std::isfinite(v.AsDouble())) {
      *out = v.AsDouble();
      return true;
    }
  }
  TypeError(node, path, sink, what);
  return false;
}

bool ReadStringList(const YamlNode& node, const std::string& path,
                    DiagSink* sink, std::vector<std::string>* out) {
  out->clear();
  if (node.is_null()) return true;
  if (!node.is_seq()) {
    TypeError(node, path, sink, "a list of strings");
    return false;
  }
  bool ok = true;
  for (size_t i = 0; i < node.items.size(); ++i) {
    std::string s;
    if (ReadString(node.items[i], absl::StrCat(path, "[", i, "]"), sink, &s)) {
      out->push_back(std::move(s));
    } else {
      ok = false;
    }
  }
  return ok;
}

absl::Duration Seconds(double s) {
  return absl::Milliseconds(std::llround(s * 1000));
}

std::string NearestKey(absl::string_view key,
                       const std::vector<absl::string_view>& known) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, key.size() / 3) + 1;
  for (absl::string_view k : known) {
    size_t d = EditDistance(key, k);
    if (d < best_distance) {
      best_distance = d;
      best = std::string(k);
    }
  }
  return best;
}

void CheckKeys(const YamlNode& map, const std::string& path, const KeySet& keys,
               DiagSink* sink) {
  for (const auto& [key, value] : map.entries) {
    const std::string& k = key.text;
    if (std::find(keys.supported.begin(), keys.supported.end(), k) !=
        keys.supported.end()) {
      continue;
    }
    std::string at = JoinPath(path, k);
    if (std::find(keys.unsupported.begin(), keys.unsupported.end(), k) !=
        keys.unsupported.end()) {
      sink->Warn(key.pos, at,
                 "llama-swap setting not supported by modelplane yet; "
                 "ignored");
      continue;
    }
    std::vector<absl::string_view> all = keys.supported;
    all.insert(all.end(), keys.unsupported.begin(), keys.unsupported.end());
    std::string nearest = NearestKey(k, all);
    sink->Warn(key.pos, at,
               nearest.empty()
                   ? std::string("unknown key; ignored")
                   : absl::StrCat("unknown key; ignored (did you mean '",
                                  nearest, "'?)"));
  }
}

}  // namespace modelplane::config
