// modelmanager's serving mode: the Manager behind a gRPC server with the
// ModelManager service, the standard health service (per model:
// `model/<id>`) and server reflection, plus signal handling (SIGTERM/SIGINT
// shut down, SIGHUP reloads) and the optional config file watcher.
#ifndef MODELPLANE_SERVER_SERVE_H_
#define MODELPLANE_SERVER_SERVE_H_

#include <signal.h>

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "common/flags.h"

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
  int shutdown_seconds = 30;  // To stop every model on SIGTERM.
  // Watch, StreamLogs and Acquire streams open at once: from one peer
  // address, and
  // in all (RESOURCE_EXHAUSTED past either; rpc/stream_limits.h).
  int max_streams_per_peer = 256;
  int max_streams = 4096;
  // --metrics-listen: HOST:PORT for GET /metrics (Prometheus); empty: off.
  std::string metrics_listen;
  // GPU memory scheduling (docs/gpu.md): where measured footprints are
  // kept ("": modelplane-footprints.json beside the config; "none": in
  // memory only).
  std::string gpu_state_file;
};

// One modelmanager in a process: the Manager, its gRPC server, metrics
// server and config watcher, with their start and shutdown order. `Serve`
// runs one until a signal; the `modelplane` binary (cmd/) runs one beside a
// modelproxy.
//
//   ManagerServer server(options);
//   if (int rc = server.Start(); rc != 0) return rc;  // Logged why.
//   ... server.Reload() on SIGHUP ...
//   server.Shutdown();  // Or the destructor.
class ManagerServer {
 public:
  explicit ManagerServer(ServeOptions options);
  ~ManagerServer();
  ManagerServer(const ManagerServer&) = delete;
  ManagerServer& operator=(const ManagerServer&) = delete;

  // Loads the config and serves: 0, or the process exit code with the
  // reason logged (2 for a bad config, token or TLS files, 1 when a port
  // cannot be listened on).
  int Start();
  // "host:port" (the port picked, for port 0) or "unix:PATH"; empty before
  // Start() succeeds.
  const std::string& address() const;
  // Reloads the config (as SIGHUP does), in the background.
  void Reload();
  // Stops every model within the shutdown budget, then the server (its
  // open streams cancelled). Once; nothing before a successful Start().
  void Shutdown();
  // One line through the manager's log (its level and format).
  void Log(const std::string& level, const std::string& line);

 private:
  struct Parts;
  ServeOptions options_;
  std::unique_ptr<Parts> parts_;
};

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (call it before
// any thread starts: they inherit the mask) and ignores SIGPIPE; `signals`
// is the set for sigwait.
void BlockServeSignals(sigset_t* signals);

// A serving modelmanager's flags, registered on `parser` (common/flags.h)
// and written into `options`. `one_host` (the `modelplane` binary) leaves
// out the gRPC endpoint's (--listen, --auth-token-file, --tls-*,
// --max-streams*: its manager is on a private socket) and names
// --metrics-listen --manager-metrics-listen (its proxy serves /metrics).
void RegisterServeFlags(FlagParser* parser, ServeOptions* options,
                        bool one_host);
// Empty, or what is wrong with the values (for the usage message).
std::string CheckServeOptions(const ServeOptions& options);

// Runs a ManagerServer until SIGTERM or SIGINT (SIGHUP reloads); returns
// the process exit code (0 after a clean shutdown, 2 for a bad config or
// flags, 1 when it cannot listen).
int Serve(const ServeOptions& options);

}  // namespace modelplane

#endif  // MODELPLANE_SERVER_SERVE_H_
