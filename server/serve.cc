#include "server/serve.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/resource_quota.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/grpc_poll_keeper.h"
#include "common/json_string.h"
#include "common/memory_trimmer.h"
#include "server/core/config/loader.h"
#include "server/manager.h"
#include "server/metrics/metrics_server.h"
#include "server/rpc/health_service.h"
#include "server/rpc/model_manager_service.h"
#include "server/runtime/cgroup_jail.h"
#include "server/runtime/orphan_sweep.h"

namespace modelplane {
namespace {

// Threads for gRPC's synchronous services (server reflection: one per open
// stream).
constexpr int kMaxSyncThreads = 32;

int LevelRank(const std::string& level) {
  if (level == "debug") return 0;
  if (level == "warn") return 2;
  if (level == "error") return 3;
  // What models print under logToStdout: upstream (or both), whatever the
  // log level, as llama-swap prints it.
  if (level == "output") return 4;
  return 1;  // info
}

// One line per event on stderr, as text or JSON.
class Logger {
 public:
  Logger(std::string level, bool json) : min_(LevelRank(level)), json_(json) {}

  void Write(const std::string& level, const std::string& msg) {
    if (LevelRank(level) < min_) return;
    std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                      absl::UTCTimeZone());
    std::string line;
    if (json_) {
      // Valid JSON whatever a model printed (control bytes, non-UTF-8).
      line = absl::StrCat(R"({"ts":")", ts, R"(","level":")", level,
                          R"(","msg":)", JsonString(msg), "}\n");
    } else {
      line = absl::StrCat(ts, " ", level, " ", msg, "\n");
    }
    absl::MutexLock lock(&mu_);
    fputs(line.c_str(), stderr);
    fflush(stderr);
  }

 private:
  int min_;
  bool json_;
  absl::Mutex mu_;
};

std::string ReadFile(const std::string& path, bool* ok) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  *ok = static_cast<bool>(in);
  return s.str();
}

std::shared_ptr<grpc::ServerCredentials> Credentials(const ServeOptions& o,
                                                     std::string* error) {
  if (o.tls_cert.empty() && o.tls_key.empty()) {
    if (!o.tls_client_ca.empty()) {
      // Silently serving cleartext would drop the client check asked for.
      *error = "--tls-client-ca needs --tls-cert and --tls-key";
      return nullptr;
    }
    return grpc::InsecureServerCredentials();
  }
  bool ok1 = false, ok2 = false, ok3 = true;
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  pair.private_key = ReadFile(o.tls_key, &ok1);
  pair.cert_chain = ReadFile(o.tls_cert, &ok2);
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!o.tls_client_ca.empty()) {
    ssl.pem_root_certs = ReadFile(o.tls_client_ca, &ok3);
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  if (!ok1 || !ok2 || !ok3) {
    *error = "cannot read the TLS key, certificate or client CA file";
    return nullptr;
  }
  return grpc::SslServerCredentials(ssl);
}

using ConfigStamp = std::vector<std::tuple<std::string, int64_t, int64_t>>;

// The config files' mtime and size: the file, and with a config directory
// every *.yml/*.yaml in it, so a file added or removed counts too.
ConfigStamp StampConfig(const std::string& path, const std::string& dir) {
  std::vector<std::string> files;
  if (!path.empty()) files.push_back(path);
  if (!dir.empty()) {
    for (std::string& f : config::ConfigDirFiles(dir)) {
      files.push_back(std::move(f));
    }
  }
  ConfigStamp stamps;
  for (std::string& f : files) {
    struct stat st;
    if (stat(f.c_str(), &st) != 0) {
      stamps.emplace_back(std::move(f), 0, 0);
      continue;
    }
    stamps.emplace_back(std::move(f),
                        static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 +
                            st.st_mtim.tv_nsec,
                        static_cast<int64_t>(st.st_size));
  }
  return stamps;
}

