#include "proxy/proxy.h"

#include <malloc.h>
#include <uv.h>

#include <atomic>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/json_string.h"
#include "common/uv/handle.h"
#include "proxy/answers/models.h"
#include "proxy/router/snapshot.h"
#include "proxy/worker/metrics.h"

namespace modelplane::proxy {

class Proxy::Timers {
 public:
  ~Timers() {
    // Linger timers still pending: closed with their tasks, not leaked.
    loop_.RunSync([this] {
      for (auto& [task, owned] : tasks_) owned.reset();
      tasks_.clear();
    });
  }

  // Runs `fn` on the timers' loop and waits for it.
  void Sync(std::function<void()> fn) { loop_.RunSync(std::move(fn)); }

  lease::LeaseBroker::After After() {
    return [this](absl::Duration delay, std::function<void()> fn) {
      loop_.Post([this, delay, fn = std::move(fn)]() mutable {
        auto task = std::make_unique<Task>();
        Task* t = task.get();
        t->fn = std::move(fn);
        t->owner = this;
        t->timer.Init(loop_.loop(), uv_timer_init, t);
        tasks_.emplace(t, std::move(task));
        uv_timer_start(
            t->timer.get(),
            [](uv_timer_t* h) {
              auto* task = static_cast<Task*>(h->data);
              std::function<void()> fn = std::move(task->fn);
              // Closes its timer (freed in the close callback).
              task->owner->tasks_.erase(task);
              fn();
            },
            static_cast<uint64_t>(absl::ToInt64Milliseconds(delay)), 0);
      });
    };
  }

