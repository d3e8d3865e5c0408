#include "proxy/router/body_filters.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "absl/strings/str_cat.h"

namespace modelplane::proxy::router {

namespace {

// Sets every member of the JSON object `json` in `doc` but `model`.
void SetMembers(const std::string& json, rapidjson::Document* doc) {
  auto& alloc = doc->GetAllocator();
  rapidjson::Document set(&alloc);
  set.Parse(json.data(), json.size());
  if (set.HasParseError() || !set.IsObject()) return;
  for (auto& m : set.GetObject()) {
    if (std::string(m.name.GetString()) == "model") continue;
    rapidjson::Value value(m.value, alloc);
    auto existing = doc->FindMember(m.name);
    if (existing != doc->MemberEnd()) {
      existing->value = value;
    } else {
      rapidjson::Value name(m.name, alloc);
      doc->AddMember(name, value, alloc);
    }
  }
}

}  // namespace

absl::StatusOr<std::string> ApplyJsonFilters(absl::string_view body,
                                             const FilterSpec& f,
                                             absl::string_view requested) {
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid JSON body at byte ", doc.GetErrorOffset(), ": ",
                     rapidjson::GetParseError_En(doc.GetParseError())));
  }
  if (!doc.IsObject()) {
    return absl::InvalidArgumentError("the JSON body must be an object");
  }
  auto& alloc = doc.GetAllocator();
  if (!f.use_model_name.empty() && doc.HasMember("model")) {
    doc["model"].SetString(
        f.use_model_name.data(),
        static_cast<rapidjson::SizeType>(f.use_model_name.size()), alloc);
  }
  for (const std::string& key : f.strip_params) {
    // EraseMember keeps the order of the other keys (RemoveMember does not).
    auto it = doc.FindMember(key.c_str());
    if (key != "model" && it != doc.MemberEnd()) doc.EraseMember(it);
  }
  if (!f.set_params_json.empty()) SetMembers(f.set_params_json, &doc);
  if (auto by_id = f.set_params_by_id_json.find(requested);
      by_id != f.set_params_by_id_json.end()) {
    SetMembers(by_id->second, &doc);
  }
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w(out);
  doc.Accept(w);
  return std::string(out.GetString(), out.GetSize());
}

std::string RewriteMultipartModel(absl::string_view body,
                                  absl::string_view boundary,
                                  absl::string_view model) {
  std::string delimiter = absl::StrCat("--", boundary);
  size_t pos = body.find(delimiter);
  while (pos != absl::string_view::npos) {
    size_t headers = pos + delimiter.size();
    if (body.substr(headers, 2) == "--") break;
    size_t data = body.find("\r\n\r\n", headers);
    if (data == absl::string_view::npos) break;
    data += 4;
    size_t next = body.find(absl::StrCat("\r\n", delimiter), data);
    if (next == absl::string_view::npos) break;
    absl::string_view head = body.substr(headers, data - headers);
    if (head.find("name=\"model\"") != absl::string_view::npos) {
      return absl::StrCat(body.substr(0, data), model, body.substr(next));
    }
    pos = next + 2;
  }
  return std::string(body);
}

}  // namespace modelplane::proxy::router
