// modelproxy: the data plane of modelplane (docs/proxy.md).
//
//   modelproxy --listen 127.0.0.1:8080 --manager 127.0.0.1:50051 --workers 2
//
// Inference clients talk to it (OpenAI-style HTTP/1.1 and HTTP/2
// cleartext); it finds each
// request's model, holds the model under a lease from modelmanager and
// streams the upstream's response back.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/credentials.h"
#include "common/flags.h"
#include "common/grpc_poll_keeper.h"
#include "common/lock_checks.h"
#include "common/loop_thread.h"
#include "common/memory_trimmer.h"
#include "proxy/lease/lease_broker.h"
#include "proxy/lease/manager_link.h"
#include "proxy/worker/metrics.h"
#include "proxy/worker/proxy_context.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {
namespace {

void Log(const std::string& line, const char* level = "info") {
  std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone());
  fprintf(stderr, "%s %s %s\n", ts.c_str(), level, line.c_str());
  fflush(stderr);
}

struct TimerTask {
  uv_timer_t timer;
  std::function<void()> fn;
};

// The lease broker's timers (the linger), on a loop of their own.
lease::LeaseBroker::After MakeAfter(LoopThread* loop) {
  return [loop](absl::Duration delay, std::function<void()> fn) {
    loop->Post([loop, delay, fn = std::move(fn)]() mutable {
      auto* t = new TimerTask{uv_timer_t{}, std::move(fn)};
      uv_timer_init(loop->loop(), &t->timer);
      t->timer.data = t;
      uv_timer_start(
          &t->timer,
          [](uv_timer_t* h) {
            auto* task = static_cast<TimerTask*>(h->data);
            task->fn();
            uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* c) {
              delete static_cast<TimerTask*>(c->data);
            });
          },
          static_cast<uint64_t>(absl::ToInt64Milliseconds(delay)), 0);
    });
  };
}

