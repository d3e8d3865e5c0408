// POST /unload (llama-swap's; ?model= names one) and llama-swap's UI API
// POST /api/models/unload[/<model>]: stops a model, or every model, through
// the manager's Stop/StopAll, and answers with the ids it stopped once the
// manager has: {"status":"ok","stopped":[...]}.
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/json_string.h"
#include "proxy/answers/answer.h"

namespace modelplane::proxy::answers {

void Unload(const AnswerRequest& q, const std::string& model,
            const UnloadFn& unload, Responder* r) {
  if (!MayChange(q, r)) return;
  if (!unload) return r->RespondError(503, "unload is not available");
  std::string id = model;
  if (!model.empty()) {
    const router::Route* route = q.snapshot.routes().Find(model);
    if (route == nullptr) {
      return r->RespondError(404, absl::StrCat("unknown model '", model, "'"));
    }
    id = route->id;
  }
  Responder::Deferred later = r->Later();
  unload(id, [later](absl::StatusOr<std::vector<std::string>> stopped) {
    later([stopped = std::move(stopped)](Responder* r) {
      if (!stopped.ok()) {
        return r->RespondError(503, std::string(stopped.status().message()));
      }
      std::string ids;
      for (const std::string& m : *stopped) {
        absl::StrAppend(&ids, ids.empty() ? "" : ",", JsonString(m));
      }
      r->Respond(200, "application/json",
                 absl::StrCat(R"({"status":"ok","stopped":[)", ids, "]}"));
    });
  });
}

}  // namespace modelplane::proxy::answers
