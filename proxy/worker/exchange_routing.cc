// Exchange, carrying out where the router sent a request: a peer's model
// (no lease), and a pinned or selected name rewritten in the query or the
// form. Members of Exchange, apart from the request path for readability
// (as local_answers.cc).
#include <string>

#include "absl/strings/str_cat.h"
#include "proxy/router/body_filters.h"
#include "proxy/router/url_params.h"
#include "proxy/worker/exchange.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

using router::ReplaceParam;

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
