// The resolved configuration of modelmanager: what a llama-swap compatible
// config.yaml means once macros are expanded, ports assigned, commands split
// and every rule checked. Immutable once loaded; shared across threads as
// `std::shared_ptr<const Config>`.
//
// Loading lives in loader.h; the reload diff in diff.h. Nothing here depends
// on gRPC.
#ifndef MODELPLANE_SERVER_CORE_CONFIG_CONFIG_H_
#define MODELPLANE_SERVER_CORE_CONFIG_CONFIG_H_

#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "server/core/config/value.h"

namespace modelplane::config {

// Where something is in the config file (1-based; 0 when unknown).
struct SourcePos {
  int line = 0;
  int column = 0;
  // Which file of the load (--config-dir merges several): 0 is the first.
  int file = 0;
};

// An error or a warning about the file: `file:line:col: key.path: message`.
struct Diagnostic {
  std::string file;
  SourcePos pos;
  std::string key_path;  // e.g. "models.qwen.proxy"; empty for the whole file.
  std::string message;

  std::string ToString() const;
  friend std::ostream& operator<<(std::ostream& os, const Diagnostic& d) {
    return os << d.ToString();
  }
};

struct Filters {
  // JSON keys removed from request bodies; never contains "model".
  std::vector<std::string> strip_params;
  // JSON members set (or overridden) in request bodies: an object, or null.
  Value set_params;
  // llama-swap's setParamsByID: requested name -> members set after
  // set_params when a request names the model that way. Every name other
  // than the id is also one of the model's aliases.
  std::map<std::string, Value> set_params_by_id;
};

// How an https:// upstream's certificate is trusted (a model's or a peer's
// `tls`, an extension): the system's roots by default; `ca_file`'s
// certificates (read at load into `ca_pem`, so that they travel with the
// config) instead; or, explicitly, not checked.
struct UpstreamTls {
  std::string ca_file;
  std::string ca_pem;
  bool insecure_skip_verify = false;
};

struct ModelConfig {
  std::string id;
  // The command, split like a POSIX shell (no shell runs it), macros and
  // ${PORT} expanded. Never empty.
  std::vector<std::string> argv;
  // `cmdStop` split the same way; may hold the literal "${PID}", replaced by
  // the process id at stop time. Empty: stop with SIGTERM to the group.
  std::vector<std::string> cmd_stop;
  std::string proxy;           // Upstream base URL, e.g. http://localhost:5800.
  std::string check_endpoint;  // Path probed for HTTP 200; empty: no check.
  absl::Duration health_check_timeout;  // Per model, else global.
  absl::Duration ttl;                   // Idle unload; zero: never.
  absl::Duration unload_timeout;        // Graceful stop before SIGKILL.
  std::vector<std::string> aliases;
  std::vector<std::string> env;  // KEY=value, appended to the inherited env.
  std::string name;
  std::string description;
  bool unlisted = false;
  Value metadata;              // Any YAML, types kept; null when absent.
  std::string use_model_name;  // Rewrites `model` in bodies sent upstream.
  int concurrency_limit = 10;
  Filters filters;
  // The data plane's waits on the upstream (`timeouts`, seconds; 0: none).
  struct UpstreamTimeouts {
    absl::Duration connect = absl::Seconds(30);
    absl::Duration response_header = absl::ZeroDuration();
    absl::Duration idle_connection = absl::Seconds(90);
    // https:// upstreams: the TLS handshake's time (0: no limit).
    absl::Duration tls_handshake = absl::Seconds(10);
    // TCP keepalive probes after this idle time (0: none).
    absl::Duration keepalive = absl::Seconds(30);
    // Carried as llama-swap's; modelproxy sends no `Expect` upstream, so
    // there is no wait for it to bound.
    absl::Duration expect_continue = absl::Seconds(1);
  } timeouts;
  // Extensions (docs/config.md).
  std::string ready_pattern;      // RE2 on output; empty: none.
  absl::Duration max_queue_wait;  // Bound on queueing behind other models.
  int priority = 0;               // Higher is served first.
  UpstreamTls tls;  // https://: how the upstream's certificate is trusted.
  // compat.ignoreWebsockets: a WebSocket handshake neither starts the
  // model nor counts toward its concurrency or TTL (the data plane answers
  // 409 unless it is READY somewhere).
  bool ignore_websockets = false;
  // llama-swap's sendLoadingState (the global one unless set here): a
  // streaming chat completion that waits for the model hears it load as
  // `reasoning_content` deltas.
  bool send_loading_state = false;
  // `replicas`: on how many nodes of a cluster the data plane may run it at
  // once, and how long requests wait on every node that runs it (or find
  // it at its concurrencyLimit there) before it starts on one more
  // (docs/cluster.md). max 1: one node.
  struct Replicas {
    int max = 1;
    absl::Duration spillover_after = absl::Seconds(2);
  } replicas;
  // llama-swap's capabilities: what /v1/models reports of the model
  // (OpenRouter's architecture, capabilities, supported_parameters,
  // context_length). Empty: none reported.
  struct Capabilities {
    std::vector<std::string> in, out;  // text, audio, image
    bool tools = false;
    bool reranker = false;
    int64_t context = 0;
    bool empty() const {
      return in.empty() && out.empty() && !tools && !reranker && context == 0;
    }
    bool operator==(const Capabilities& o) const {
      return in == o.in && out == o.out && tools == o.tools &&
             reranker == o.reranker && context == o.context;
    }
    bool operator!=(const Capabilities& o) const { return !(*this == o); }
  } capabilities;

