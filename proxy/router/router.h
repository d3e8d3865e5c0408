// The request router: what the proxy does with a request, as a pure
// function of the request's head, what its body scan found and the routing
// snapshot (snapshot.h): answer it locally, forward it to a model (after
// the active profile's pins and the selectors), forward it to a peer, or
// refuse it (status and message). No sockets, no state: the exchange
// carries the decision out (admission, filters, the lease, the upstream).
//
//   router::Request r{"POST", "/v1/chat/completions", router::Body::kJson,
//                     "qwen", ""};
//   router::Decision d = router::Decide(r, *snapshot, busy);
//   if (d.kind == router::Decision::Kind::kModel) ... d.route->id ...
//
// docs/proxy.md ("Requests") says what each route does; router_test.cc has
// a case for each.
#ifndef MODELPLANE_PROXY_ROUTER_ROUTER_H_
#define MODELPLANE_PROXY_ROUTER_ROUTER_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "proxy/router/route_table.h"
#include "proxy/router/snapshot.h"

namespace modelplane::proxy::router {

// How a body route's body named its model.
enum class Body {
  kNone,       // Not a body route (or no body scanned).
  kJson,       // A JSON body: its top-level "model".
  kMultipart,  // A multipart form: its model field.
  kForm,       // An urlencoded form: its model field.
};

struct Request {
  absl::string_view method;
  // Origin form, with its query.
  absl::string_view target;
  Body body = Body::kNone;
  // kJson and kMultipart: the model the scan found, and the scan's error
  // (the body is refused with it even when a model was found: the model
  // must read the body routing read).
  std::optional<std::string> body_model;
  std::string scan_error;
  // kForm: the form itself.
  absl::string_view form;
};

struct Decision {
  enum class Kind {
    kPreflight,   // OPTIONS: CORS preflight (no key needed).
    kHealth,      // GET /health, /wol-health (no key needed).
    kRunning,     // GET /running.
    kMetrics,     // GET /metrics.
    kActivity,    // GET /api/metrics/activity.
    kEvents,      // GET /api/events.
    kLogs,        // GET /logs (stream false), /logs/stream[/<source>].
    kVersion,     // GET /api/version.
    kUi,          // GET /, /ui[/...], /favicon.ico: the web UI (no key).
    kLoad,        // POST /api/models/load/<model>: start it (`model`).
    kUnload,      // POST /unload, /api/models/unload[/<model>].
    kModels,      // GET /v1/models, /models.
    kProfiles,    // GET /api/profiles.
    kSetProfile,  // PUT /api/profiles/active.
    kRedirect,    // status, location.
    kModel,       // Forward to `route` under its lease.
    kPeer,        // Forward to `peer` (no lease).
    kError,       // status, message (and allow, for a 405).
  };
  Kind kind = Kind::kError;
  int status = 0;
  std::string message;
  std::string location;  // kRedirect.
  std::string allow;     // kError 405: the methods allowed.
  std::string unload;    // kUnload: the model ("": every model).
  // kLogs: whether it streams, and its source ("", "proxy", "manager" or
  // a model).
  bool stream = false;
  std::string source;
  // kModel, kPeer: the name the request goes by (pins and selectors
  // applied: the one filters and setParamsByID are for), the target the
  // upstream gets, and whether a pin or a selector changed the name (the
  // upstream is then told the model it went to).
  std::string model;
  std::string target;
  bool renamed = false;
  const Route* route = nullptr;     // kModel.
  const PeerRoute* peer = nullptr;  // kPeer.
  // Whether the request needs no API key (health, preflight).
  bool open() const {
    return kind == Kind::kPreflight || kind == Kind::kHealth ||
           kind == Kind::kUi;
  }
};

// Requests in flight or waiting for their lease, per model: what the
// spillover selectors weigh.
using Busy = std::function<int(const std::string& model)>;

// Decides. The pointers in the decision point into `snapshot`.
Decision Decide(const Request& request, const Snapshot& snapshot,
                const Busy& busy);

// The routes whose model is in the body (POST): kBodyRoutes.
bool IsBodyRoute(absl::string_view method, absl::string_view path);
bool IsHealth(absl::string_view path);
// /, /ui[/...] and /favicon.ico: the web UI's files.
bool IsUi(absl::string_view path);
// Whether a request needs an API key, told from its head alone (the
// exchange decides admission before the body arrives): everything but a
// preflight, a GET or HEAD health check and the web UI's files. The same
// as !Decide(...).open().
bool NeedsKey(absl::string_view method, absl::string_view path);

}  // namespace modelplane::proxy::router

#endif  // MODELPLANE_PROXY_ROUTER_ROUTER_H_