 private:
  struct Task {
    uv::Handle<uv_timer_t> timer;
    std::function<void()> fn;
    Timers* owner = nullptr;
  };
  // Pending tasks, on the loop thread.
  std::map<Task*, std::unique_ptr<Task>> tasks_;
  LoopThread loop_;
};

Proxy::Proxy(ProxyConfig config)
    : config_(std::move(config)),
      events_(std::make_unique<answers::EventHub>()) {
  if (!config_.log) config_.log = [](const std::string&, const char*) {};
  // Every line the proxy and its links log also goes to the UI's log.
  auto log = config_.log;
  answers::EventHub* events = events_.get();
  config_.log = [log, events](const std::string& line, const char* level) {
    log(line, level);
    events->AddLog("proxy", absl::StrCat(absl::FormatTime(
                                             "%Y-%m-%dT%H:%M:%E3SZ",
                                             absl::Now(), absl::UTCTimeZone()),
                                         " ", level, " ", line, "\n"));
  };
  auto link_log = config_.link.log;
  config_.link.log = [link_log, events](const std::string& line) {
    if (link_log) link_log(line);
    events->AddLog("proxy", absl::StrCat(absl::FormatTime(
                                             "%Y-%m-%dT%H:%M:%E3SZ",
                                             absl::Now(), absl::UTCTimeZone()),
                                         " info ", line, "\n"));
  };
  const std::string& host = config_.host;
  loopback_ =
      host == "localhost" || absl::StartsWith(host, "127.") || host == "::1";
  config_.options.loopback_listener = loopback_;
}

Proxy::~Proxy() { Stop(); }

absl::Status Proxy::ReloadTls() {
  if (config_.tls_cert_file.empty() || context_ == nullptr) {
    return absl::OkStatus();
  }
  absl::StatusOr<std::shared_ptr<const tls::ServerTlsContext>> loaded =
      tls::ServerTlsContext::Load(config_.tls_cert_file, config_.tls_key_file);
  if (!loaded.ok()) return loaded.status();  // The old one stays.
  config_.log("TLS certificate reloaded: " + (*loaded)->description(), "info");
  context_->set_tls(*std::move(loaded));
  return absl::OkStatus();
}

void Proxy::Log(const std::string& line, const char* level) {
  config_.log(line, level);
}

absl::Status Proxy::Check(const ProxyConfig& config) {
  if (!config.tls_cert_file.empty()) {
    absl::Status tls =
        tls::ServerTlsContext::Load(config.tls_cert_file, config.tls_key_file)
            .status();
    if (!tls.ok()) return tls;
  }
  if (config.port == 0) return absl::OkStatus();
  return Worker::CheckPortFree(config.host, config.port);
}

absl::Status Proxy::Start() {
  started_ = true;
  // The certificate first: a bad one stops the start before anything runs.
  std::shared_ptr<const tls::ServerTlsContext> tls;
  if (!config_.tls_cert_file.empty()) {
    absl::StatusOr<std::shared_ptr<const tls::ServerTlsContext>> loaded =
        tls::ServerTlsContext::Load(config_.tls_cert_file,
                                    config_.tls_key_file);
    if (!loaded.ok()) return loaded.status();
    tls = *std::move(loaded);
  }
  // Before anything starts (threads, the manager link): a taken port is an
  // error, even one another modelproxy holds with SO_REUSEPORT.
  if (config_.port != 0) {
    absl::Status free = Worker::CheckPortFree(config_.host, config_.port);
    if (!free.ok()) return free;
  }
  // With glibc's malloc (the sanitizer builds; modelproxy links jemalloc,
  // whose large allocations are extents of their own, given back on
  // decay): large request bodies are mmapped whatever came before (glibc
  // would raise its threshold after freeing one and keep the next in its
  // heap for good), and returned to the system once freed, off the
  // workers' loops.
  mallopt(M_MMAP_THRESHOLD, 256 << 10);
  timers_ = std::make_unique<Timers>();
  trimmer_ = std::make_unique<MemoryTrimmer>();
  context_ = std::make_unique<ProxyContext>(config_.options, trimmer_.get());
  context_->set_tls(std::move(tls));
  context_->set_events(events_.get());
  // The UI's model status follows every routing snapshot (sent when it
  // changed).
  answers::EventHub* events = events_.get();
  context_->routing().set_on_publish([events](const router::Snapshot& s) {
    events->SetModels(answers::ModelStatusJson(s));
  });
  cluster::ClusterOptions copts;
  copts.link = config_.link;
  copts.node_names = config_.node_names;
  copts.after = timers_->After();
  copts.on_settings = [this](const v1::DataPlaneSettings& s) { OnSettings(s); };
  cluster_ = std::make_unique<cluster::Cluster>(&context_->routing(),
                                                std::move(copts));
  context_->set_cluster(cluster_.get());
  cluster::Cluster* cluster = cluster_.get();
  if (config_.transport != nullptr) {
    local_ = cluster_->AddNode("local", config_.transport);
    context_->set_unload([](const std::string&, auto done) {
      done(absl::UnimplementedError("no manager to stop models"));
    });
  } else {
    poll_keeper_ = std::make_unique<GrpcPollKeeper>();
    std::vector<std::string> managers = config_.managers;
    if (managers.empty()) managers.push_back(config_.link.manager.target);
    membership_ = std::make_unique<cluster::Membership>(
        cluster_.get(), std::move(managers), config_.resolve_interval,
        config_.log);
    membership_->Start();
    context_->set_unload([cluster](const std::string& model, auto done) {
      cluster->Unload(model, std::move(done));
    });
    context_->set_load([cluster](std::shared_ptr<const router::Snapshot> snap,
                                 const std::string& model,
                                 const std::string& node, auto done) {
      cluster->Load(std::move(snap), model, node, std::move(done));
    });
    router::RoutingState* routing = &context_->routing();
    context_->set_logs([cluster, routing](const answers::LogRequest& request,
                                          answers::LogChunkFn on_chunk,
                                          auto on_end) {
      return cluster->StreamLogs(*routing->Current(), request.model,
                                 request.node, request.history_bytes,
                                 std::move(on_chunk), std::move(on_end));
    });
    ReapLater();
  }
  // Every worker exists before any listens: /metrics reads the whole pool.
  for (int i = 0; i < config_.workers; ++i) {
    workers_.push_back(std::make_unique<Worker>(context_.get()));
  }
  std::vector<Worker*> siblings;
  for (auto& w : workers_) siblings.push_back(w.get());
  for (auto& w : workers_) w->SetSiblings(siblings);
  context_->set_metrics([this](std::function<void(std::string)> done) {
    RenderMetrics(std::move(done));
  });
  context_->set_activity(
      [this](std::function<void(std::vector<answers::ActivityEntry>)> done) {
        GatherActivity(std::move(done));
      });
  int port = config_.port;
  for (auto& w : workers_) {
    absl::StatusOr<int> bound = w->Listen(config_.host, port);
    if (!bound.ok()) {
      Stop();
      return bound.status();
    }
    port = *bound;  // Port 0: the first worker's pick, shared by the rest.
  }
  port_ = port;
  return absl::OkStatus();
}

void Proxy::SetLocalView(
    std::shared_ptr<const router::RouteTable> routes,
    std::shared_ptr<const v1::DataPlaneSettings> settings) {
  cluster_->OnView("local", lease::ManagerLink::View{std::move(routes),
                                                     std::move(settings)});
}

void Proxy::ReapLater() {
  // Nodes that left the cluster are retired once their requests ended.
  timers_->After()(absl::Milliseconds(500), [this] {
    if (reap_stopped_) return;  // Stop() set it on this same loop.
    cluster_->Reap();
    if (events_->readers() > 0) events_->SetInFlight(InFlightJson());
    if (++ticks_ % 30 == 0) events_->KeepAlive();  // Every 15 s.
    if (std::shared_ptr<store::ActivityStore> store = context_->store()) {
      std::string error = store->TakeError();
      if (!error.empty()) Log(error, "warn");
    }
    ReapLater();
  });
}

bool Proxy::WaitForSettings(absl::Duration timeout) {
  return settings_known_.WaitForNotificationWithTimeout(timeout);
}

void Proxy::OnSettings(const v1::DataPlaneSettings& settings) {
  // Listening beyond this host with no apiKeys: anyone who reaches the port
  // may use every model and stop them all (/unload). Said when the keys
  // arrive, and again whenever a reload drops them.
  bool open = !loopback_ && settings.api_key_sha256().empty();
  if (open && !open_warned_.exchange(true)) {
    config_.log(absl::StrCat("listening on ", config_.host, ":", config_.port,
                             " (beyond this host) and the config sets no "
                             "apiKeys: anyone who can reach it can use every "
                             "model and stop them all (POST /unload); set "
                             "apiKeys, or listen on 127.0.0.1 behind a TLS "
                             "front proxy"),
                "warn");
  }
  if (!open) open_warned_.store(false);
  if (!settings_came_.exchange(true)) settings_known_.Notify();
  // The activity store (store.path), opened off the links' threads.
  timers_->After()(absl::ZeroDuration(), [this, path = settings.store_path(),
                                          rows = settings.store_max_rows()] {
    ConfigureStore(path, rows > 0 ? rows : 1000000);
  });
}

void Proxy::SwapStore(std::shared_ptr<store::ActivityStore> store) {
  std::shared_ptr<store::ActivityStore> old = context_->store();
  context_->set_store(std::move(store));
  if (old == nullptr) return;
  // Each worker lets go of the old one on its loop; the last reference
  // goes back here, so that closing it (its last batches written, its
  // thread joined) never runs on a worker's loop.
  lease::LeaseBroker::After after = timers_->After();
  OnEveryWorker([](Worker* w) { w->LetGoOfStore(); },
                [after, old]() mutable {
                  // Moved: no copy is left on this worker's loop.
                  after(absl::ZeroDuration(),
                        [old = std::move(old)]() mutable { old.reset(); });
                });
}

void Proxy::ConfigureStore(const std::string& path, uint64_t max_rows) {
  // Stop() set it on this same loop: the context may be gone.
  if (reap_stopped_) return;
  std::shared_ptr<store::ActivityStore> current = context_->store();
  if (current != nullptr && current->path() == path) {
    current->set_max_rows(max_rows);
    return;
  }
  if (path.empty()) {
    if (current != nullptr) {
      SwapStore(nullptr);
      Log(absl::StrCat("activity store ", current->path(),
                       " closed: the activity log is in memory"));
    }
    return;
  }
  if (path == failed_store_) return;  // Said once.
  absl::StatusOr<std::unique_ptr<store::ActivityStore>> opened =
      store::ActivityStore::Open(path, max_rows);
  if (!opened.ok()) {
    failed_store_ = path;
    SwapStore(nullptr);
    Log(absl::StrCat(opened.status().message(),
                     "; the activity log stays in memory"),
        "warn");
    return;
  }
  failed_store_.clear();
  std::shared_ptr<store::ActivityStore> store = *std::move(opened);
  // New ids go on after the stored ones, before any entry is written.
  context_->RaiseActivityIds(store->max_id());
  SwapStore(store);
  Log(absl::StrCat("activity store ", path, " (SQLite, WAL; newest ", max_rows,
                   " kept; ids after ", store->max_id(), ")"));
}

void Proxy::OnEveryWorker(std::function<void(Worker*)> each,
                          std::function<void()> last) {
  // Each worker runs `each` on its own loop (what it reads takes no lock
  // there); the last one runs `last`. Nothing waits: a worker asking never
  // blocks on the others.
  struct Round {
    std::atomic<size_t> left;
    std::function<void(Worker*)> each;
    std::function<void()> last;
  };
  auto round = std::make_shared<Round>();
  round->left.store(workers_.size());
  round->each = std::move(each);
  round->last = std::move(last);
  for (auto& w : workers_) {
    Worker* worker = w.get();
    worker->loop().Post([worker, round] {
      round->each(worker);
      if (round->left.fetch_sub(1) == 1) round->last();
    });
  }
}

void Proxy::RenderMetrics(std::function<void(std::string)> done) {
  struct Gather {
    absl::Mutex mu;
    Metrics total ABSL_GUARDED_BY(mu);
  };
  auto g = std::make_shared<Gather>();
  OnEveryWorker(
      [g](Worker* worker) {
        Metrics mine = worker->metrics().Snapshot();
        absl::MutexLock lock(&g->mu);
        g->total.Merge(mine);
      },
      [this, g, done = std::move(done)] {
        std::map<ModelNode, int> in_flight, queued;
        for (const auto& node : cluster_->nodes()->nodes()) {
          std::map<std::string, int> f, q;
          node->broker().Loads(&f, &q);
          for (const auto& [model, n] : f) {
            in_flight[{model, node->name()}] += n;
          }
          for (const auto& [model, n] : q) queued[{model, node->name()}] += n;
        }
        absl::MutexLock lock(&g->mu);
        g->total.buffered_body_bytes = context_->bodies().used();
        done(g->total.Render(in_flight, queued));
      });
}

void Proxy::GatherActivity(
    std::function<void(std::vector<answers::ActivityEntry>)> done) {
  struct Gather {
    absl::Mutex mu;
    std::vector<answers::ActivityEntry> all ABSL_GUARDED_BY(mu);
  };
  auto g = std::make_shared<Gather>();
  OnEveryWorker(
      [g](Worker* worker) {
        std::vector<answers::ActivityEntry> mine = worker->activity().Copy();
        absl::MutexLock lock(&g->mu);
        for (auto& e : mine) g->all.push_back(std::move(e));
      },
      [g, done = std::move(done)] {
        std::vector<answers::ActivityEntry> all;
        {
          absl::MutexLock lock(&g->mu);
          all = std::move(g->all);
        }
        done(std::move(all));
      });
}

std::string Proxy::InFlightJson() const {
  // {"total":N,"models":[{"model","node","in_flight","queued"}]}: what
  // this proxy's requests hold and wait for, per model and node.
  std::string models;
  int total = 0;
  for (const auto& node : cluster_->nodes()->nodes()) {
    std::map<std::string, int> f, q;
    node->broker().Loads(&f, &q);
    std::map<std::string, std::pair<int, int>> both;
    for (const auto& [model, n] : f) both[model].first = n;
    for (const auto& [model, n] : q) both[model].second = n;
    for (const auto& [model, fq] : both) {
      if (fq.first == 0 && fq.second == 0) continue;
      total += fq.first;
      absl::StrAppend(&models, models.empty() ? "" : ",", R"({"model":)",
                      JsonString(model), R"(,"node":)",
                      JsonString(node->name()), R"(,"in_flight":)", fq.first,
                      R"(,"queued":)", fq.second, "}");
    }
  }
  return absl::StrCat(R"({"total":)", total, R"(,"models":[)", models, "]}");
}

size_t Proxy::Drain(absl::Duration budget) {
  // The open event and log streams end now: a browser tab does not hold
  // the drain to its deadline.
  if (context_ != nullptr) context_->EndStreams();
  size_t left = 0;
  for (auto& w : workers_) left += w->Drain();
  absl::Time deadline = absl::Now() + budget;
  while (left > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    left = 0;
    for (auto& w : workers_) left += w->connections();
  }
  return left;
}

void Proxy::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  for (auto& w : workers_) w->Stop();
  // The links before the workers' loops go: ending their streams answers
  // the requests still waiting on the brokers through those loops (the
  // exchanges are gone; the posted answers find that and do nothing).
  if (membership_ != nullptr) membership_->Stop();
  // No reap runs once this returns (the flag is set on the timers' loop,
  // where the reaps run): the cluster may go.
  if (timers_ != nullptr) timers_->Sync([this] { reap_stopped_ = true; });
  if (cluster_ != nullptr) cluster_->Shutdown();
  workers_.clear();
}

}  // namespace modelplane::proxy
