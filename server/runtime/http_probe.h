// actor::HealthProber over libuv: one short HTTP/1.1 GET per probe
// (`Connection: close`), answered by the status code of the response line.
// Each probe is bounded by its timeout, so a hung /health can never outlive
// the model's healthCheckTimeout.
//
// URLs are http://host[:port]/path. The host is an IPv4 or IPv6 literal or
// `localhost` (127.0.0.1), which covers local inference servers; other names
// are resolved with the libuv resolver. https:// URLs are answered with an
// Unimplemented error (TLS probes are a later step).
#ifndef MODELPLANE_SERVER_RUNTIME_HTTP_PROBE_H_
#define MODELPLANE_SERVER_RUNTIME_HTTP_PROBE_H_

#include <uv.h>

#include <string>

#include "absl/status/statusor.h"
#include "server/core/actor/env.h"

namespace modelplane::runtime {

struct ParsedUrl {
  std::string host;  // Without brackets for IPv6.
  int port = 80;
  std::string path;  // Starts with '/'.
};

// Parses http://host[:port][/path].
absl::StatusOr<ParsedUrl> ParseHttpUrl(const std::string& url);

class HttpProber : public actor::HealthProber {
 public:
  // Loop thread only; `loop` outlives the prober and its probes.
  explicit HttpProber(uv_loop_t* loop) : loop_(loop) {}

  std::unique_ptr<actor::Probe> Get(
      const std::string& url, absl::Duration timeout,
      std::function<void(absl::StatusOr<int>)> done) override;

 private:
  uv_loop_t* loop_;
};

}  // namespace modelplane::runtime

#endif  // MODELPLANE_SERVER_RUNTIME_HTTP_PROBE_H_
