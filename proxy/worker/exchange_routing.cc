// Exchange, carrying out where the router sent a request: a peer's model
// (no lease), and a pinned or selected name rewritten in the query or the
// form. Members of Exchange, apart from the request path for readability.
#include <string>

#include "absl/strings/str_cat.h"
#include "proxy/router/body_filters.h"
#include "proxy/router/url_params.h"
#include "proxy/worker/exchange.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

using router::ReplaceParam;

void Exchange::RenameModelInQueryAndForm(const std::string& name) {
  if (req_.scan == BodyScan::kForm) body_ = ReplaceParam(body_, "model", name);
  size_t q = req_.head.target.find('?');
  if (q != std::string::npos) {
    req_.head.target = absl::StrCat(
        absl::string_view(req_.head.target).substr(0, q + 1),
        ReplaceParam(absl::string_view(req_.head.target).substr(q + 1), "model",
                     name));
  }
}

void Exchange::ForwardToPeer(const router::PeerRoute& peer,
                             const std::string& requested, std::string target) {
  // The peer knows the model by its own name: a request that said
  // <peer>/<model> has its body say <model>.
  router::FilterSpec filters = peer.filters;
  // (A pin to a bare name changed the name since the body was written.)
  bool rename = req_.renamed || requested != peer.model;
  if (rename) filters.use_model_name = peer.model;
  if (req_.scan == BodyScan::kJson && filters.AppliesTo(requested)) {
    absl::StatusOr<std::string> filtered =
        router::ApplyJsonFilters(std::move(body_), filters, requested);
    if (!filtered.ok()) {
      return RespondError(400, std::string(filtered.status().message()));
    }
    body_ = *std::move(filtered);
    ChargeFiltered();
  } else if (req_.scan == BodyScan::kMultipart &&
             !filters.use_model_name.empty()) {
    router::RewriteMultipartModel(&body_, req_.boundary,
                                  filters.use_model_name);
    ChargeFiltered();
  }
  // Under the peer's base path, as llama-swap forwards it.
  req_.head.target =
      peer.base_path.empty() ? std::move(target) : peer.base_path + target;
  if (rename) RenameModelInQueryAndForm(peer.model);
  req_.record.model = peer.name();
  req_.timeouts = {peer.connect_timeout, peer.response_header_timeout,
                   peer.idle_timeout};
  req_.timeouts.tls_handshake = peer.tls_handshake_timeout;
  req_.timeouts.keepalive = peer.keepalive;
  req_.timeouts.tls_ca_pem = peer.tls_ca_pem;
  req_.timeouts.tls_insecure = peer.tls_insecure;
  // No lease: the peer starts and swaps its models itself.
  SendUpstream(peer.upstream, peer.api_key);
}

void Exchange::ForwardIgnoredWebSocket(const router::Route& route) {
  // compat.ignoreWebsockets (llama-swap's): the handshake takes no lease,
  // so it neither starts the model nor counts toward its concurrency or
  // TTL; it goes to a node where the model is READY, or gets 409. A swap
  // does not wait for such a tunnel (nothing holds the model for it).
  const v1::Model* ready = nullptr;
  std::string node;
  for (const router::RouteNode& n : route.nodes) {
    if (n.state == v1::MODEL_STATE_READY && n.model != nullptr) {
      ready = n.model.get();
      node = n.node;
      break;
    }
  }
  if (ready == nullptr && route.nodes.empty() && route.model != nullptr &&
      route.state == v1::MODEL_STATE_READY) {
    ready = route.model.get();  // A table of one node's own.
  }
  if (ready == nullptr) {
    return RespondError(
        409, absl::StrCat("model '", route.id,
                          "' is not loaded, and its compat.ignoreWebsockets "
                          "says a WebSocket does not start it"));
  }
  req_.record.node = node;
  SendUpstream(ready->upstream_url(), "");
}

}  // namespace modelplane::proxy
