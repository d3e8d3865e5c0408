// Finds the token counts a model reports in its response — the `usage`
// object of OpenAI-style answers ("prompt_tokens", "completion_tokens"), of
// Anthropic's and OpenAI's Responses API ("input_tokens", "output_tokens"),
// and llama-server's /completion ("tokens_evaluated", "tokens_predicted") —
// while the response
// streams by, without parsing it: JSON bodies and SSE streams alike (a
// stream's usage comes in its last events). For the proxy's
// modelproxy_tokens_total counters.
//
//   UsageScanner u;
//   u.Feed(piece1); u.Feed(piece2);       // As the response arrives.
//   if (u.completion()) count(*u.completion());
//
// Also the cached prompt tokens (OpenAI's "cached_tokens", llama.cpp's
// "cache_n"), llama.cpp's speculative decoding ("draft_n",
// "draft_n_accepted") and the speeds llama.cpp measures in its `timings`
// ("prompt_per_second", "predicted_per_second"), for the activity log.
//
// The last value seen of each wins (an Anthropic stream reports output
// tokens as they grow). Only keys at a JSON key's start count
// ("prompt_tokens_details" and text inside strings, where quotes are
// escaped, do not). Costs a memchr for '_' over the bytes and a few
// compares per underscore; no allocation. Single-threaded.
#ifndef MODELPLANE_PROXY_ROUTER_USAGE_SCANNER_H_
#define MODELPLANE_PROXY_ROUTER_USAGE_SCANNER_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"

namespace modelplane::proxy::router {

class UsageScanner {
 public:
  void Feed(absl::string_view data);

  std::optional<uint64_t> prompt() const { return prompt_; }
  std::optional<uint64_t> completion() const { return completion_; }
  std::optional<uint64_t> cached() const { return cached_; }
  std::optional<uint64_t> draft() const { return draft_; }
  std::optional<uint64_t> draft_accepted() const { return draft_accepted_; }
  // Tokens per second, as the model measured them.
  std::optional<double> prompt_per_second() const { return prompt_per_second_; }
  std::optional<double> predicted_per_second() const {
    return predicted_per_second_;
  }

 private:
  // Spaces taken on each side of a key's ':'.
  static constexpr ptrdiff_t kMaxSpaces = 8;
  // A number's most characters ("1234.5678901234e+05").
  static constexpr ptrdiff_t kMaxNumber = 24;
  // Longest match: `"predicted_per_second"` (22), 8 spaces, ':', 8 spaces,
  // a number and the byte after it (64): it fits in the bytes kept across
  // reads, so a split never hides one.
  static constexpr size_t kKeep = 72;

  void Scan(absl::string_view buf);

  char tail_[kKeep];  // The stream's last bytes (tail_size_ of them).
  size_t tail_size_ = 0;
  std::optional<uint64_t> prompt_;
  std::optional<uint64_t> completion_;
  std::optional<uint64_t> cached_;
  std::optional<uint64_t> draft_;
  std::optional<uint64_t> draft_accepted_;
  std::optional<double> prompt_per_second_;
  std::optional<double> predicted_per_second_;
};

}  // namespace modelplane::proxy::router

#endif  // MODELPLANE_PROXY_ROUTER_USAGE_SCANNER_H_
