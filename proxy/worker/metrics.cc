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

void Histogram::Observe(double value) {
  if (counts.empty()) counts.assign(bounds.size() + 1, 0);
  size_t i = 0;
  while (i < bounds.size() && value > bounds[i]) ++i;
  ++counts[i];
  sum += value;
  ++count;
}

void Histogram::Merge(const Histogram& o) {
  if (counts.empty()) {  // A fresh total takes the bounds it merges.
    bounds = o.bounds;
    counts.assign(bounds.size() + 1, 0);
  }
  for (size_t i = 0; i < counts.size() && i < o.counts.size(); ++i) {
    counts[i] += o.counts[i];
  }
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
  for (const auto& [k, v] : o.gen_ai_duration) gen_ai_duration[k].Merge(v);
  for (const auto& [k, v] : o.gen_ai_ttft) gen_ai_ttft[k].Merge(v);
  for (const auto& [k, v] : o.gen_ai_tpot) gen_ai_tpot[k].Merge(v);
  for (const auto& [k, v] : o.gen_ai_tokens) gen_ai_tokens[k].Merge(v);
  bytes_in += o.bytes_in;
  bytes_out += o.bytes_out;
  open_connections += o.open_connections;
  bodies_refused += o.bodies_refused;
  slow_stream_readers += o.slow_stream_readers;
  tls_handshake_failed += o.tls_handshake_failed;
  tls_handshake_timed_out += o.tls_handshake_timed_out;
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

WorkerMetrics::Series& WorkerMetrics::SeriesOf(absl::string_view model,
                                               absl::string_view node) {
  if (last_series_ != nullptr && std::get<0>(*last_key_) == model &&
      std::get<1>(*last_key_) == node) {
    return *last_series_;
  }
  auto it = series_.find(std::make_tuple(model, node));
  if (it == series_.end()) {
    it = series_.emplace(ModelNode(model, node), Series()).first;
  }
  last_key_ = &it->first;
  last_series_ = &it->second;
  return it->second;
}

void WorkerMetrics::Record(const RequestRecord& r) {
  absl::string_view model = r.model;
  absl::string_view node = r.node;
  Series& series = SeriesOf(model, node);
  // Finds (or makes) the series of `map` for this model and node once.
  auto at = [&](auto*& slot, auto& map) -> auto& {
    if (slot == nullptr) slot = &At(map, model, node);
    return *slot;
  };
  uint64_t* requests = nullptr;
  for (const Series::Count& c : series.requests) {
    if (c.status == r.status && c.route == r.route) requests = c.n;
  }
  if (requests == nullptr) {
    requests = &At(metrics_.requests, model, node, r.route, r.status);
    series.requests.push_back({r.route, r.status, requests});
  }
  ++*requests;
  if (r.lease_wait) {
    at(series.lease_wait, metrics_.lease_wait).Observe(*r.lease_wait);
  }
  if (r.time_to_first_byte) {
    at(series.time_to_first_byte, metrics_.time_to_first_byte)
        .Observe(*r.time_to_first_byte);
  }
  if (!r.lease_error.empty()) {
    ++At(metrics_.lease_errors, model, node, absl::string_view(r.lease_error));
  }
  if (r.prompt_tokens || r.completion_tokens) {
    Metrics::Tokens& t = at(series.tokens, metrics_.tokens);
    t.prompt += r.prompt_tokens.value_or(0);
    t.completion += r.completion_tokens.value_or(0);
  }
  if (r.placement != nullptr) {
    absl::string_view reason(r.placement);
    uint64_t* placed = nullptr;
    for (const auto& [known, n] : series.placements) {
      if (known == reason) placed = n;
    }
    if (placed == nullptr) {
      placed = &At(metrics_.placements, node, reason);
      series.placements.emplace_back(reason, placed);
    }
    ++*placed;
  }
  auto observe = [](Histogram& h, absl::Span<const double> bounds, double v) {
    h.bounds = bounds;
    h.Observe(v);
  };
  if (r.duration) {
    observe(at(series.gen_ai_duration, metrics_.gen_ai_duration),
            kGenAiDurationBuckets, absl::ToDoubleSeconds(*r.duration));
  }
  if (r.time_to_first_token) {
    observe(at(series.gen_ai_ttft, metrics_.gen_ai_ttft), kGenAiTtftBuckets,
            absl::ToDoubleSeconds(*r.time_to_first_token));
  }
  // Per output token after the first (OpenTelemetry's definition).
  if (r.generation && r.completion_tokens.value_or(0) > 1) {
    observe(at(series.gen_ai_tpot, metrics_.gen_ai_tpot), kGenAiTpotBuckets,
            absl::ToDoubleSeconds(*r.generation) /
                static_cast<double>(*r.completion_tokens - 1));
  }
  if (r.prompt_tokens) {
    if (series.gen_ai_input == nullptr) {
      series.gen_ai_input =
          &At(metrics_.gen_ai_tokens, model, node, absl::string_view("input"));
    }
    observe(*series.gen_ai_input, kGenAiTokenBuckets,
            static_cast<double>(*r.prompt_tokens));
  }
  if (r.completion_tokens) {
    if (series.gen_ai_output == nullptr) {
      series.gen_ai_output =
          &At(metrics_.gen_ai_tokens, model, node, absl::string_view("output"));
    }
    observe(*series.gen_ai_output, kGenAiTokenBuckets,
            static_cast<double>(*r.completion_tokens));
  }
}

Metrics WorkerMetrics::Snapshot() {
  Metrics m = metrics_;
  m.bytes_in = bytes_in_.load(std::memory_order_relaxed);
  m.bytes_out = bytes_out_.load(std::memory_order_relaxed);
  m.open_connections = open_connections_.load(std::memory_order_relaxed);
  m.bodies_refused = bodies_refused_.load(std::memory_order_relaxed);
  m.slow_stream_readers = slow_stream_readers_.load(std::memory_order_relaxed);
  m.tls_handshake_failed = tls_failed_.load(std::memory_order_relaxed);
  m.tls_handshake_timed_out = tls_timed_out_.load(std::memory_order_relaxed);
  return m;
}

namespace {

// One histogram series per key of `by`, its labels by `labels(key)`.
template <typename Map, typename Labels>
void RenderHistograms(std::string* out, const std::string& name,
                      const std::string& help, const Map& by, Labels labels) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name,
                  " histogram\n");
  for (const auto& [key, h] : by) {
    std::string l = labels(key);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      absl::StrAppend(out, name, "_bucket{", l, ",le=\"",
                      i < h.bounds.size() ? absl::StrCat(h.bounds[i]) : "+Inf",
                      "\"} ", cumulative, "\n");
    }
    absl::StrAppend(out, name, "_sum{", l, "} ", h.sum, "\n", name, "_count{",
                    l, "} ", h.count, "\n");
  }
}

