// Per-worker request metrics. A worker's connections record each finished
// request in counters only the worker's loop thread touches (no lock); byte
// and connection counts are relaxed atomics. A /metrics scrape posts a task
// to every worker's loop that copies its counters into a shared total, and
// the last one renders the Prometheus text (modelproxy_main.cc): nothing
// blocks, so two workers scraping at once cannot deadlock.
#ifndef MODELPLANE_PROXY_WORKER_METRICS_H_
#define MODELPLANE_PROXY_WORKER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace modelplane::proxy {

// Cumulative histogram buckets, in seconds (then +Inf).
inline constexpr std::array<double, 13> kBuckets = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60};

// OpenTelemetry's GenAI semantic conventions: their histograms' explicit
// bucket boundaries (seconds; tokens for the usage).
inline constexpr double kGenAiDurationBuckets[] = {
    0.01, 0.02, 0.04, 0.08,  0.16,  0.32,  0.64,
    1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92};
inline constexpr double kGenAiTtftBuckets[] = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
    0.25,  0.5,   0.75, 1.0,  2.5,  5.0,  7.5,  10.0};
inline constexpr double kGenAiTpotBuckets[] = {
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5};
inline constexpr double kGenAiTokenBuckets[] = {
    1,     4,     16,     64,      256,     1024,     4096,
    16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864};

// A cumulative histogram over given boundaries (kBuckets, or one of the
// GenAI arrays above, set before the first Observe), then +Inf.
struct Histogram {
  absl::Span<const double> bounds = kBuckets;
  std::vector<uint64_t> counts;  // bounds.size() + 1 once observed.
  double sum = 0;
  uint64_t count = 0;

  void Observe(double value);
  void Observe(absl::Duration d) { Observe(absl::ToDoubleSeconds(d)); }
  void Merge(const Histogram& o);
};

// A model and the node it was served on ("" when none was chosen).
using ModelNode = std::tuple<std::string, std::string>;

struct Metrics {
  // (model, node, route, status) -> requests. Every map is found by
  // string_views (std::less<>): no key copied per request.
  std::map<std::tuple<std::string, std::string, std::string, int>, uint64_t,
           std::less<>>
      requests;
  std::map<ModelNode, Histogram, std::less<>> time_to_first_byte;
  std::map<ModelNode, Histogram, std::less<>> lease_wait;
  // (model, node, code) -> requests refused for want of a lease.
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t,
           std::less<>>
      lease_errors;
  // Tokens the models reported, by model and node.
  struct Tokens {
    uint64_t prompt = 0;
    uint64_t completion = 0;
  };
  std::map<ModelNode, Tokens, std::less<>> tokens;
  // OpenTelemetry GenAI, by model and node: request duration, time to the
  // first token and per output token (streams), and token usage by model,
  // node and type (input, output).
  std::map<ModelNode, Histogram, std::less<>> gen_ai_duration;
  std::map<ModelNode, Histogram, std::less<>> gen_ai_ttft;
  std::map<ModelNode, Histogram, std::less<>> gen_ai_tpot;
  std::map<std::tuple<std::string, std::string, std::string>, Histogram,
           std::less<>>
      gen_ai_tokens;
  // (node, reason) -> requests placed (cluster::ReasonName).
  std::map<std::tuple<std::string, std::string>, uint64_t, std::less<>>
      placements;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  int64_t open_connections = 0;
  // Requests refused because the bodies held would pass the budget.
  uint64_t bodies_refused = 0;
  uint64_t slow_stream_readers = 0;
  // TLS handshakes that failed (not TLS, no common version or cipher, a
  // bad certificate alert) and that did not finish in time.
  uint64_t tls_handshake_failed = 0;
  uint64_t tls_handshake_timed_out = 0;
  // Request body bytes held now (process-wide: set by the renderer).
  uint64_t buffered_body_bytes = 0;
  // One entry per worker merged in (Merge), in order.
  std::vector<int64_t> worker_connections;

  void Merge(const Metrics& o);
  // Prometheus text exposition; `in_flight` and `queued` by model and node
  // come from the nodes' lease brokers (process-wide).
  std::string Render(const std::map<ModelNode, int>& in_flight,
                     const std::map<ModelNode, int>& queued) const;
};

