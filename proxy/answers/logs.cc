// GET /logs and /logs/stream[/proxy|/manager|/<model>]: llama-swap's log
// paths. The proxy's own log comes from the event hub's history and live
// lines; a model's output (and the manager's log) from its manager's
// StreamLogs, the history it keeps first. A reader slower than the output
// misses what it cannot take and is told ("[N bytes dropped]"): nothing
// waits for it.
#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proxy/answers/answer.h"
#include "proxy/answers/event_hub.h"
#include "proxy/router/url_params.h"

namespace modelplane::proxy::answers {
namespace {

// What a manager keeps of a model's output (StreamLogs sends it whole).
constexpr uint32_t kAllHistory = 0xffffffffu;

std::string Dropped(uint64_t n) {
  return absl::StrCat("\n[", n, " bytes dropped]\n");
}

}  // namespace

void Logs(const AnswerRequest& q, const std::string& source, bool stream,
          EventHub* hub, const LogsFn& logs, Responder* r) {
  const std::string& target = q.head.target;
  bool history = router::QueryParamCount(target, "no-history") == 0;
  bool proxy_log = source.empty() || source == "proxy";
  if (proxy_log && hub == nullptr) {
    return r->RespondError(503, "the proxy's log is not available");
  }
  if (!stream) {
    // GET /logs: the proxy's log history.
    return r->Respond(200, "text/plain; charset=utf-8", hub->LogHistory());
  }
  StreamSpec spec;
  spec.content_type = "text/plain; charset=utf-8";
  spec.headers = {{"Cache-Control", "no-cache"},
                  {"X-Content-Type-Options", "nosniff"},
                  {"X-Accel-Buffering", "no"}};
  spec.slow = StreamSpec::Slow::kSkip;
  spec.skipped = Dropped;
  if (proxy_log) {
    auto id = std::make_shared<uint64_t>(0);
    spec.on_close = [hub, id] {
      if (*id != 0) hub->Unsubscribe(*id);
    };
    std::shared_ptr<StreamOut> out = r->OpenStream(std::move(spec));
    *id = hub->SubscribeLog(std::move(out), history);
    return;
  }
  if (source != "manager" && q.snapshot.routes().Find(source) == nullptr) {
    return r->RespondError(
        404, absl::StrCat("no model '", source,
                          "' (logs are per model: /logs/stream/<model>, the "
                          "manager's own at /logs/stream/manager, the "
                          "proxy's at /logs/stream/proxy)"));
  }
  if (!logs) return r->RespondError(503, "no manager to read logs from");
  LogRequest request;
  request.model = source;
  request.node = router::QueryParam(target, "node");
  if (const router::Route* route = q.snapshot.routes().Find(source);
      route != nullptr && !request.node.empty() && !route->nodes.empty() &&
      std::none_of(route->nodes.begin(), route->nodes.end(),
                   [&request](const router::RouteNode& n) {
                     return n.node == request.node;
                   })) {
    return r->RespondError(404, absl::StrCat("no node '", request.node,
                                             "' has model '", source, "'"));
  }
  request.history_bytes = history ? kAllHistory : 0;
  // The cancel function, once the call is made; on_close (on the loop,
  // later) calls it.
  auto cancel = std::make_shared<std::function<void()>>();
  spec.on_close = [cancel] {
    if (*cancel) (*cancel)();
  };
  std::shared_ptr<StreamOut> out = r->OpenStream(std::move(spec));
  *cancel = logs(
      request,
      [out](std::string data, uint64_t dropped) {
        if (dropped > 0) out->Write(Dropped(dropped));
        if (!data.empty()) out->Write(std::move(data));
      },
      [out](absl::Status status) {
        if (!status.ok() && status.code() != absl::StatusCode::kCancelled) {
          out->Write(absl::StrCat("\n[modelplane: the log stream ended: ",
                                  status.ToString(), "]\n"));
        }
        out->End();
      });
}

}  // namespace modelplane::proxy::answers
