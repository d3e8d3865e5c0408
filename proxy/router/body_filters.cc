#include "proxy/router/body_filters.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "absl/strings/str_cat.h"

namespace modelplane::proxy::router {

absl::StatusOr<std::string> ApplyJsonFilters(absl::string_view body,
                                             const FilterSpec& f) {
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
  if (!f.set_params_json.empty()) {
    rapidjson::Document set(&alloc);
    set.Parse(f.set_params_json.data(), f.set_params_json.size());
    if (!set.HasParseError() && set.IsObject()) {
      for (auto& m : set.GetObject()) {
        if (std::string(m.name.GetString()) == "model") continue;
        rapidjson::Value value(m.value, alloc);
        auto existing = doc.FindMember(m.name);
        if (existing != doc.MemberEnd()) {
          existing->value = value;
        } else {
          rapidjson::Value name(m.name, alloc);
          doc.AddMember(name, value, alloc);
        }
      }
    }
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