  // `resources` (an extension, docs/gpu.md): the model's GPU memory, per
  // GPU it uses, and which GPUs it may use. With NVML present the scheduler
  // admits its start only where it fits (and evicts idle models to make it
  // fit); a model in no group with `resources` is not bound by the implicit
  // group's one-at-a-time rule: memory decides what runs together.
  struct Resources {
    bool set = false;       // The key is there.
    int64_t vram_mib = 0;   // Declared per GPU; 0: measured.
    std::vector<int> gpus;  // Allowed; empty: any.
    int gpu_count = 1;      // How many it takes at once.
    bool operator==(const Resources& o) const {
      return set == o.set && vram_mib == o.vram_mib && gpus == o.gpus &&
             gpu_count == o.gpu_count;
    }
    bool operator!=(const Resources& o) const { return !(*this == o); }
  } resources;

  // `sleep` and `wake` (an extension, docs/gpu.md#sleep-and-wake): how the
  // server frees its GPU memory and takes it back with its process kept
  // (vLLM's POST /sleep?level=1 and POST /wake_up): a path POSTed to its
  // upstream, or a command (split like cmd; ${PID} is its pid). Both or
  // neither. An eviction puts such a model to sleep; a request wakes it.
  struct Action {
    std::string endpoint;           // "/sleep?level=1"; or
    std::vector<std::string> argv;  // a command.
    bool set() const { return !endpoint.empty() || !argv.empty(); }
    bool operator==(const Action& o) const {
      return endpoint == o.endpoint && argv == o.argv;
    }
    bool operator!=(const Action& o) const { return !(*this == o); }
  };
  Action sleep, wake;
  bool can_sleep() const { return sleep.set() && wake.set(); }