// What a connection knows of one request once it is over.
struct RequestRecord {
  std::string model;  // The route id; "" when no model was resolved.
  std::string node;   // The node it was placed on; "" when none.
  // A bounded set of literals: see RouteLabel().
  absl::string_view route = "other";
  int status = 0;  // 499: the client left before the response head.
  std::optional<absl::Duration> lease_wait;
  // Of lease_wait, the model's loading for it (the rest was the queue's).
  std::optional<absl::Duration> load_wait;
  std::optional<absl::Duration> time_to_first_byte;
  std::string lease_error;  // The absl status code name, when refused.
  // Why its node was chosen (cluster::ReasonName), when it was placed.
  const char* placement = nullptr;
  // The response's usage, when it reported one (router/usage_scanner.h).
  std::optional<uint64_t> prompt_tokens;
  std::optional<uint64_t> completion_tokens;
  // What else it reported: cached prompt tokens, llama.cpp's drafted
  // tokens (speculative decoding) and its measured speeds.
  std::optional<uint64_t> cached_tokens;
  std::optional<uint64_t> draft_tokens;
  std::optional<uint64_t> draft_accepted_tokens;
  std::optional<double> prompt_per_second;
  std::optional<double> predicted_per_second;
  // A model's request: from its head to its end; and for an event stream,
  // from its head to the model's first bytes and from them to its end.
  std::optional<absl::Duration> duration;
  std::optional<absl::Duration> time_to_first_token;
  std::optional<absl::Duration> generation;
};

// The label for a request path: known routes by name, /upstream/... as
// "/upstream", everything else "other" (labels must stay few).
absl::string_view RouteLabel(absl::string_view path);

// One worker's counters. Record and Snapshot on the worker's loop thread
// only (no lock: a request's accounting is a few map updates); the byte and
// connection counters are atomics, for any thread.
class WorkerMetrics {
 public:
  void Record(const RequestRecord& r);
  void AddBytesIn(uint64_t n) {
    bytes_in_.fetch_add(n, std::memory_order_relaxed);
  }
  void AddBytesOut(uint64_t n) {
    bytes_out_.fetch_add(n, std::memory_order_relaxed);
  }
  void AddConnections(int delta) {
    open_connections_.fetch_add(delta, std::memory_order_relaxed);
  }
  void AddBodyRefused() {
    bodies_refused_.fetch_add(1, std::memory_order_relaxed);
  }
  void AddSlowStreamReader() {
    slow_stream_readers_.fetch_add(1, std::memory_order_relaxed);
  }
  void AddTlsHandshakeFailure(bool timed_out) {
    (timed_out ? tls_timed_out_ : tls_failed_)
        .fetch_add(1, std::memory_order_relaxed);
  }
  // A copy; the worker's loop thread.
  Metrics Snapshot();

 private:
  // The series of one model and node, found once per request instead of
  // once per map: pointers into metrics_'s maps (whose entries never move),
  // each set when it is first observed, so a series still appears only
  // once something was counted in it.
  struct Series {
    Histogram* time_to_first_byte = nullptr;
    Histogram* lease_wait = nullptr;
    Metrics::Tokens* tokens = nullptr;
    Histogram* gen_ai_duration = nullptr;
    Histogram* gen_ai_ttft = nullptr;
    Histogram* gen_ai_tpot = nullptr;
    Histogram* gen_ai_input = nullptr;
    Histogram* gen_ai_output = nullptr;
    // By route (a RouteLabel literal) and status; by placement reason.
    struct Count {
      absl::string_view route;
      int status;
      uint64_t* n;
    };
    std::vector<Count> requests;
    std::vector<std::pair<absl::string_view, uint64_t*>> placements;
  };
  Series& SeriesOf(absl::string_view model, absl::string_view node);

  Metrics metrics_;
  std::map<ModelNode, Series, std::less<>> series_;
  Series* last_series_ = nullptr;  // Requests come in runs of one model.
  const ModelNode* last_key_ = nullptr;
  std::atomic<uint64_t> bytes_in_{0};
  std::atomic<uint64_t> bytes_out_{0};
  std::atomic<int64_t> open_connections_{0};
  std::atomic<uint64_t> bodies_refused_{0};
  std::atomic<uint64_t> slow_stream_readers_{0};
  std::atomic<uint64_t> tls_failed_{0};
  std::atomic<uint64_t> tls_timed_out_{0};
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_METRICS_H_
