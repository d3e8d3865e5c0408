// GET /health (and /wol-health): plain "OK", as llama-swap answers it, so
// that health checks written for it (`curl ... | grep -q OK`) keep working.
// No API key is needed (router::NeedsKey).
#include "proxy/answers/answer.h"

namespace modelplane::proxy::answers {

void Health(Responder* r) {
  r->Respond(200, "text/plain; charset=utf-8", "OK");
}

}  // namespace modelplane::proxy::answers
