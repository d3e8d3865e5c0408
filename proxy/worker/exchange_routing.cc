// The names a request may use besides a model's own: the active profile's
// pins, selectors, peers' models, and upstream.ignorePaths. Members of
// Exchange, apart from the request path for readability (as
// local_answers.cc).
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proxy/router/body_filters.h"
#include "proxy/router/url_params.h"
#include "proxy/worker/exchange.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

using router::PercentDecode;
using router::QueryParam;
using router::QueryParamCount;
using router::ReplaceParam;

bool Exchange::IgnoredPath(absl::string_view path) {
  for (const auto& re : routing_->ignore_paths()) {
    if (RE2::PartialMatch(re2::StringPiece(path.data(), path.size()), *re)) {
      return true;
    }
  }
  return false;
}

bool Exchange::Resolve(const std::string& name, std::string* renamed) {
  if (resolved_) return true;
  resolved_ = true;
  const std::string* current = &name;
  // The active profile's pin first, once (its target is not pinned again).
  if (const router::ProfileRoute* prof = routing_->active_profile()) {
    auto pin = prof->pins.find(name);
    if (pin != prof->pins.end()) {
      if (pin->second.empty()) {
        RespondError(404,
                     absl::StrCat("model '", name, "' is disabled by profile '",
                                  prof->name, "'"));
        return false;
      }
      *renamed = pin->second;
      current = renamed;
      renamed_ = true;
    }
  }
  // Then a selector (its targets are models).
  if (const router::SelectorRoute* sel = routing_->selectors().Find(*current)) {
    std::string picked = Select(*sel);
    if (picked.empty()) {
      RespondNoTarget(*sel);
      return false;
    }
    *renamed = std::move(picked);
    renamed_ = true;
  }
  return true;
}

std::string Exchange::Select(const router::SelectorRoute& sel) {
  // Only targets the route table has: after a reload the selectors arrive
  // a moment after the models, and a removed target must not be picked.
  const router::RouteTable& routes = routing_->routes();
  std::vector<const router::Route*> targets;
  for (const std::string& t : sel.targets) {
    if (const router::Route* r = routes.Find(t)) targets.push_back(r);
  }
  if (targets.empty()) return "";
  if (sel.strategy == "warm") {
    // The first target up, else one coming up, else the first (started).
    for (v1::ModelState want :
         {v1::MODEL_STATE_READY, v1::MODEL_STATE_STARTING}) {
      for (const router::Route* r : targets) {
        if (r->state == want) return r->id;
      }
    }
  } else if (sel.strategy == "spillover") {
    // In order, each up to `spillover` requests (in flight or waiting for
    // its lease); past that on every target, the least busy.
    lease::LeaseBroker& broker = worker_->context().broker();
    const router::Route* least = targets.front();
    int least_busy = std::numeric_limits<int>::max();
    for (const router::Route* r : targets) {
      int busy = broker.Busy(r->id);
      if (busy < sel.spillover) return r->id;
      if (busy < least_busy) {
        least_busy = busy;
        least = r;
      }
    }
    return least->id;
  }
  return targets.front()->id;  // pin.
}

void Exchange::RenameModelInQueryAndForm(const std::string& name) {
  if (scan_ == BodyScan::kForm) body_ = ReplaceParam(body_, "model", name);
  size_t q = head_.target.find('?');
  if (q != std::string::npos) {
    head_.target =
        absl::StrCat(absl::string_view(head_.target).substr(0, q + 1),
                     ReplaceParam(absl::string_view(head_.target).substr(q + 1),
                                  "model", name));
  }
}

void Exchange::RespondNoTarget(const router::SelectorRoute& sel) {
  RespondError(503, absl::StrCat("selector '", sel.id,
                                 "' has no target model (a reload may be "
                                 "under way)"));
}

void Exchange::ForwardToPeer(const router::PeerRoute& peer,
                             const std::string& requested, std::string target) {
  // The peer knows the model by its own name: a request that said
  // <peer>/<model> has its body say <model>.
  router::FilterSpec filters = peer.filters;
  // (A pin to a bare name changed the name since the body was written.)
  bool rename = renamed_ || requested != peer.model;
  if (rename) filters.use_model_name = peer.model;
  if (scan_ == BodyScan::kJson && filters.AppliesTo(requested)) {
    absl::StatusOr<std::string> filtered =
        router::ApplyJsonFilters(std::move(body_), filters, requested);
    if (!filtered.ok()) {
      return RespondError(400, std::string(filtered.status().message()));
    }
    body_ = *std::move(filtered);
    ChargeFiltered();
  } else if (scan_ == BodyScan::kMultipart && !filters.use_model_name.empty()) {
    router::RewriteMultipartModel(&body_, boundary_, filters.use_model_name);
    ChargeFiltered();
  }
  head_.target = std::move(target);
  if (rename) RenameModelInQueryAndForm(peer.model);
  record_.model = peer.name();
  timeouts_ = {peer.connect_timeout, peer.response_header_timeout,
               peer.idle_timeout};
  // No lease: the peer starts and swaps its models itself.
  SendUpstream(peer.upstream, peer.api_key);
}

}  // namespace modelplane::proxy
