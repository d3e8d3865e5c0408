#include "proxy/router/body_filters.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proxy/router/key_fold.h"
#include "proxy/router/multipart_scanner.h"

namespace modelplane::proxy::router {

namespace {

// A path in llama-swap's filters is an sjson path (github.com/tidwall/sjson),
// of which this is the part a filter can use: keys separated by '.', '\\'
// escaping the next character ("fav\\.movie" is one key), a number indexing
// an array ("-1": past its end), and a leading ':' making a number an object
// key ("users.:2313"). sjson's queries and wildcards are not supported.
struct PathPart {
  std::string key;
  bool forced_key = false;  // Written with a leading ':'.
};

std::vector<PathPart> SplitPath(absl::string_view path) {
  std::vector<PathPart> parts(1);
  bool at_start = true;
  for (size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '\\' && i + 1 < path.size()) {
      parts.back().key.push_back(path[++i]);
    } else if (c == '.') {
      parts.emplace_back();
      at_start = true;
      continue;
    } else if (c == ':' && at_start) {
      parts.back().forced_key = true;
    } else {
      parts.back().key.push_back(c);
    }
    at_start = false;
  }
  return parts;
}

// A number past this is taken as a key, so no array is padded out to it (a
// path is config, but a typo must not make every request a megabyte of
// nulls).
constexpr int64_t kMaxIndex = 1 << 16;

// The array index a path part names: -1 for "-1" (the end), nullopt when
// it is a key.
std::optional<int64_t> IndexOf(const PathPart& p) {
  if (p.forced_key || p.key.empty()) return std::nullopt;
  if (p.key == "-1") return -1;
  int64_t n = 0;
  for (char c : p.key) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
    if (n > kMaxIndex) return std::nullopt;  // Taken as a key.
  }
  return n;
}

// A key an object holds twice: the filter would change the first, and the
// upstream's parser takes the last. Refused (the client gets 400).
absl::Status Twice(const rapidjson::Value& object, const std::string& key,
                   const std::vector<PathPart>& parts) {
  int n = 0;
  for (const auto& m : object.GetObject()) {
    // In any letter case, as the scanner compares top-level keys.
    if (KeysEqualFold(
            absl::string_view(m.name.GetString(), m.name.GetStringLength()),
            key) &&
        ++n > 1) {
      std::string path;
      for (const PathPart& p : parts) {
        if (!path.empty()) path += '.';
        path += p.key;
      }
      return absl::InvalidArgumentError(absl::StrCat(
          "the JSON body has the key \"", key, "\" twice in an object a ",
          "filter changes (", path, "): refused, since the model would read ",
          "the last one"));
    }
  }
  return absl::OkStatus();
}

// The member named `key` in any letter case (Go's encoding/json, which
// Go servers read bodies with, takes "Temperature" for temperature; Twice
// makes sure there is at most one), or MemberEnd().
rapidjson::Value::MemberIterator FindAnyCase(rapidjson::Value* object,
                                             absl::string_view key) {
  for (auto m = object->MemberBegin(); m != object->MemberEnd(); ++m) {
    if (KeysEqualFold(
            absl::string_view(m->name.GetString(), m->name.GetStringLength()),
            key)) {
      return m;
    }
  }
  return object->MemberEnd();
}

// The model name is protected: no path may set, strip or go through it.
bool IsModel(const std::vector<PathPart>& parts) {
  return KeysEqualFold(parts[0].key, "model");
}

// Sets the value at `parts` in `root` (an object), making the objects and
// arrays on the way (sjson.Set). Nothing is set where the path names a key
// inside an array.
absl::Status SetPath(const std::vector<PathPart>& parts,
                     const rapidjson::Value& value, rapidjson::Document* root) {
  auto& alloc = root->GetAllocator();
  rapidjson::Value* node = root;
  for (size_t i = 0; i < parts.size(); ++i) {
    const PathPart& part = parts[i];
    rapidjson::Value* child;
    if (node->IsArray()) {
      std::optional<int64_t> index = IndexOf(part);
      if (!index) return absl::OkStatus();
      rapidjson::SizeType at =
          *index < 0 ? node->Size() : static_cast<rapidjson::SizeType>(*index);
      while (node->Size() <= at) node->PushBack(rapidjson::Value(), alloc);
      child = &(*node)[at];
    } else {
      if (absl::Status s = Twice(*node, part.key, parts); !s.ok()) return s;
      auto m = FindAnyCase(node, part.key);
      if (m != node->MemberEnd() &&
          absl::string_view(m->name.GetString(), m->name.GetStringLength()) !=
              part.key) {
        // The client's spelling gives way to the config's: the upstream
        // sees one key, the one set.
        m->name.SetString(part.key.data(),
                          static_cast<rapidjson::SizeType>(part.key.size()),
                          alloc);
      }
      if (m == node->MemberEnd()) {
        node->AddMember(
            rapidjson::Value(part.key.data(),
                             static_cast<rapidjson::SizeType>(part.key.size()),
                             alloc),
            rapidjson::Value(), alloc);
        child = &(node->MemberEnd() - 1)->value;
      } else {
        child = &m->value;
      }
    }
    if (i + 1 == parts.size()) {
      child->CopyFrom(value, alloc);
      return absl::OkStatus();
    }
    bool array_next = IndexOf(parts[i + 1]).has_value();
    // Missing, a scalar in the way (as sjson does), or an array where the
    // path names a key (sjson leaves it, and a client could so keep a
    // setting the config forces off: `"chat_template_kwargs": [1]`):
    // replaced.
    if ((child->IsArray() && !array_next) ||
        (!child->IsArray() && !child->IsObject())) {
      if (array_next) {
        child->SetArray();
      } else {
        child->SetObject();
      }
    }
    node = child;
  }
  return absl::OkStatus();
}

