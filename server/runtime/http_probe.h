// actor::HealthProber over libuv: one short HTTP/1.1 GET per probe
// (`Connection: close`), answered by the status code of the response line.
// Each probe is bounded by its timeout, so a hung /health can never outlive
// the model's healthCheckTimeout.
//
// URLs are http://host[:port]/path. The host is an IPv4 or IPv6 literal or
// `localhost` (127.0.0.1), which covers local inference servers; other names
// are resolved with the libuv resolver. https:// URLs speak TLS (SNI and the
// name checked, as the data plane does), trusting as the model's `tls`
// says.
#ifndef MODELPLANE_SERVER_RUNTIME_HTTP_PROBE_H_
#define MODELPLANE_SERVER_RUNTIME_HTTP_PROBE_H_

#include <uv.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls/tls.h"
#include "server/core/actor/env.h"

namespace modelplane::runtime {

struct ParsedUrl {
  std::string host;  // Without brackets for IPv6.
  int port = 80;
  std::string path;  // Starts with '/'.
  bool tls = false;  // https://.
};

// Parses http[s]://host[:port][/path].
absl::StatusOr<ParsedUrl> ParseHttpUrl(const std::string& url);

class HttpProber : public actor::HealthProber {
 public:
  // Loop thread only; `loop` outlives the prober and its probes.
  explicit HttpProber(uv_loop_t* loop) : loop_(loop) {}

  std::unique_ptr<actor::Probe> Get(
      const std::string& url, const actor::ProbeTrust& trust,
      absl::Duration timeout,
      std::function<void(absl::StatusOr<int>)> done) override;
  std::unique_ptr<actor::Probe> Post(
      const std::string& url, const actor::ProbeTrust& trust,
      absl::Duration timeout,
      std::function<void(absl::StatusOr<int>)> done) override;

 private:
  std::unique_ptr<actor::Probe> Send(
      const char* method, const std::string& url,
      const actor::ProbeTrust& trust, absl::Duration timeout,
      std::function<void(absl::StatusOr<int>)> done);

  uv_loop_t* loop_;
  tls::ClientTlsContexts tls_contexts_;  // Per way of trusting.
};

}  // namespace modelplane::runtime

#endif  // MODELPLANE_SERVER_RUNTIME_HTTP_PROBE_H_
