// POST /api/models/load/<model>[?node=]: starts a model through its
// manager (the UI's Load button), on the node named or where a request for
// it would be placed. Answered 202 once the start is asked for:
// {"model","node","state":"starting"}; the model's state then comes
// through /api/events (or /v1/models). What requests would do on their
// own, without one.
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/json_string.h"
#include "proxy/answers/answer.h"
#include "proxy/router/url_params.h"

namespace modelplane::proxy::answers {

void Load(const AnswerRequest& q, const std::string& model, const LoadFn& load,
          Responder* r) {
  if (!MayChange(q, r)) return;
  if (!load) return r->RespondError(503, "load is not available");
  const router::Route* route = q.snapshot.routes().Find(model);
  if (route == nullptr) {
    return r->RespondError(404, absl::StrCat("unknown model '", model, "'"));
  }
  std::string id = route->id;
  Responder::Deferred later = r->Later();
  load(id, router::QueryParam(q.head.target, "node"),
       [later, id](absl::StatusOr<std::string> node) {
         later([id, node = std::move(node)](Responder* r) {
           if (!node.ok()) {
             int status = node.status().code() == absl::StatusCode::kNotFound
                              ? 404
                              : 503;
             return r->RespondError(status,
                                    std::string(node.status().message()));
           }
           r->Respond(
               202, "application/json",
               absl::StrCat(R"({"model":)", JsonString(id), R"(,"node":)",
                            JsonString(*node), R"(,"state":"starting"})"));
         });
       });
}

}  // namespace modelplane::proxy::answers