// The GenAI labels: the model requested and the node that served it.
std::string GenAiLabels(const ModelNode& k) {
  return absl::StrCat("gen_ai_request_model=\"", Label(std::get<0>(k)),
                      "\",node=\"", Label(std::get<1>(k)), "\"");
}

void RenderGenAi(std::string* out, const Metrics& m) {
  RenderHistograms(out, "gen_ai_server_request_duration_seconds",
                   "OpenTelemetry gen_ai.server.request.duration: a model's "
                   "request, from its head to its end.",
                   m.gen_ai_duration, GenAiLabels);
  RenderHistograms(out, "gen_ai_server_time_to_first_token_seconds",
                   "OpenTelemetry gen_ai.server.time_to_first_token: a "
                   "streamed request, from its head to the model's first "
                   "bytes.",
                   m.gen_ai_ttft, GenAiLabels);
  RenderHistograms(out, "gen_ai_server_time_per_output_token_seconds",
                   "OpenTelemetry gen_ai.server.time_per_output_token: a "
                   "streamed request's generation time per output token after "
                   "the first.",
                   m.gen_ai_tpot, GenAiLabels);
  RenderHistograms(
      out, "gen_ai_client_token_usage",
      "OpenTelemetry gen_ai.client.token.usage: tokens per request, by type "
      "(input, output), as the model reported them.",
      m.gen_ai_tokens, [](const auto& k) {
        return absl::StrCat(GenAiLabels({std::get<0>(k), std::get<1>(k)}),
                            ",gen_ai_token_type=\"", std::get<2>(k), "\"");
      });
}

// The names the Kubernetes Gateway API inference extension reads (vLLM's),
// per model (every node's together).
void RenderVllm(std::string* out, const std::map<ModelNode, int>& in_flight,
                const std::map<ModelNode, int>& queued) {
  auto gauge = [out](const char* name, const char* help,
                     const std::map<ModelNode, int>& by) {
    std::map<std::string, int> per_model;
    for (const auto& [k, n] : by) per_model[std::get<0>(k)] += n;
    absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name,
                    " gauge\n");
    for (const auto& [model, n] : per_model) {
      absl::StrAppend(out, name, "{model_name=\"", Label(model), "\"} ", n,
                      "\n");
    }
  };
  gauge("vllm:num_requests_running",
        "Requests holding their model's lease (as vLLM names it).", in_flight);
  gauge("vllm:num_requests_waiting",
        "Requests waiting for their model's lease (as vLLM names it).", queued);
}

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
  RenderGenAi(&out, *this);
  RenderVllm(&out, in_flight, queued);
  RenderHistograms(&out, "modelproxy_upstream_time_to_first_byte_seconds",
                   "From sending a request upstream to its response head.",
                   time_to_first_byte, ModelNodeLabels);
  RenderHistograms(&out, "modelproxy_lease_wait_seconds",
                   "From routing a request to holding its model's lease (the "
                   "queue and any start or swap).",
                   lease_wait, ModelNodeLabels);
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
      bodies_refused,
      "\n# HELP modelproxy_slow_stream_readers_total Readers of /api/events "
      "cut, or of a log stream that missed output, for reading slower than "
      "it came.\n"
      "# TYPE modelproxy_slow_stream_readers_total counter\n"
      "modelproxy_slow_stream_readers_total ",
      slow_stream_readers,
      "\n# HELP modelproxy_tls_handshake_failures_total TLS handshakes on "
      "the listener that failed (error) or did not finish within "
      "--tls-handshake-timeout-ms (timeout).\n"
      "# TYPE modelproxy_tls_handshake_failures_total counter\n"
      "modelproxy_tls_handshake_failures_total{reason=\"error\"} ",
      tls_handshake_failed,
      "\nmodelproxy_tls_handshake_failures_total{reason=\"timeout\"} ",
      tls_handshake_timed_out, "\n");
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
