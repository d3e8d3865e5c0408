// fake_upstream: an OpenAI-style HTTP server that stands in for llama-server
// in modelplane's tests, demo and benchmarks (no GPU, no weights). See
// tools/fake_upstream/README.md for the flags and endpoints.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/flags.h"
#include "tools/fake_nvml/fake_gpu_state.h"
#include "tools/fake_upstream/http_server.h"
#include "tools/fake_upstream/openai_handler.h"

namespace modelplane::fake {
namespace {

struct Flags {
  int port = 0;
  std::string host = "127.0.0.1";
  FakeModelOptions model;
  int ready_after_ms = 0;
  std::string ready_line;
  bool ignore_sigterm = false;
  bool fork_child = false;
  int crash_after_ms = -1;
  int exit_immediately = -1;
  int log_every_ms = 0;
  int vram_mib = 0;
  int gpu = -1;
  int vram_release_lag_ms = 0;
  int sleep_vram_mib = 0;
  int wake_after_ms = 0;
};

void DefineFlags(FlagParser* p, Flags* f) {
  p->Int("port", &f->port, "listen port; 0 picks a free one (default 0)", 0);
  p->String("host", &f->host, "listen address (default 127.0.0.1)");
  p->String("model", &f->model.model, "model name answered by default");
  p->Int("ready-after-ms", &f->ready_after_ms,
         "/health answers 503 until N ms after start", 0);
  p->String("ready-line", &f->ready_line,
            "printed to stdout the moment it is ready");
  p->Int("tokens", &f->model.tokens, "tokens per completion (default 16)", 0);
  p->Double("tokens-per-second", &f->model.tokens_per_second,
            "streaming rate; 0 = unlimited (default)", 0);
  p->Bool("stamp-chunks", &f->model.stamp_chunks,
          "put CLOCK_MONOTONIC ns in each streamed chunk (fake_sent_ns)");
  p->Bool("ignore-sigterm", &f->ignore_sigterm, "log SIGTERM and keep running");
  p->Bool("fork-child", &f->fork_child,
          "fork a grandchild that keeps stdout/stderr open (10 min at most)");
  p->Int("crash-after-ms", &f->crash_after_ms,
         "die by SIGSEGV N ms after start", 0);
  p->Int("exit-immediately", &f->exit_immediately,
         "print a line to stderr and exit with this code", 0);
  p->Int("log-every-ms", &f->log_every_ms, "print a progress line every N ms",
         1);
  p->Int("vram-mib", &f->vram_mib,
         "take N MiB of a fake GPU ($FAKE_NVML_DIR, tools/fake_nvml) at start; "
         "exit 1 with CUDA's out-of-memory words when it is not free",
         0);
  p->Int("gpu", &f->gpu,
         "the fake GPU for --vram-mib (default: the first of "
         "CUDA_VISIBLE_DEVICES, else 0)",
         -1);
  p->Int("vram-release-lag-ms", &f->vram_release_lag_ms,
         "the fake driver frees the memory N ms after this process is gone", 0);
  p->Int("sleep-vram-mib", &f->sleep_vram_mib,
         "what POST /sleep keeps of --vram-mib (vLLM's sleep mode; default 0)",
         0);
  p->Int("wake-after-ms", &f->wake_after_ms,
         "POST /wake_up answers after N ms (default 0)", 0);
}

int GpuOf(const Flags& f) {
  if (f.gpu >= 0) return f.gpu;
  const char* visible = getenv("CUDA_VISIBLE_DEVICES");
  return visible != nullptr && *visible != '\0' ? atoi(visible) : 0;
}

// vLLM's sleep mode: POST /sleep?level=N frees the GPU memory (down to
// --sleep-vram-mib), POST /wake_up takes it back (500 with CUDA's words
// when it is not free), GET /is_sleeping says which.
std::optional<Response> SleepMode(const Flags& f, bool* sleeping,
                                  const Request& r) {
  if (r.path == "/is_sleeping" && r.method == "GET") {
    return Response::Json(
        200,
        absl::StrCat("{\"is_sleeping\":", *sleeping ? "true" : "false", "}"));
  }
  bool sleep = r.path == "/sleep", wake = r.path == "/wake_up";
  if (!sleep && !wake) return std::nullopt;
  if (r.method != "POST") return Response::Json(405, "{}");
  if (wake && f.wake_after_ms > 0) usleep(f.wake_after_ms * 1000);
  if (f.vram_mib > 0) {
    std::string error;
    if (!fake_gpu::Allocate(fake_gpu::Dir(), getpid(), GpuOf(f),
                            sleep ? f.sleep_vram_mib : f.vram_mib,
                            f.vram_release_lag_ms, &error)) {
      fprintf(stderr, "fake_upstream: %s\n", error.c_str());
      return Response::Json(500, absl::StrCat("{\"error\":\"", error, "\"}"));
    }
  }
  *sleeping = sleep;
  printf("fake_upstream: %s\n", sleep ? "asleep" : "awake");
  return Response::Json(200, "{}");
}

// Takes --vram-mib of the fake GPU, as a CUDA server allocates its weights
// and cache before it listens. False (said on stderr) when it does not fit.
bool TakeGpuMemory(const Flags& f) {
  std::string dir = fake_gpu::Dir();
  if (dir.empty()) {
    fprintf(stderr, "fake_upstream: --vram-mib needs FAKE_NVML_DIR\n");
    return false;
  }
  int gpu = GpuOf(f);
  std::string error;
  if (!fake_gpu::Allocate(dir, getpid(), gpu, f.vram_mib, f.vram_release_lag_ms,
                          &error)) {
    fprintf(stderr, "fake_upstream: %s\n", error.c_str());
    return false;
  }
  printf("fake_upstream: took %d MiB of fake GPU %d\n", f.vram_mib, gpu);
  return true;
}

// Forks a process that inherits stdout and stderr and outlives its parent's
// stop signal, as the child of a shell wrapper does. It stays in the process
// group (so a group kill reaches it) and ends itself after 10 minutes so a
// test that forgets it cannot leak it forever.
void ForkGrandchild() {
  pid_t pid = fork();
  if (pid < 0) {
    perror("fake_upstream: fork");
    return;
  }
  if (pid == 0) {
    signal(SIGTERM, SIG_IGN);  // Only the group's SIGKILL ends it early.
    alarm(600);
    for (;;) pause();
  }
  printf("fake_upstream: forked child pid %d\n", pid);
}

void RaiseFileLimit() {
  rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

struct App {
  Flags flags;
  bool ready = false;
  ServerStats stats;
  int progress = 0;
  uv_timer_t ready_timer, crash_timer, log_timer;
  uv_signal_t sigterm, sigint;
};

void BecomeReady(App* app) {
  app->ready = true;
  app->stats.ready_at_us = absl::ToUnixMicros(absl::Now());
  if (!app->flags.ready_line.empty()) {
    printf("%s\n", app->flags.ready_line.c_str());
  }
}

void OnStopSignal(uv_signal_t* handle, int signum) {
  App* app = static_cast<App*>(handle->data);
  if (signum == SIGTERM && app->flags.ignore_sigterm) {
    printf("fake_upstream: ignoring SIGTERM\n");
    return;
  }
  printf("fake_upstream: received %s, exiting\n", strsignal(signum));
  fflush(stdout);
  exit(0);
}

int Main(int argc, char** argv) {
  App app;
  FlagParser parser("fake_upstream [flags]");
  DefineFlags(&parser, &app.flags);
  absl::StatusOr<std::vector<std::string>> rest = parser.Parse(argc, argv);
  if (!rest.ok() || !rest->empty() || app.flags.exit_immediately > 255) {
    bool help = absl::IsNotFound(rest.status());
    if (!help) {
      fprintf(stderr, "fake_upstream: %s\n",
              !rest.ok() ? std::string(rest.status().message()).c_str()
                         : "unexpected arguments or exit code over 255");
    }
    fputs(parser.Usage().c_str(), stderr);
    return help ? 0 : 2;
  }
  const Flags& f = app.flags;
  setvbuf(stdout, nullptr, _IOLBF, 0);
  setvbuf(stderr, nullptr, _IOLBF, 0);
  if (f.exit_immediately >= 0) {
    fprintf(stderr, "fake_upstream: exiting at once with code %d as asked\n",
            f.exit_immediately);
    return f.exit_immediately;
  }
  signal(SIGPIPE, SIG_IGN);
  RaiseFileLimit();
  if (f.fork_child) ForkGrandchild();
  if (f.vram_mib > 0 && !TakeGpuMemory(f)) return 1;

  uv_loop_t* loop = uv_default_loop();
  ServerStats& stats = app.stats;
  OpenAiHandler handler(f.model, &stats, [&app] { return app.ready; });
  bool sleeping = false;
  HttpServer server(loop, &stats, [&](const Request& r) {
    if (std::optional<Response> s = SleepMode(f, &sleeping, r)) return *s;
    return handler.Handle(r);
  });
  absl::StatusOr<int> port = server.Listen(f.host, f.port);
  if (!port.ok()) {
    fprintf(stderr, "fake_upstream: %s\n", port.status().ToString().c_str());
    return 1;
  }

  for (auto [sig, num] :
       {std::pair{&app.sigterm, SIGTERM}, std::pair{&app.sigint, SIGINT}}) {
    uv_signal_init(loop, sig);
    sig->data = &app;
    uv_signal_start(sig, OnStopSignal, num);
  }
  // Printed once signals are handled, so that a test that saw it may
  // signal at once.
  printf("listening on %s:%d\n", f.host.c_str(), *port);
  auto start_timer = [&](uv_timer_t* t, uint64_t after, uint64_t repeat,
                         uv_timer_cb cb) {
    uv_timer_init(loop, t);
    t->data = &app;
    uv_timer_start(t, cb, after, repeat);
  };
  if (f.ready_after_ms == 0) {
    BecomeReady(&app);
  } else {
    start_timer(&app.ready_timer, f.ready_after_ms, 0,
                [](uv_timer_t* t) { BecomeReady(static_cast<App*>(t->data)); });
  }
  if (f.crash_after_ms >= 0) {
    start_timer(&app.crash_timer, f.crash_after_ms, 0, [](uv_timer_t*) {
      printf("fake_upstream: crashing as asked\n");
      rlimit no_core{0, 0};
      setrlimit(RLIMIT_CORE, &no_core);
      signal(SIGSEGV, SIG_DFL);
      raise(SIGSEGV);
    });
  }
  if (f.log_every_ms > 0) {
    start_timer(&app.log_timer, f.log_every_ms, f.log_every_ms,
                [](uv_timer_t* t) {
                  App* a = static_cast<App*>(t->data);
                  printf("fake_upstream: progress line %d\n", ++a->progress);
                });
  }
  return uv_run(loop, UV_RUN_DEFAULT);
}

}  // namespace
}  // namespace modelplane::fake

int main(int argc, char** argv) { return modelplane::fake::Main(argc, argv); }
