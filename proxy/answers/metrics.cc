// GET /metrics: Prometheus text, rendered from every worker's counters
// (each copied on its own loop, so recording a request takes no lock) and
// answered on the exchange's loop. Needs the API key when keys are set (a
// Prometheus job sets it with `authorization: credentials`).
#include <utility>

#include "proxy/answers/answer.h"

namespace modelplane::proxy::answers {

void Metrics(const MetricsFn& metrics, Responder* r) {
  if (!metrics) return r->RespondError(503, "metrics are not available yet");
  Responder::Deferred later = r->Later();
  metrics([later](std::string rendered) {
    later([rendered = std::move(rendered)](Responder* r) {
      r->Respond(200, "text/plain; version=0.0.4; charset=utf-8", rendered);
    });
  });
}

}  // namespace modelplane::proxy::answers
