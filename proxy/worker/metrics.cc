#include "proxy/worker/metrics.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "proxy/router/route_table.h"

namespace modelplane::proxy {
namespace {

std::string Label(const std::string& v) {
  return absl::StrReplaceAll(v,
                             {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

// model="m",node="n"
std::string ModelNodeLabels(const ModelNode& k) {
  return absl::StrCat("model=\"", Label(std::get<0>(k)), "\",node=\"",
                      Label(std::get<1>(k)), "\"");
}

void RenderHistogram(std::string* out, const std::string& name,
                     const std::string& help,
                     const std::map<ModelNode, Histogram, std::less<>>& by) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name,
                  " histogram\n");
  for (const auto& [key, h] : by) {
    std::string labels = ModelNodeLabels(key);
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= kBuckets.size(); ++i) {
      cumulative += h.counts[i];
      absl::StrAppend(out, name, "_bucket{", labels, ",le=\"",
                      i < kBuckets.size() ? absl::StrCat(kBuckets[i]) : "+Inf",
                      "\"} ", cumulative, "\n");
    }
    absl::StrAppend(out, name, "_sum{", labels, "} ", h.sum, "\n", name,
                    "_count{", labels, "} ", h.count, "\n");
  }
}

// The entry of `map` for `key` (string_views and the like), made if new.
template <typename Map, typename... K>
typename Map::mapped_type& At(Map& map, const K&... key) {
  auto it = map.find(std::make_tuple(key...));
  if (it == map.end()) {
    it =
        map.emplace(typename Map::key_type(key...), typename Map::mapped_type())
            .first;
  }
  return it->second;
}

}  // namespace

void Histogram::Observe(absl::Duration d) {
  double s = absl::ToDoubleSeconds(d);
  size_t i = 0;
  while (i < kBuckets.size() && s > kBuckets[i]) ++i;
  ++counts[i];
  sum += s;
  ++count;
}

void Histogram::Merge(const Histogram& o) {
  for (size_t i = 0; i < counts.size(); ++i) counts[i] += o.counts[i];
  sum += o.sum;
  count += o.count;
}

void Metrics::Merge(const Metrics& o) {
  for (const auto& [k, v] : o.requests) requests[k] += v;
  for (const auto& [k, v] : o.time_to_first_byte)
    time_to_first_byte[k].Merge(v);
  for (const auto& [k, v] : o.lease_wait) lease_wait[k].Merge(v);
  for (const auto& [k, v] : o.lease_errors) lease_errors[k] += v;
  for (const auto& [k, v] : o.tokens) {
    tokens[k].prompt += v.prompt;
    tokens[k].completion += v.completion;
  }
  for (const auto& [k, v] : o.placements) placements[k] += v;
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  open_connections += o.open_connections;
  bodies_refused += o.bodies_refused;
  worker_connections.push_back(o.open_connections);
}

namespace {

// Answered by the proxy itself.
constexpr const char* kLocalRoutes[] = {
    "/health",  "/wol-health", "/v1/models", "/models",
    "/running", "/unload",     "/metrics",   "/api/models/unload",
};

}  // namespace

absl::string_view RouteLabel(absl::string_view path) {
  for (const char* r : router::kBodyRoutes) {
    if (path == r) return r;
  }
  for (const char* r : kLocalRoutes) {
    if (path == r) return r;
  }
  if (absl::StartsWith(path, "/upstream/")) return "/upstream";
  return "other";
}

void WorkerMetrics::Record(const RequestRecord& r) {
  absl::string_view model = r.model;
  absl::string_view node = r.node;
  ++At(metrics_.requests, model, node, r.route, r.status);
  if (r.lease_wait) At(metrics_.lease_wait, model, node).Observe(*r.lease_wait);
  if (r.time_to_first_byte) {
    At(metrics_.time_to_first_byte, model, node).Observe(*r.time_to_first_byte);
  }
  if (!r.lease_error.empty()) {
    ++At(metrics_.lease_errors, model, node, absl::string_view(r.lease_error));
  }
  if (r.prompt_tokens || r.completion_tokens) {
    Metrics::Tokens& t = At(metrics_.tokens, model, node);
    t.prompt += r.prompt_tokens.value_or(0);
    t.completion += r.completion_tokens.value_or(0);
  }
  if (r.placement != nullptr) {
    ++At(metrics_.placements, node, absl::string_view(r.placement));
  }
}

Metrics WorkerMetrics::Snapshot() {
  Metrics m = metrics_;
  m.bytes_in = bytes_in_.load(std::memory_order_relaxed);
  m.bytes_out = bytes_out_.load(std::memory_order_relaxed);
  m.open_connections = open_connections_.load(std::memory_order_relaxed);
  m.bodies_refused = bodies_refused_.load(std::memory_order_relaxed);
  return m;
}

namespace {
void RenderGauge(std::string* out, const std::string& name,
                 const std::string& help, const std::map<ModelNode, int>& by) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name,
                  " gauge\n");
  for (const auto& [key, n] : by) {
    absl::StrAppend(out, name, "{", ModelNodeLabels(key), "} ", n, "\n");
  }
}
}  // namespace

