// What modelproxy answers itself, as handlers: one file each (health.cc,
// models.cc for /v1/models and /running, profiles.cc, cors.cc for
// preflights, unload.cc, metrics.cc), given the request and the routing
// snapshot, answering through a Responder: the exchange's seam to its
// ResponseSink, as nghttpx answers its API as just another downstream. The
// exchange routes (router::Decide) and admits before a handler runs, and
// after it adds CORS, counts and logs the request and ends the response.
//
//   answers::AnswerRequest q{snapshot, head, body};
//   answers::Models(q, responder);
#ifndef MODELPLANE_PROXY_ANSWERS_ANSWER_H_
#define MODELPLANE_PROXY_ANSWERS_ANSWER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proxy/http1/codec.h"
#include "proxy/router/snapshot.h"

namespace modelplane::proxy::answers {

// An answer that stays open (an event stream, a log tail): what its source
// writes goes to the client as it comes. Any thread; a write after the
// stream ended (the client left, the proxy drains) does nothing.
class StreamOut {
 public:
  virtual ~StreamOut() = default;
  virtual void Write(std::string data) = 0;
  // The response ends (cleanly).
  virtual void End() = 0;
  // The stream ended, for any reason.
  virtual bool closed() const = 0;
};

// What a client that reads slower than its stream is written gets: the
// reader is cut (after `marker`, a last message saying so), or what it
// cannot take is skipped and said (`skipped(n)`, the text written before
// the next piece that fits: "[n bytes dropped]"). Nothing else waits for
// it either way.
struct StreamSpec {
  std::string content_type;
  http1::Headers headers;
  enum class Slow { kCut, kSkip } slow = Slow::kCut;
  std::string marker;                            // kCut.
  std::function<std::string(uint64_t)> skipped;  // kSkip.
  // Runs once, on the exchange's loop, when the stream ends for any
  // reason: the source lets go of it.
  std::function<void()> on_close;
};

class Responder {
 public:
  virtual ~Responder() = default;
  virtual void Respond(int status, const std::string& content_type,
                       const std::string& body,
                       const http1::Headers& extra = http1::Headers()) = 0;
  // {"error": {"message", "type", "code"}}, OpenAI's shape.
  virtual void RespondError(int status, const std::string& message) = 0;
  // For an answer given later (the manager's, every worker's counters): a
  // function, callable once from any thread, that runs its argument with
  // this responder on the exchange's loop, if the request is still there
  // (its client may have left meanwhile: then it does nothing).
  using Deferred = std::function<void(std::function<void(Responder*)>)>;
  virtual Deferred Later() = 0;
  // Sends a 200 head with `spec`'s headers and keeps the response open for
  // the returned stream.
  virtual std::shared_ptr<StreamOut> OpenStream(StreamSpec spec) = 0;
};

// What a handler reads; valid during the call.
struct AnswerRequest {
  const router::Snapshot& snapshot;
  const http1::RequestHead& head;
  absl::string_view body;
  // The request has an Origin (the exchange echoes it).
  bool has_origin = false;
  // The proxy listens on a loopback address (see MayChangeState).
  bool loopback_listener = false;
};

// GET/HEAD /health and /wol-health: "OK" (health.cc).
void Health(Responder* r);
// GET /v1/models and /models; GET /running (models.cc).
void Models(const AnswerRequest& q, Responder* r);
void Running(const AnswerRequest& q, Responder* r);
// GET /api/profiles; PUT /api/profiles/active, which switches `routing`'s
// active profile (profiles.cc).
void Profiles(const AnswerRequest& q, Responder* r);
void SetProfile(const AnswerRequest& q, router::RoutingState* routing,
                Responder* r);
// OPTIONS: a CORS preflight, 204 (cors.cc).
void Preflight(const AnswerRequest& q, Responder* r);
// POST /unload and /api/models/unload[/<model>]: stops `model` (empty:
// every model) through the manager (unload.cc). `unload` may be empty (no
// manager link: 503).
using UnloadFn = std::function<void(
    const std::string& model,
    std::function<void(absl::StatusOr<std::vector<std::string>>)> done)>;
void Unload(const AnswerRequest& q, const std::string& model,
            const UnloadFn& unload, Responder* r);
// GET /metrics, rendered from every worker (metrics.cc). `metrics` may be
// empty (503).
using MetricsFn = std::function<void(std::function<void(std::string)> done)>;
void Metrics(const MetricsFn& metrics, Responder* r);

// GET /api/metrics/activity: a page of the activity log (activity.cc).
// `activity` gathers every worker's entries (any thread); empty: 503.
struct ActivityEntry;
using ActivityFn =
    std::function<void(std::function<void(std::vector<ActivityEntry>)> done)>;
// The activity store (store.path), when there is one: asks for a page
// (its JSON to `done`, any thread) and returns true; false: no store, the
// workers' rings answer.
struct ActivityPageQuery {
  std::string model;  // "": any.
  int status = 0;     // 0: any.
  uint64_t before = 0;
  size_t limit = 100;
};
using ActivityStoreFn = std::function<bool(
    ActivityPageQuery, std::function<void(absl::StatusOr<std::string>)>)>;
void Activity(const AnswerRequest& q, const ActivityFn& activity,
              const ActivityStoreFn& store, Responder* r);

class EventHub;
// GET /api/events: the hub's SSE stream (events.cc). Null hub: 503.
void Events(EventHub* hub, Responder* r);

// A model's output (or the manager's own log, model "manager") from its
// manager's StreamLogs: `on_chunk` for each piece (with the bytes the
// reader missed before it), then `on_end` once. Any thread. Returns the
// function that cancels it.
struct LogRequest {
  std::string model;
  std::string node;  // "": the model's node (the first that runs it).
  uint32_t history_bytes = 0;
};
using LogChunkFn = std::function<void(std::string data, uint64_t dropped)>;
using LogsFn = std::function<std::function<void()>(
    const LogRequest& request, LogChunkFn on_chunk,
    std::function<void(absl::Status)> on_end)>;
// GET /logs (the proxy's log history), /logs/stream[/proxy|/<model>]
// (chunked text: the history, then live; ?no-history skips the history;
// logs.cc). `source`: "" or "proxy" for the proxy's own log, else a model,
// or "manager". `logs` may be empty (no manager: 503 for a model's).
void Logs(const AnswerRequest& q, const std::string& source, bool stream,
          EventHub* hub, const LogsFn& logs, Responder* r);

// POST /api/models/load/<model>: starts it (load.cc). `load` gets the
// model's id and the node asked for (?node=, or ""); `done` on any thread
// with the node it starts on.
using LoadFn =
    std::function<void(const std::string& model, const std::string& node,
                       std::function<void(absl::StatusOr<std::string>)> done)>;
void Load(const AnswerRequest& q, const std::string& model, const LoadFn& load,
          Responder* r);

// GET /api/version: {"version","commit","build_date"} (version.cc).
void Version(Responder* r);

// GET /ui/...: the web UI, built into the binary (ui.cc, //ui).
void Ui(const AnswerRequest& q, Responder* r);

// Whether the request may stop models or switch the profile; else it is
// answered 403 and false (admission.cc, MayChangeState).
bool MayChange(const AnswerRequest& q, Responder* r);

}  // namespace modelplane::proxy::answers

#endif  // MODELPLANE_PROXY_ANSWERS_ANSWER_H_
