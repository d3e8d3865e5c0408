// modelmanager's serving mode: the Manager behind a gRPC server with the
// ModelManager service, the standard health service (per model:
// `model/<id>`) and server reflection, plus signal handling (SIGTERM/SIGINT
// shut down, SIGHUP reloads) and the optional config file watcher.
#ifndef MODELPLANE_SERVER_SERVE_H_
#define MODELPLANE_SERVER_SERVE_H_

#include <string>

#include "absl/time/time.h"

namespace modelplane {

struct ServeOptions {
  std::string config_path;  // May be empty when config_dir is not.
  std::string config_dir;   // llama-swap's -config-dir; may be empty.
  std::string listen = "127.0.0.1:50051";  // host:port or unix:PATH.
  bool watch_config = false;
  std::string log_level = "";       // Empty: the config's logLevel.
  std::string log_format = "text";  // text or json.
  std::string auth_token_file;
  std::string tls_cert, tls_key, tls_client_ca;
  absl::Duration shutdown_budget = absl::Seconds(30);
  // Watch, StreamLogs and Acquire streams open at once: from one peer
  // address, and
  // in all (RESOURCE_EXHAUSTED past either; rpc/stream_limits.h).
  int max_streams_per_peer = 256;
  int max_streams = 4096;
  // --metrics-listen: HOST:PORT for GET /metrics (Prometheus); empty: off.
  std::string metrics_listen;
};

// Runs until SIGTERM or SIGINT; returns the process exit code (0 after a
// clean shutdown, 2 for a bad config or flags, 1 when it cannot listen).
int Serve(const ServeOptions& options);

}  // namespace modelplane

#endif  // MODELPLANE_SERVER_SERVE_H_
