// GET /api/events: one SSE stream of llama-swap's envelopes (event_hub.h).
#include <memory>
#include <utility>

#include "proxy/answers/answer.h"
#include "proxy/answers/event_hub.h"

namespace modelplane::proxy::answers {

void Events(EventHub* hub, Responder* r) {
  if (hub == nullptr) return r->RespondError(503, "events are not available");
  StreamSpec spec;
  spec.content_type = "text/event-stream";
  spec.headers = {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}};
  spec.slow = StreamSpec::Slow::kCut;
  spec.marker = EventHub::Frame(
      "dropped",
      R"({"reason":"the reader fell behind; reconnect for the state"})");
  // Set before the loop can run on_close (it runs there, later).
  auto id = std::make_shared<uint64_t>(0);
  spec.on_close = [hub, id] {
    if (*id != 0) hub->Unsubscribe(*id);
  };
  std::shared_ptr<StreamOut> out = r->OpenStream(std::move(spec));
  *id = hub->Subscribe(std::move(out));
}

}  // namespace modelplane::proxy::answers
