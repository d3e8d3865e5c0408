#include "proxy/answers/profiles.h"

#include <rapidjson/document.h>

#include "absl/strings/str_cat.h"
#include "common/json_string.h"
#include "proxy/answers/answer.h"

namespace modelplane::proxy::answers {

std::string ProfileList(const router::Snapshot& snapshot) {
  const router::ProfileRoute* active = snapshot.active_profile();
  std::string list;
  for (const auto& p : snapshot.profiles().routes()) {
    std::string pins;
    for (const auto& [from, to] : p->pins) {
      absl::StrAppend(&pins, pins.empty() ? "" : ",", JsonString(from), ":",
                      to.empty() ? "null" : JsonString(to));
    }
    absl::StrAppend(&list, list.empty() ? "" : ",", R"({"name":)",
                    JsonString(p->name), R"(,"description":)",
                    JsonString(p->description), R"(,"pins":{)", pins, "}}");
  }
  return absl::StrCat(R"({"active":)",
                      active == nullptr ? "null" : JsonString(active->name),
                      R"(,"profiles":[)", list, "]}");
}

absl::StatusOr<std::string> ActiveProfileName(absl::string_view body) {
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("name") ||
      !(doc["name"].IsString() || doc["name"].IsNull())) {
    return absl::InvalidArgumentError(
        R"(the body must be {"name": "<profile>"} or {"name": null})");
  }
  if (doc["name"].IsNull()) return std::string();
  return std::string(doc["name"].GetString(), doc["name"].GetStringLength());
}

void Profiles(const AnswerRequest& q, Responder* r) {
  r->Respond(200, "application/json", ProfileList(q.snapshot));
}

void SetProfile(const AnswerRequest& q, router::RoutingState* routing,
                Responder* r) {
  if (!MayChange(q, r)) return;
  absl::StatusOr<std::string> name = ActiveProfileName(q.body);
  if (!name.ok()) {
    return r->RespondError(400, std::string(name.status().message()));
  }
  if (!routing->SetActiveProfile(*name)) {
    return r->RespondError(404, absl::StrCat("unknown profile '", *name, "'"));
  }
  // The answer shows the switch.
  r->Respond(200, "application/json", ProfileList(*routing->Current()));
}

}  // namespace modelplane::proxy::answers
