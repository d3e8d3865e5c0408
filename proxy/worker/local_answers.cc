// The answers modelproxy gives itself, carried out for the exchange: what
// they say is built in proxy/answers/ (pure functions of the routing
// snapshot and the request); here they are sent, and the asynchronous ones
// (/unload through the manager, /metrics from every worker) answered on the
// exchange's loop unless its client left. Members of Exchange, apart from
// the request path for readability.
#include "absl/strings/str_cat.h"
#include "common/json_string.h"
#include "common/loop_thread.h"
#include "proxy/answers/admission.h"
#include "proxy/answers/cors.h"
#include "proxy/answers/models.h"
#include "proxy/answers/profiles.h"
#include "proxy/worker/exchange.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

void Exchange::RespondModels() {
  Respond(200, "application/json", answers::ModelList(*routing_));
}

void Exchange::RespondProfiles() {
  Respond(200, "application/json", answers::ProfileList(*routing_));
}

bool Exchange::MayChangeState() {
  const absl::flat_hash_set<std::string>* keys = routing_->api_keys();
  absl::Status may = answers::MayChangeState(
      req_.head.headers, worker_->context().options().loopback_listener,
      keys != nullptr && !keys->empty());
  if (!may.ok()) RespondError(403, std::string(may.message()));
  return may.ok();
}

void Exchange::SetActiveProfile() {
  if (!MayChangeState()) return;
  absl::StatusOr<std::string> name = answers::ActiveProfileName(body_);
  if (!name.ok())
    return RespondError(400, std::string(name.status().message()));
  if (!worker_->context().routing().SetActiveProfile(*name)) {
    return RespondError(404, absl::StrCat("unknown profile '", *name, "'"));
  }
  routing_ = worker_->context().routing().Current();  // The answer shows it.
  RespondProfiles();
}

void Exchange::RespondRunning() {
  Respond(200, "application/json", answers::RunningList(*routing_));
}

void Exchange::Unload(const std::string& model) {
  if (!MayChangeState()) return;
  const ProxyContext::Unload& unload = worker_->context().unload();
  if (!unload) return RespondError(503, "unload is not available");
  std::string id = model;
  if (!model.empty()) {
    const router::Route* route = routing_->routes().Find(model);
    if (route == nullptr) {
      return RespondError(404, absl::StrCat("unknown model '", model, "'"));
    }
    id = route->id;
  }
  LoopThread* loop = &worker_->loop();
  std::weak_ptr<bool> alive = alive_;
  uint64_t generation = generation_;
  unload(id, [this, loop, alive,
              generation](absl::StatusOr<std::vector<std::string>> r) {
    loop->Post([this, alive, generation, r = std::move(r)] {
      auto a = alive.lock();
      if (a == nullptr || !*a || generation != generation_) return;
      if (!r.ok()) return RespondError(503, std::string(r.status().message()));
      std::string ids;
      for (const std::string& m : *r) {
        absl::StrAppend(&ids, ids.empty() ? "" : ",", JsonString(m));
      }
      Respond(200, "application/json",
              absl::StrCat(R"({"status":"ok","stopped":[)", ids, "]}"));
    });
  });
}

void Exchange::RespondPreflight() {
  Respond(204, "", "",
          answers::PreflightHeaders(req_.head.headers, !req_.origin.empty()));
}

void Exchange::RespondMetrics() {
  const ProxyContext::MetricsText& text = worker_->context().metrics();
  if (!text) return RespondError(503, "metrics are not available yet");
  // Gathered from every worker's loop; answered here unless the client went.
  LoopThread* loop = &worker_->loop();
  std::weak_ptr<bool> alive = alive_;
  uint64_t generation = generation_;
  text([this, loop, alive, generation](std::string rendered) {
    loop->Post([this, alive, generation, rendered = std::move(rendered)] {
      auto a = alive.lock();
      if (a == nullptr || !*a || generation != generation_) return;
      Respond(200, "text/plain; version=0.0.4; charset=utf-8", rendered);
    });
  });
}

}  // namespace modelplane::proxy
