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

void RenderHistogram(std::string* out, const std::string& name,
                     const std::string& help,
                     const std::map<std::string, Histogram>& by_model) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name,
                  " histogram\n");
  for (const auto& [model, h] : by_model) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= kBuckets.size(); ++i) {
      cumulative += h.counts[i];
      absl::StrAppend(out, name, "_bucket{model=\"", Label(model), "\",le=\"",
                      i < kBuckets.size() ? absl::StrCat(kBuckets[i]) : "+Inf",
                      "\"} ", cumulative, "\n");
    }
    absl::StrAppend(out, name, "_sum{model=\"", Label(model), "\"} ", h.sum,
                    "\n", name, "_count{model=\"", Label(model), "\"} ",
                    h.count, "\n");
  }
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
  auto key = std::make_tuple(absl::string_view(r.model), r.route, r.status);
  auto it = metrics_.requests.find(key);
  if (it == metrics_.requests.end()) {
    it = metrics_.requests
             .emplace(std::make_tuple(r.model, std::string(r.route), r.status),
                      0)
             .first;
  }
  ++it->second;
  if (r.lease_wait) metrics_.lease_wait[r.model].Observe(*r.lease_wait);
  if (r.time_to_first_byte) {
    metrics_.time_to_first_byte[r.model].Observe(*r.time_to_first_byte);
  }
  if (!r.lease_error.empty()) {
    ++metrics_.lease_errors[{r.model, r.lease_error}];
  }
  if (r.prompt_tokens || r.completion_tokens) {
    auto t = metrics_.tokens.find(absl::string_view(r.model));
    if (t == metrics_.tokens.end()) {
      t = metrics_.tokens.emplace(r.model, Metrics::Tokens()).first;
    }
    t->second.prompt += r.prompt_tokens.value_or(0);
    t->second.completion += r.completion_tokens.value_or(0);
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
                 const std::string& help,
                 const std::map<std::string, int>& by_model) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name,
                  " gauge\n");
  for (const auto& [model, n] : by_model) {
    absl::StrAppend(out, name, "{model=\"", Label(model), "\"} ", n, "\n");
  }
}
}  // namespace

std::string Metrics::Render(const std::map<std::string, int>& in_flight,
                            const std::map<std::string, int>& queued) const {
  std::string out =
      "# HELP modelproxy_requests_total Requests answered, by model, route "
      "and status.\n# TYPE modelproxy_requests_total counter\n";
  for (const auto& [k, v] : requests) {
    absl::StrAppend(&out, "modelproxy_requests_total{model=\"",
                    Label(std::get<0>(k)), "\",route=\"", Label(std::get<1>(k)),
                    "\",status=\"", std::get<2>(k), "\"} ", v, "\n");
  }
  RenderGauge(&out, "modelproxy_in_flight",
              "Requests holding their model's lease, by model.", in_flight);
  RenderGauge(&out, "modelproxy_queued",
              "Requests waiting for their model's lease, by model.", queued);
  RenderHistogram(&out, "modelproxy_upstream_time_to_first_byte_seconds",
                  "From sending a request upstream to its response head.",
                  time_to_first_byte);
  RenderHistogram(&out, "modelproxy_lease_wait_seconds",
                  "From routing a request to holding its model's lease (the "
                  "queue and any start or swap).",
                  lease_wait);
  absl::StrAppend(&out,
                  "# HELP modelproxy_lease_errors_total Requests refused "
                  "for want of a lease, by model and code.\n"
                  "# TYPE modelproxy_lease_errors_total counter\n");
  for (const auto& [k, v] : lease_errors) {
    absl::StrAppend(&out, "modelproxy_lease_errors_total{model=\"",
                    Label(k.first), "\",code=\"", k.second, "\"} ", v, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP modelproxy_tokens_total Tokens the models reported "
                  "in their responses' usage, by model and type (prompt, "
                  "completion).\n"
                  "# TYPE modelproxy_tokens_total counter\n");
  for (const auto& [model, t] : tokens) {
    absl::StrAppend(&out, "modelproxy_tokens_total{model=\"", Label(model),
                    "\",type=\"completion\"} ", t.completion,
                    "\nmodelproxy_tokens_total{model=\"", Label(model),
                    "\",type=\"prompt\"} ", t.prompt, "\n");
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
