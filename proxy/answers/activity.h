// The activity log: one entry per request served by a model, kept in
// memory (the newest `metricsMaxInMemory`, default 1000: each worker keeps
// up to that many of its own, a query the newest of them all), and its page
// of
// `GET /api/metrics/activity` (llama-swap's path; docs/proxy.md). A worker
// adds to its own ring on its loop (no lock on the request path); a query
// copies every worker's ring on its loop and merges them.
#ifndef MODELPLANE_PROXY_ANSWERS_ACTIVITY_H_
#define MODELPLANE_PROXY_ANSWERS_ACTIVITY_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace modelplane::proxy::answers {

// llama-swap's default `metricsMaxInMemory`.
inline constexpr size_t kActivityDefault = 1000;

struct ActivityEntry {
  uint64_t id = 0;      // Grows with every entry, process-wide.
  int64_t unix_ms = 0;  // When the request ended.
  std::string model;    // The model id.
  std::string node;     // The node it was served on ("" for a peer's).
  std::string path;     // The request's path, without its query.
  int status = 0;
  std::optional<uint64_t> input_tokens;
  std::optional<uint64_t> output_tokens;
  std::optional<double> time_to_first_token_ms;  // Streams.
  // Waiting for the lease: in the queue (behind other models, a swap),
  // and for the model's loading (from the manager's STARTING).
  std::optional<double> queue_wait_ms;
  std::optional<double> load_wait_ms;
  double duration_ms = 0;
  // Output tokens per second of generation (after the first token for a
  // stream, the whole request otherwise), when the model reported tokens.
  std::optional<double> tokens_per_second;
  // Prompt tokens per second, as the model measured them (llama.cpp).
  std::optional<double> prompt_tokens_per_second;
  // Prompt tokens served from the model's cache; tokens drafted by its
  // speculative decoding (llama.cpp), where it reports them.
  std::optional<uint64_t> cached_tokens;
  std::optional<uint64_t> draft_tokens;
  std::optional<uint64_t> draft_accepted_tokens;  // Of draft_tokens.
  // An error's message (status 400 and up), at most 512 bytes.
  std::string error;
};

// The message of an error body (OpenAI's {"error":{"message"}}, or a
// "message" or "error" string), else its text; at most 512 bytes.
std::string ErrorMessageOf(absl::string_view body);

// One worker's ring (its loop thread only).
class ActivityRing {
 public:
  // Keeps at most `keep` (the oldest go first; a smaller `keep` than
  // before drops the oldest at once).
  void Add(ActivityEntry e, size_t keep = kActivityDefault);
  // Oldest first.
  std::vector<ActivityEntry> Copy() const;

 private:
  std::vector<ActivityEntry> ring_;  // Oldest first, from next_ on.
  size_t next_ = 0;  // Where the next entry goes once the ring is full.
};

// One entry as the JSON object the page and the `activity` event carry.
std::string ActivityJson(const ActivityEntry& e);

// A page's JSON: `newest_first` as they are, `next_before` the last's id
// when `more`.
std::string ActivityPageJson(const std::vector<ActivityEntry>& newest_first,
                             bool more);

// A page of the newest `keep` of `entries` (any order) as JSON, newest
// first: `model` and `status` filter (empty / 0: any), `before` an id (0:
// from the newest), `limit` entries at most (1 to 1000).
// {"activity":[{...}],"next_before":ID or null}
std::string ActivityPage(std::vector<ActivityEntry> entries,
                         absl::string_view model, int status, uint64_t before,
                         size_t limit, size_t keep = kActivityDefault);

}  // namespace modelplane::proxy::answers

#endif  // MODELPLANE_PROXY_ANSWERS_ACTIVITY_H_