  int port = 0;       // The ${PORT} assigned to this model, 0 if none.
  std::string group;  // Id of its group (kDefaultGroup when in none).
  SourcePos pos;      // Where `models.<id>` is.
};

struct GroupConfig {
  std::string id;
  bool swap = true;         // Members evict each other.
  bool exclusive = true;    // Running it evicts non-persistent other groups.
  bool persistent = false;  // Not evicted by other groups.
  std::vector<std::string> members;  // Model ids, in file order.
};

// llama-swap's `peers.<id>`: another server (a llama-swap, a modelplane, any
// OpenAI-compatible endpoint) whose models the proxy forwards to as they
// are: no lease, no swap; the peer runs its own models.
struct PeerConfig {
  std::string id;     // Never empty, no '/': its models are <id>/<model>.
  std::string proxy;  // http:// or https:// base URL.
  // Sent as `Authorization: Bearer` and `x-api-key`; empty: neither.
  std::string api_key;
  std::vector<std::string> models;  // Names at the peer; file order, once.
  Filters filters;                  // As a model's.
  ModelConfig::UpstreamTimeouts timeouts;
  UpstreamTls tls;  // https://: how its certificate is trusted.
  SourcePos pos;    // Where `peers.<id>` is.
};

// llama-swap's `selectors.<id>`: a virtual model whose requests go to one of
// its target models, picked per request by `strategy`.
struct SelectorConfig {
  std::string id;  // Never an id or alias of a model.
  // "pin": the first target; "warm": the first READY target, else the first
  // starting one, else the first; "spillover": the first target with fewer
  // than `spillover` requests in flight, else the least busy.
  std::string strategy = "pin";
  std::vector<std::string> targets;  // Model ids (aliases resolved); never
                                     // empty.
  int spillover = 1;
  std::string name;
  std::string description;
  bool unlisted = false;
  Value metadata;
  SourcePos pos;  // Where `selectors.<id>` is.
};

// llama-swap's `profiles.<name>`: a set of name rewrites a data plane applies
// while the profile is active (chosen at run time, per modelproxy).
struct ProfileConfig {
  std::string name;
  std::string description;
  // Requested name -> the name it becomes (a model's id or alias, a
  // selector, a peer's model); "" makes the requested name unknown (404).
  // File order.
  std::vector<std::pair<std::string, std::string>> pins;
  SourcePos pos;  // Where `profiles.<name>` is.
};

// llama-swap's swap matrix (top-level `matrix`, or `routing.router.use:
// matrix` with `routing.router.settings.matrix`): which models may run
// together, instead of groups. Starting model X picks, among the allowed
// sets that contain X, the one whose running non-members cost least to
// evict (ties: the first defined), and evicts those. A model in no set runs
// alone.
struct MatrixConfig {
  // Every allowed set (model ids, sorted), in definition order (each `sets`
  // entry's expansion in turn), each once.
  std::vector<std::vector<std::string>> allowed;
  // By model id; models not named cost 1.
  std::map<std::string, int> evict_costs;
  int CostOf(const std::string& id) const {
    auto it = evict_costs.find(id);
    return it == evict_costs.end() ? 1 : it->second;
  }
};

// The group of models that are in no configured group, as llama-swap names
// it: swap and exclusive, so with no groups one model runs at a time.
inline constexpr char kDefaultGroup[] = "(default)";

struct Config {
  std::string file;                 // The path it was loaded from.
  std::vector<ModelConfig> models;  // Sorted by id.
  std::vector<GroupConfig> groups;  // File order, then kDefaultGroup if used.
  absl::Duration health_check_timeout;  // Global default.
  absl::Duration global_ttl;
  absl::Duration unload_timeout;  // Global default.
  int start_port = 5800;
  std::string log_level = "info";  // debug, info, warn or error.
  // llama-swap's logToStdout: proxy, upstream, both or none (what the models
  // print goes to the manager's log for upstream and both).
  std::string log_to_stdout = "proxy";
  std::vector<std::string> api_keys;
  std::vector<std::string> preload;  // Canonical model ids, in file order.
  // /v1/models lists every alias of a listed model as an entry of its own.
  bool include_aliases_in_list = false;
  // llama-swap's metricsMaxInMemory: the activity entries a data plane
  // keeps in memory (GET /api/metrics/activity).
  int metrics_max_in_memory = 1000;
  // llama-swap's store.path: the data planes keep their activity log in
  // this SQLite file (empty: in memory only); store.maxRows (modelplane's)
  // bounds it, the oldest pruned.
  std::string store_path;
  int64_t store_max_rows = 1000000;
  // The default of ModelConfig::send_loading_state.
  bool send_loading_state = false;
  // upstream.ignorePaths: RE2 patterns (unanchored, as Go's MatchString) of
  // the path after /upstream/<model>; such a request never starts its
  // model (409 when it is not ready). llama-swap's default: static files a
  // model's web UI loads, so an open browser tab swaps nothing in.
  std::vector<PeerConfig> peers;          // Sorted by id.
  std::vector<SelectorConfig> selectors;  // Sorted by id.
  std::vector<ProfileConfig> profiles;    // Sorted by name.
  // hooks.on_startup.profile: turned on by each data plane at its start
  // and when a reload changes it or the profiles ("": none).
  std::string startup_profile;
  // Set: the matrix decides swaps, and groups are not used.
  std::optional<MatrixConfig> matrix;
  // `gpu` (an extension, docs/gpu.md): the share of each GPU's memory no
  // start may take, and how long a start waits for the driver to give back
  // a stopped model's memory before the GPU is marked untrusted.
  double gpu_reserve_percent = 5;
  absl::Duration gpu_memory_wait = absl::Seconds(5);
  std::vector<std::string> upstream_ignore_paths = {
      R"(.*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$)"};

  // The model whose id or alias is `name`, or nullptr.
  const ModelConfig* FindModel(const std::string& name) const;
  const GroupConfig* FindGroup(const std::string& id) const;
};

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_CONFIG_H_