// Removes the value at `parts`, if there is one (sjson.Delete).
absl::Status DeletePath(const std::vector<PathPart>& parts,
                        rapidjson::Value* root) {
  rapidjson::Value* node = root;
  for (size_t i = 0; i < parts.size(); ++i) {
    bool last = i + 1 == parts.size();
    if (node->IsArray()) {
      std::optional<int64_t> index = IndexOf(parts[i]);
      if (!index || node->Empty()) return absl::OkStatus();
      rapidjson::SizeType at = *index < 0
                                   ? node->Size() - 1
                                   : static_cast<rapidjson::SizeType>(*index);
      if (at >= node->Size()) return absl::OkStatus();
      if (last) {
        node->Erase(node->Begin() + at);
        return absl::OkStatus();
      }
      node = &(*node)[at];
    } else if (node->IsObject()) {
      if (absl::Status s = Twice(*node, parts[i].key, parts); !s.ok()) {
        return s;
      }
      auto m = FindAnyCase(node, parts[i].key);
      if (m == node->MemberEnd()) return absl::OkStatus();
      if (last) {
        node->EraseMember(m);  // Keeps the order of the other members.
        return absl::OkStatus();
      }
      node = &m->value;
    } else {
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

// Sets every member of the JSON object `json` (path -> value) in `doc`, in
// order, but a top-level `model`.
absl::Status SetMembers(const std::string& json, rapidjson::Document* doc) {
  rapidjson::Document set;
  // Full precision: the config's numbers go upstream as it wrote them.
  set.Parse<rapidjson::kParseFullPrecisionFlag>(json.data(), json.size());
  if (set.HasParseError() || !set.IsObject()) return absl::OkStatus();
  for (auto& m : set.GetObject()) {
    std::vector<PathPart> parts = SplitPath(
        absl::string_view(m.name.GetString(), m.name.GetStringLength()));
    if (IsModel(parts)) continue;
    if (absl::Status s = SetPath(parts, m.value, doc); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// The body's numbers keep their own text: a seed of 2^64, or a decimal of
// 25 digits, goes upstream as the client wrote it (as with sjson, which
// llama-swap edits bodies with), where a double would round it. They are
// parsed as strings in place, each noted by where its text lies in the
// body (in increasing order), and written back bare. A string in the
// client's JSON never starts where a number does, and values the filters
// add lie outside the body.
class NumberMarks {
 public:
  NumberMarks(rapidjson::Document* doc, std::vector<const char*>* at)
      : doc_(*doc), at_(*at) {}
  bool Null() { return doc_.Null(); }
  bool Bool(bool b) { return doc_.Bool(b); }
  bool Int(int i) { return doc_.Int(i); }
  bool Uint(unsigned i) { return doc_.Uint(i); }
  bool Int64(int64_t i) { return doc_.Int64(i); }
  bool Uint64(uint64_t i) { return doc_.Uint64(i); }
  bool Double(double d) { return doc_.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    at_.push_back(s);
    return doc_.RawNumber(s, n, copy);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) {
    return doc_.String(s, n, copy);
  }
  bool StartObject() { return doc_.StartObject(); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) {
    return doc_.Key(s, n, copy);
  }
  bool EndObject(rapidjson::SizeType n) { return doc_.EndObject(n); }
  bool StartArray() { return doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType n) { return doc_.EndArray(n); }

 private:
  rapidjson::Document& doc_;
  std::vector<const char*>& at_;
};

using BodyWriter = rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>,
                                     rapidjson::UTF8<>, rapidjson::CrtAllocator,
                                     rapidjson::kWriteNanAndInfFlag>;

// Writes the tree, the noted numbers bare.
class BareNumbers {
 public:
  BareNumbers(BodyWriter* w, const std::vector<const char*>* at)
      : w_(*w), at_(*at) {}
  bool Null() { return w_.Null(); }
  bool Bool(bool b) { return w_.Bool(b); }
  bool Int(int i) { return w_.Int(i); }
  bool Uint(unsigned i) { return w_.Uint(i); }
  bool Int64(int64_t i) { return w_.Int64(i); }
  bool Uint64(uint64_t i) { return w_.Uint64(i); }
  bool Double(double d) { return w_.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    return w_.RawNumber(s, n, copy);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) {
    if (std::binary_search(at_.begin(), at_.end(), s)) {
      return w_.RawValue(s, n, rapidjson::kNumberType);
    }
    return w_.String(s, n, copy);
  }
  bool StartObject() { return w_.StartObject(); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) {
    return w_.Key(s, n, copy);
  }
  bool EndObject(rapidjson::SizeType n) { return w_.EndObject(n); }
  bool StartArray() { return w_.StartArray(); }
  bool EndArray(rapidjson::SizeType n) { return w_.EndArray(n); }

 private:
  BodyWriter& w_;
  const std::vector<const char*>& at_;
};

}  // namespace

absl::StatusOr<std::string> ApplyJsonFilters(std::string body,
                                             const FilterSpec& f,
                                             absl::string_view requested) {
  rapidjson::Document doc;
  // NaN and Infinity as the request scan takes them (Python's parser does);
  // in place: the tree's strings are the body's own bytes. (A NUL in the
  // body is an error: one in a string, or one ending the text early.)
  std::vector<const char*> numbers;
  rapidjson::ParseResult parsed;
  auto parse = [&](rapidjson::Document& d) {
    rapidjson::InsituStringStream in(body.data());
    NumberMarks marks(&d, &numbers);
    rapidjson::Reader reader;
    parsed = reader.Parse<rapidjson::kParseInsituFlag |
                          rapidjson::kParseNanAndInfFlag |
                          rapidjson::kParseNumbersAsStringsFlag>(in, marks);
    return !parsed.IsError();
  };
  doc.Populate(parse);
  if (parsed.IsError()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON body at byte ", parsed.Offset(), ": ",
                     rapidjson::GetParseError_En(parsed.Code())));
  }
  if (!doc.IsObject()) {
    return absl::InvalidArgumentError("the JSON body must be an object");
  }
  auto& alloc = doc.GetAllocator();
  if (absl::Status s = Twice(doc, "model", {PathPart{"model"}}); !s.ok()) {
    return s;
  }
  if (auto m = FindAnyCase(&doc, "model");
      !f.use_model_name.empty() && m != doc.MemberEnd()) {
    m->value.SetString(
        f.use_model_name.data(),
        static_cast<rapidjson::SizeType>(f.use_model_name.size()), alloc);
  }
  for (const std::string& path : f.strip_params) {
    std::vector<PathPart> parts = SplitPath(path);
    if (IsModel(parts)) continue;
    if (absl::Status s = DeletePath(parts, &doc); !s.ok()) return s;
  }
  if (!f.set_params_json.empty()) {
    if (absl::Status s = SetMembers(f.set_params_json, &doc); !s.ok()) {
      return s;
    }
  }
  if (auto by_id = f.set_params_by_id_json.find(requested);
      by_id != f.set_params_by_id_json.end()) {
    if (absl::Status s = SetMembers(by_id->second, &doc); !s.ok()) return s;
  }
  rapidjson::StringBuffer out;
  BodyWriter w(out);
  BareNumbers bare(&w, &numbers);
  doc.Accept(bare);
  return std::string(out.GetString(), out.GetSize());
}

void RewriteMultipartModel(std::string* body, absl::string_view boundary,
                           absl::string_view model) {
  std::string delimiter = absl::StrCat("--", boundary);
  absl::string_view b = *body;
  size_t pos = b.find(delimiter);
  while (pos != absl::string_view::npos) {
    size_t headers = pos + delimiter.size();
    if (b.substr(headers, 2) == "--") break;
    size_t data = b.find("\r\n\r\n", headers);
    if (data == absl::string_view::npos) break;
    data += 4;
    size_t next = b.find(absl::StrCat("\r\n", delimiter), data);
    if (next == absl::string_view::npos) break;
    // The part the scanner routed by (its name read the same way).
    absl::StatusOr<std::string> name =
        MultipartScanner::PartName(b.substr(headers, data - headers));
    if (name.ok() && *name == "model") {
      // In place: the rest (an audio file, say) moves, it is not copied
      // into a second buffer.
      body->replace(data, next - data, model.data(), model.size());
      return;
    }
    pos = next + 2;
  }
}

}  // namespace modelplane::proxy::router