int Main(int argc, char** argv) {
  // First of all, before anything can start a thread (gRPC starts its own
  // as soon as credentials are made): every thread inherits the mask, so
  // these signals reach only the sigwait below. A thread that did not block
  // them could take a SIGTERM (and kill the process without a drain) or
  // swallow a SIGHUP.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  SkipLockOrderChecksWhenOptimized();

  FlagParser flags("modelproxy [--listen HOST:PORT] [--manager ADDR] [flags]");
  std::string listen = "127.0.0.1:8080";
  std::string manager = "127.0.0.1:50051";
  std::string token_file;
  int workers = static_cast<int>(std::thread::hardware_concurrency());
  int max_body_mib = 64;
  int max_buffered_body_mib = 1024;
  int drain_seconds = 30;
  int header_timeout_ms = 30000;
  int idle_timeout_ms = 60000;
  int body_timeout_ms = 60000;
  int send_timeout_ms = 60000;
  flags.String("listen", &listen,
               "host:port to serve (default 127.0.0.1:8080)");
  flags.String("manager", &manager,
               "modelmanager address (default 127.0.0.1:50051)");
  client::TlsFiles tls;
  flags.String("manager-tls-ca", &tls.ca,
               "TLS to the manager: PEM roots that sign its certificate");
  flags.String("manager-tls-cert", &tls.cert,
               "TLS to the manager: client certificate (mTLS)");
  flags.String("manager-tls-key", &tls.key,
               "TLS to the manager: the client certificate's key");
  flags.String("manager-token-file", &token_file,
               "bearer token for the manager, if it requires one");
  flags.Int("workers", &workers, "worker threads (default: one per core)", 1);
  flags.Int("max-buffered-body-mib", &max_buffered_body_mib,
            "request bodies held in memory at once, all connections "
            "together; past it 503 (default 1024)",
            1);
  flags.Int("max-body-mib", &max_body_mib, "largest request body (default 64)",
            1);
  flags.Int("drain-seconds", &drain_seconds,
            "on SIGTERM, time for responses in flight to finish (default 30)",
            0);
  flags.Int("header-timeout-ms", &header_timeout_ms,
            "time a client has to send a request head (default 30000; 408)", 1);
  flags.Int("idle-timeout-ms", &idle_timeout_ms,
            "idle keep-alive connections close after this (default 60000)", 1);
  flags.Int("body-timeout-ms", &body_timeout_ms,
            "most time between two reads of a request body (default 60000; "
            "408)",
            1);
  flags.Int("send-timeout-ms", &send_timeout_ms,
            "a client taking none of a pending response this long is cut off "
            "(default 60000)",
            1);
  int loading_interval_ms = 1000;
  flags.Int("loading-interval-ms", &loading_interval_ms,
            "a streaming request waiting for its model gets an SSE comment "
            "this often (default 1000; 0: never)",
            0);
  bool access_log = false;
  flags.Bool("access-log", &access_log,
             "log one line per request on stderr (default off)");
  auto rest = flags.Parse(argc, argv);
  if (!rest.ok() || !rest->empty()) {
    bool help = !rest.ok() && absl::IsNotFound(rest.status());
    if (!help) {
      fprintf(stderr, "modelproxy: %s\n",
              rest.ok() ? "unexpected argument"
                        : std::string(rest.status().message()).c_str());
    }
    fputs(flags.Usage().c_str(), help ? stdout : stderr);
    return help ? 0 : 2;
  }
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    fprintf(stderr, "modelproxy: --listen must be host:port\n");
    return 2;
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]:8080
  }
  int port = std::atoi(listen.c_str() + colon + 1);
  // Before anything starts (threads, the manager link): a taken port is
  // an error, even one another modelproxy holds with SO_REUSEPORT.
  if (port != 0) {
    absl::Status free = Worker::CheckPortFree(host, port);
    if (!free.ok()) {
      fprintf(stderr, "modelproxy: %s\n", std::string(free.message()).c_str());
      return 1;
    }
  }
  lease::LinkOptions link_options;
  link_options.manager.target = manager;
  if (!token_file.empty()) {
    // A proxy without its token would know no model and answer 404s.
    absl::StatusOr<std::string> token = client::ReadTokenFile(token_file);
    if (!token.ok()) {
      fprintf(stderr, "modelproxy: --manager-token-file %s\n",
              std::string(token.status().message()).c_str());
      return 2;
    }
    link_options.manager.token = *std::move(token);
  }

  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      client::MakeCredentials(tls);
  if (!credentials.ok()) {
    fprintf(stderr, "modelproxy: %s\n",
            std::string(credentials.status().message()).c_str());
    return 2;
  }
  link_options.manager.credentials = *credentials;

  auto timers = std::make_unique<LoopThread>();
  // The manager link is gRPC's callback API: without this, its first
  // message after an idle second could wait up to 100 ms (grpc_poll_keeper.h).
  GrpcPollKeeper poll_keeper;
  link_options.log = [](const std::string& line) { Log(line); };
  lease::ManagerLink link(link_options);
  lease::LeaseBroker broker(&link, MakeAfter(timers.get()));
  // Listening on loopback only (localhost, 127.x, ::1).
  bool loopback =
      host == "localhost" || absl::StartsWith(host, "127.") || host == "::1";
  ProxyOptions options;
  options.limits.max_body_bytes = static_cast<uint64_t>(max_body_mib) << 20;
  options.header_timeout = absl::Milliseconds(header_timeout_ms);
  options.idle_timeout = absl::Milliseconds(idle_timeout_ms);
  options.access_log = access_log;
  options.loading_interval = absl::Milliseconds(loading_interval_ms);
  options.body_timeout = absl::Milliseconds(body_timeout_ms);
  options.send_timeout = absl::Milliseconds(send_timeout_ms);
  options.max_buffered_body_bytes = static_cast<uint64_t>(max_buffered_body_mib)
                                    << 20;
  options.loopback_listener = loopback;
  // Large request bodies are mmapped whatever came before (glibc would
  // raise its threshold after freeing one and keep the next in its heap for
  // good), and returned to the system once freed, off the workers' loops.
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  MemoryTrimmer trimmer;
  ProxyContext context(&broker, options, &trimmer);
  context.set_unload([&link](const std::string& model, auto done) {
    link.Unload(model, std::move(done));
  });
  // Listening beyond this host with no apiKeys: anyone who reaches the port
  // may use every model and stop them all (/unload). Said when the keys
  // arrive, and again whenever a reload drops them.
  auto open_warned = std::make_shared<std::atomic<bool>>(false);
  link.Start(
      &broker, [&context](auto routes) { context.routing().SetModels(routes); },
      [&context, loopback, open_warned,
       listen](const v1::DataPlaneSettings& settings) {
        bool open = !loopback && settings.api_key_sha256().empty();
        if (open && !open_warned->exchange(true)) {
          Log(absl::StrCat(
                  "listening on ", listen,
                  " (beyond this host) and the config sets no apiKeys: "
                  "anyone who can reach it can use every model and stop "
                  "them all (POST /unload); set apiKeys, or listen on "
                  "127.0.0.1 behind a TLS front proxy"),
              "warn");
        }
        if (!open) open_warned->store(false);
        context.routing().SetSettings(router::Settings::From(settings));
      });

  // Every worker exists before any listens: /metrics reads the whole pool.
  std::vector<std::unique_ptr<Worker>> pool;
  for (int i = 0; i < workers; ++i) {
    pool.push_back(std::make_unique<Worker>(&context));
  }
  std::vector<Worker*> siblings;
  for (auto& w : pool) siblings.push_back(w.get());
  for (auto& w : pool) w->SetSiblings(siblings);
  context.set_metrics(
      [&pool, &broker, &context](std::function<void(std::string)> done) {
        // Each worker copies its counters on its own loop (they take no
        // lock); the last one renders. Nothing waits: a worker asking
        // never blocks on the others.
        struct Gather {
          absl::Mutex mu;
          Metrics total ABSL_GUARDED_BY(mu);
          size_t left ABSL_GUARDED_BY(mu);
          std::function<void(std::string)> done;
        };
        auto g = std::make_shared<Gather>();
        g->left = pool.size();
        g->done = std::move(done);
        for (auto& w : pool) {
          Worker* worker = w.get();
          worker->loop().Post([worker, g, &broker, &context] {
            Metrics mine = worker->metrics().Snapshot();
            {
              absl::MutexLock lock(&g->mu);
              g->total.Merge(mine);
              if (--g->left > 0) return;
            }
            std::map<std::string, int> in_flight, queued;
            broker.Loads(&in_flight, &queued);
            absl::MutexLock lock(&g->mu);
            g->total.buffered_body_bytes = context.bodies().used();
            g->done(g->total.Render(in_flight, queued));
          });
        }
      });
  // In dependency order: nothing may call into what is already gone (the
  // link's callbacks use the broker and the context).
  auto stop_everything = [&] {
    for (auto& w : pool) w->Stop();
    // The link before the workers' loops go: ending its streams answers
    // the requests still waiting on the broker through those loops (the
    // exchanges are gone; the posted answers find that and do nothing).
    link.Shutdown();
    pool.clear();
    // Linger timers still pending: closed with their tasks, not leaked.
    timers->RunSync([&timers] {
      uv_walk(
          timers->loop(),
          [](uv_handle_t* h, void*) {
            if (h->type == UV_TIMER && !uv_is_closing(h)) {
              uv_close(h, [](uv_handle_t* c) {
                delete static_cast<TimerTask*>(c->data);
              });
            }
          },
          nullptr);
    });
    timers.reset();
  };
  for (auto& w : pool) {
    absl::StatusOr<int> bound = w->Listen(host, port);
    if (!bound.ok()) {
      fprintf(stderr, "modelproxy: %s\n",
              std::string(bound.status().message()).c_str());
      stop_everything();
      return 1;
    }
    port = *bound;  // Port 0: the first worker's pick, shared by the rest.
  }
  Log(absl::StrCat("modelproxy listening on ", host, ":", port, " with ",
                   workers, " worker(s), manager ", manager));
  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    // Routes, keys and limits come from the manager, which reloads on its
    // own SIGHUP: nothing to do here, and no reason to die.
    Log("SIGHUP: nothing to reload (the manager's reload reaches the proxy)");
  }
  Log(absl::StrCat(strsignal(sig), ": draining"));
  // Stop accepting; let the responses in flight finish, within the budget.
  size_t left = 0;
  for (auto& w : pool) left += w->Drain();
  absl::Time deadline = absl::Now() + absl::Seconds(drain_seconds);
  while (left > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    left = 0;
    for (auto& w : pool) left += w->connections();
  }
  if (left > 0)
    Log(absl::StrCat(left, " connection(s) cut at the drain deadline"));
  stop_everything();
  Log("stopped");
  return 0;
}

}  // namespace
}  // namespace modelplane::proxy

int main(int argc, char** argv) { return modelplane::proxy::Main(argc, argv); }