// Polls the config files' stamp (like llama-swap's -watch-config: works with
// bind mounts and ConfigMap symlinks) and reloads on a change. The first
// stamp is the one taken before the config was loaded, so a change made
// while the manager starts is a change, not the baseline.
class ConfigWatcher {
 public:
  ConfigWatcher(Manager* manager, std::string path, std::string dir,
                ConfigStamp loaded, Logger* log)
      : manager_(manager),
        path_(std::move(path)),
        dir_(std::move(dir)),
        log_(log),
        last_(std::move(loaded)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~ConfigWatcher() {
    stop_.Notify();
    thread_.join();
  }

 private:
  void Run() {
    absl::Duration wait = absl::ZeroDuration();
    while (!stop_.WaitForNotificationWithTimeout(wait)) {
      wait = absl::Seconds(2);
      ConfigStamp now = StampConfig(path_, dir_);
      if (now == last_) continue;
      last_ = std::move(now);
      log_->Write("info", "config file changed; reloading");
      manager_->Reload([](absl::StatusOr<ReloadResult>) {});
    }
  }

  Manager* manager_;
  std::string path_;
  std::string dir_;
  Logger* log_;
  ConfigStamp last_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace

struct ManagerServer::Parts {
  std::unique_ptr<Logger> log;
  MemoryTrimmer trimmer;
  std::unique_ptr<rpc::StreamLimits> limits;
  std::unique_ptr<rpc::HealthService> health;
  std::unique_ptr<Manager> manager;
  std::unique_ptr<rpc::ModelManagerService> service;
  std::unique_ptr<metrics::MetricsServer> metrics_server;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<GrpcPollKeeper> poll_keeper;
  std::unique_ptr<ConfigWatcher> watcher;
  std::string address;
  bool serving = false;
  bool shut_down = false;
};

ManagerServer::ManagerServer(ServeOptions options)
    : options_(std::move(options)), parts_(std::make_unique<Parts>()) {}

ManagerServer::~ManagerServer() { Shutdown(); }

const std::string& ManagerServer::address() const { return parts_->address; }

void ManagerServer::Log(const std::string& level, const std::string& line) {
  if (parts_->log == nullptr) {
    Logger(options_.log_level, options_.log_format == "json")
        .Write(level, line);
    return;
  }
  parts_->log->Write(level, line);
}

int ManagerServer::Start() {
  const ServeOptions& o = options_;
  Parts& p = *parts_;
  // Taken before the load: what --watch-config compares against.
  ConfigStamp loaded_stamp = StampConfig(o.config_path, o.config_dir);
  config::LoadResult loaded = config::LoadConfigSources(
      o.config_path, o.config_dir, config::ProcessEnv());
  std::string level = o.log_level.empty() && loaded.ok()
                          ? loaded.config->log_level
                          : o.log_level;
  p.log = std::make_unique<Logger>(level, o.log_format == "json");
  Logger& log = *p.log;
  for (const config::Diagnostic& w : loaded.warnings) {
    log.Write("warn", w.ToString());
  }
  if (!loaded.ok()) {
    for (const config::Diagnostic& e : loaded.errors) {
      log.Write("error", e.ToString());
    }
    return 2;
  }
  std::string token;
  if (!o.auth_token_file.empty()) {
    bool ok = false;
    token = std::string(
        absl::StripAsciiWhitespace(ReadFile(o.auth_token_file, &ok)));
    if (!ok || token.empty()) {
      log.Write("error", "cannot read a token from " + o.auth_token_file);
      return 2;
    }
  }
  std::string cred_error;
  std::shared_ptr<grpc::ServerCredentials> creds = Credentials(o, &cred_error);
  if (creds == nullptr) {
    log.Write("error", cred_error);
    return 2;
  }

  // The health service is the manager's own (under the stream limits);
  // it exists before the manager, which reports readiness into it.
  p.limits = std::make_unique<rpc::StreamLimits>(
      rpc::StreamLimits::Options{o.max_streams_per_peer, o.max_streams},
      [&log](const std::string& line) { log.Write("warn", line); }, &p.trimmer);
  p.health = std::make_unique<rpc::HealthService>(p.limits.get());
  rpc::HealthService* health = p.health.get();
  health->Set("", true);
  for (const auto& m : loaded.config->models) {
    health->Set("model/" + m.id, false);
  }
  ManagerOptions mo;
  mo.on_readiness = [health](const std::string& id, bool ready) {
    health->Set("model/" + id, ready);
  };
  mo.on_log = [&log](const std::string& lvl, const std::string& line) {
    log.Write(lvl, line);
  };
  // llama-swap's logToStdout: "upstream" and "both" print what the models
  // print (level "output", shown at any log level); "proxy" (the default)
  // and "none" only at debug.
  // Read at start, like llama-swap (a reload does not change it).
  const std::string& to_stdout = loaded.config->log_to_stdout;
  bool models_too = to_stdout == "upstream" || to_stdout == "both";
  mo.forward_model_output = level == "debug" || models_too;
  mo.config_dir = o.config_dir;
  mo.gpu_state_file = o.gpu_state_file;
  if (mo.gpu_state_file.empty()) {
    std::string dir = !o.config_path.empty() ? o.config_path : o.config_dir;
    if (!o.config_path.empty()) {
      size_t slash = dir.rfind('/');
      dir = slash == std::string::npos ? "." : dir.substr(0, slash);
    }
    mo.gpu_state_file = dir + "/modelplane-footprints.json";
  } else if (mo.gpu_state_file == "none") {
    mo.gpu_state_file.clear();
  }
  mo.model_output_level = models_too ? "output" : "debug";
  // What a manager killed together with its supervisors left (a process
  // that ignored SIGTERM, one that called setsid() to keep a port) would
  // hold its GPU memory and ports for good: it goes before anything starts.
  int jailed = 0;
  std::vector<std::string> jails = runtime::CgroupJail::SweepOrphans(&jailed);
  if (!jails.empty()) {
    log.Write("warn", absl::StrCat("killed ", jailed,
                                   " process(es) in the cgroups of a "
                                   "modelmanager that is no longer running (",
                                   absl::StrJoin(jails, ", "), ")"));
  }
  std::vector<runtime::SweptProcess> swept = runtime::SweepOrphans();
  if (!swept.empty()) {
    log.Write("warn", absl::StrCat("killed ", swept.size(),
                                   " process(es) left by a modelmanager that "
                                   "is no longer running: ",
                                   runtime::Describe(swept)));
  }
  size_t models = loaded.config->models.size();
  p.manager = std::make_unique<Manager>(loaded.config, o.config_path, mo);
  p.service = std::make_unique<rpc::ModelManagerService>(p.manager.get(), token,
                                                         p.limits.get());
  // Before the gRPC port: a taken metrics port fails the start whole.
  if (!o.metrics_listen.empty()) {
    Manager* m = p.manager.get();
    absl::StatusOr<std::unique_ptr<metrics::MetricsServer>> started =
        metrics::MetricsServer::Start(o.metrics_listen,
                                      [m] { return m->RenderMetrics(); });
    if (!started.ok()) {
      log.Write("error", std::string(started.status().message()));
      return 1;  // Nothing started yet.
    }
    p.metrics_server = *std::move(started);
  }

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Server reflection is gRPC's synchronous service: a thread per open
  // stream. Capped (past it a stream is RESOURCE_EXHAUSTED); the API and
  // health run on the callback API, which these threads do not serve.
  grpc::ResourceQuota quota("modelmanager");
  quota.SetMaxThreads(kMaxSyncThreads);
  builder.SetResourceQuota(quota);
  // Keepalive pings find a dead Acquire peer, so its leases are released.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // gRPC binds with SO_REUSEPORT by default: a second manager on the same
  // address would then share it, and calls would alternate between the two.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  bool unix_socket = absl::StartsWith(o.listen, "unix:");
  if (unix_socket) unlink(o.listen.substr(5).c_str());
  int port = 0;
  builder.AddListeningPort(o.listen, creds, &port);
  builder.RegisterService(p.service.get());
  builder.RegisterService(health);
  p.server = builder.BuildAndStart();
  if (p.server == nullptr || (!unix_socket && port == 0)) {
    log.Write("error", "cannot listen on " + o.listen);
    return 1;
  }
  if (unix_socket) chmod(o.listen.substr(5).c_str(), 0600);
  // Acquire, WaitReady and Watch are gRPC's callback API: without this, a
  // message after an idle second could wait up to 100 ms
  // (grpc_poll_keeper.h).
  p.poll_keeper = std::make_unique<GrpcPollKeeper>();
  p.address =
      unix_socket
          ? o.listen
          : absl::StrCat(o.listen.substr(0, o.listen.rfind(':')), ":", port);
  log.Write("info", "modelmanager listening on " + p.address + " with " +
                        std::to_string(models) + " model(s)");
  log.Write("info", p.manager->isolation());
  if (p.metrics_server != nullptr) {
    std::string host = o.metrics_listen.substr(0, o.metrics_listen.rfind(':'));
    log.Write("info", absl::StrCat("metrics on http://", host, ":",
                                   p.metrics_server->port(), "/metrics"));
  }
  p.manager->Preload();
  if (o.watch_config) {
    p.watcher = std::make_unique<ConfigWatcher>(p.manager.get(), o.config_path,
                                                o.config_dir,
                                                std::move(loaded_stamp), &log);
  }
  p.serving = true;
  return 0;
}

void ManagerServer::Reload() {
  const ServeOptions& o = options_;
  if (!parts_->serving || parts_->shut_down) return;
  Log("info", "SIGHUP: reloading " +
                  (o.config_path.empty() ? o.config_dir : o.config_path));
  parts_->manager->Reload([](absl::StatusOr<ReloadResult>) {});
}

void ManagerServer::Shutdown() {
  Parts& p = *parts_;
  if (!p.serving || p.shut_down) return;
  p.shut_down = true;
  p.watcher.reset();
  p.metrics_server.reset();  // Its renders wait for the manager's loop.
  p.health->Shutdown();      // Every service NOT_SERVING, and stays so.
  p.manager->Shutdown(absl::Seconds(options_.shutdown_seconds));
  // The models are down: cancel what is still open (Watch, Acquire,
  // StreamLogs streams) rather than wait for clients to close them.
  p.server->Shutdown(absl::ToChronoTime(absl::Now()));
  p.manager.reset();
  if (absl::StartsWith(options_.listen, "unix:")) {
    unlink(options_.listen.substr(5).c_str());
  }
  p.log->Write("info", "stopped");
}

void RegisterServeFlags(FlagParser* parser, ServeOptions* o, bool one_host) {
  parser->String("config", &o->config_path,
                 "llama-swap compatible config.yaml");
  parser->String("config-dir", &o->config_dir,
                 "also every *.yml/*.yaml file in this directory, merged "
                 "(llama-swap's -config-dir)");
  if (!one_host) {
    parser->String("listen", &o->listen,
                   "host:port or unix:PATH (default 127.0.0.1:50051)");
  }
  parser->Bool("watch-config", &o->watch_config,
               "reload when the config file changes (polled every 2 s)");
  parser->String("log-level", &o->log_level,
                 "debug, info, warn or error (default: the config's logLevel)");
  parser->String("log-format", &o->log_format, "text (default) or json");
  parser->Int("shutdown-seconds", &o->shutdown_seconds,
              "budget to stop every model on SIGTERM (default 30)", 1);
  if (!one_host) {
    parser->String("auth-token-file", &o->auth_token_file,
                   "require 'authorization: Bearer <token>' on every RPC");
    parser->String("tls-cert", &o->tls_cert, "TLS certificate chain (PEM)");
    parser->String("tls-key", &o->tls_key, "TLS private key (PEM)");
    parser->String("tls-client-ca", &o->tls_client_ca,
                   "require client certificates signed by this CA (mTLS)");
    parser->Int(
        "max-streams-per-peer", &o->max_streams_per_peer,
        "streams (Watch, StreamLogs, Acquire) and waiting calls (Start, "
        "WaitReady, Stop) open at once from one address (default 256)",
        1);
    parser->Int("max-streams", &o->max_streams,
                "streams and waiting calls open at once in all (default "
                "4096)",
                1);
  }
  parser->String("gpu-state-file", &o->gpu_state_file,
                 "where measured GPU footprints are kept (default: "
                 "modelplane-footprints.json beside the config; none: in "
                 "memory only)");
  parser->String(one_host ? "manager-metrics-listen" : "metrics-listen",
                 &o->metrics_listen,
                 "serve the manager's Prometheus metrics at "
                 "http://HOST:PORT/metrics (default: off)");
}

std::string CheckServeOptions(const ServeOptions& o) {
  if (o.config_path.empty() && o.config_dir.empty()) {
    return "--config FILE or --config-dir DIR is required";
  }
  if (o.log_format != "text" && o.log_format != "json") {
    return "--log-format must be text or json";
  }
  if (!o.log_level.empty() && o.log_level != "debug" && o.log_level != "info" &&
      o.log_level != "warn" && o.log_level != "error") {
    return "--log-level must be debug, info, warn or error";
  }
  return "";
}

void BlockServeSignals(sigset_t* signals) {
  // Signals are taken by sigwait; block them before any thread starts so
  // that every thread inherits the mask.
  sigemptyset(signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(signals, s);
  pthread_sigmask(SIG_BLOCK, signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

int Serve(const ServeOptions& o) {
  sigset_t signals;
  BlockServeSignals(&signals);
  ManagerServer server(o);
  if (int rc = server.Start(); rc != 0) return rc;
  while (true) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      server.Reload();
      continue;
    }
    server.Log("info", absl::StrCat(strsignal(sig), ": shutting down"));
    break;
  }
  server.Shutdown();
  return 0;
}

}  // namespace modelplane