std::string Metrics::Render(const std::map<ModelNode, int>& in_flight,
                            const std::map<ModelNode, int>& queued) const {
  std::string out =
      "# HELP modelproxy_requests_total Requests answered, by model, node, "
      "route and status.\n# TYPE modelproxy_requests_total counter\n";
  for (const auto& [k, v] : requests) {
    absl::StrAppend(&out, "modelproxy_requests_total{model=\"",
                    Label(std::get<0>(k)), "\",node=\"", Label(std::get<1>(k)),
                    "\",route=\"", Label(std::get<2>(k)), "\",status=\"",
                    std::get<3>(k), "\"} ", v, "\n");
  }
  RenderGauge(&out, "modelproxy_in_flight",
              "Requests holding their model's lease, by model and node.",
              in_flight);
  RenderGauge(&out, "modelproxy_queued",
              "Requests waiting for their model's lease, by model and node.",
              queued);
  absl::StrAppend(&out,
                  "# HELP modelproxy_placements_total Requests placed on a "
                  "node, by node and reason (ready, starting, cost, "
                  "spillover, failover).\n"
                  "# TYPE modelproxy_placements_total counter\n");
  for (const auto& [k, v] : placements) {
    absl::StrAppend(&out, "modelproxy_placements_total{node=\"",
                    Label(std::get<0>(k)), "\",reason=\"", std::get<1>(k),
                    "\"} ", v, "\n");
  }
  RenderHistogram(&out, "modelproxy_upstream_time_to_first_byte_seconds",
                  "From sending a request upstream to its response head.",
                  time_to_first_byte);
  RenderHistogram(&out, "modelproxy_lease_wait_seconds",
                  "From routing a request to holding its model's lease (the "
                  "queue and any start or swap).",
                  lease_wait);
  absl::StrAppend(&out,
                  "# HELP modelproxy_lease_errors_total Requests refused "
                  "for want of a lease, by model, node and code.\n"
                  "# TYPE modelproxy_lease_errors_total counter\n");
  for (const auto& [k, v] : lease_errors) {
    absl::StrAppend(&out, "modelproxy_lease_errors_total{model=\"",
                    Label(std::get<0>(k)), "\",node=\"", Label(std::get<1>(k)),
                    "\",code=\"", std::get<2>(k), "\"} ", v, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP modelproxy_tokens_total Tokens the models reported "
                  "in their responses' usage, by model, node and type "
                  "(prompt, completion).\n"
                  "# TYPE modelproxy_tokens_total counter\n");
  for (const auto& [key, t] : tokens) {
    std::string labels = ModelNodeLabels(key);
    absl::StrAppend(&out, "modelproxy_tokens_total{", labels,
                    ",type=\"completion\"} ", t.completion,
                    "\nmodelproxy_tokens_total{", labels, ",type=\"prompt\"} ",
                    t.prompt, "\n");
  }
  absl::StrAppend(
      &out,
      "# HELP modelproxy_bytes_received_total Request bytes read from "
      "clients.\n"
      "# TYPE modelproxy_bytes_received_total counter\n"
      "modelproxy_bytes_received_total ",
      bytes_in,
      "\n# HELP modelproxy_bytes_sent_total Response bytes written to "
      "clients.\n# TYPE modelproxy_bytes_sent_total counter\n"
      "modelproxy_bytes_sent_total ",
      bytes_out,
      "\n# HELP modelproxy_open_connections Client connections open.\n"
      "# TYPE modelproxy_open_connections gauge\nmodelproxy_open_connections ",
      open_connections,
      "\n# HELP modelproxy_buffered_body_bytes Request body bytes held in "
      "memory (bounded by --max-buffered-body-mib).\n"
      "# TYPE modelproxy_buffered_body_bytes gauge\n"
      "modelproxy_buffered_body_bytes ",
      buffered_body_bytes,
      "\n# HELP modelproxy_body_budget_refused_total Requests refused (503) "
      "because their body would pass --max-buffered-body-mib.\n"
      "# TYPE modelproxy_body_budget_refused_total counter\n"
      "modelproxy_body_budget_refused_total ",
      bodies_refused, "\n");
  if (!worker_connections.empty()) {
    out.append(
        "# HELP modelproxy_worker_connections Client connections open, by "
        "worker.\n# TYPE modelproxy_worker_connections gauge\n");
    for (size_t i = 0; i < worker_connections.size(); ++i) {
      absl::StrAppend(&out, "modelproxy_worker_connections{worker=\"", i,
                      "\"} ", worker_connections[i], "\n");
    }
  }
  return out;
}

}  // namespace modelplane::proxy
