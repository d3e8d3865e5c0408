// How soon a model actor notices that its upstream became healthy.
//
// Starts `fake_upstream --ready-after-ms 300` through a real ModelActor N
// times (with and without readyPattern) and measures, per start, the delay
// from the moment the upstream's /health turned 200 (fake_upstream records
// it: /stats ready_at_us) to the actor's READY transition. The peer figure is
// llama-swap's schedule on the same starts: a probe 250 ms after spawn, then
// one every second, so it notices at the first probe at or after the
// upstream's ready time.
//
//   bazel run //tools/bench/readiness -- [--runs 30]
//
// Targets (DESIGN.md): p50 <= 10 ms with readyPattern, <= 60 ms without.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/flags.h"
#include "server/core/actor/model_actor.h"
#include "server/runtime/actor_host.h"

namespace modelplane::bench {
namespace {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// GET /stats and return ready_at_us (blocking; fine outside the loop).
int64_t ReadyAtMicros(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return 0;
  }
  std::string req =
      "GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  if (write(fd, req.data(), req.size()) < 0) return 0;
  std::string resp;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) resp.append(buf, n);
  close(fd);
  size_t at = resp.find("\"ready_at_us\":");
  int64_t v = 0;
  if (at != std::string::npos) {
    size_t start = at + 14;
    absl::SimpleAtoi(
        resp.substr(start, resp.find_first_of(",}", start) - start), &v);
  }
  return v;
}

struct Sample {
  double modelplane_ms;
  double llama_swap_ms;
};

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// `jitter`: add i * 50 / runs ms to the 300 ms load time of run i, so that
// the upstream turns healthy at every phase of the probe schedule (with a
// fixed 300 ms, every run hits the same phase and the figure is luck).
std::vector<Sample> Run(runtime::ActorHost& host, const std::string& binary,
                        int runs, bool ready_pattern, bool jitter) {
  std::vector<Sample> samples;
  for (int i = 0; i < runs; ++i) {
    int port = FreePort();
    int load_ms = 300 + (jitter ? i * 50 / runs : 0);
    config::ModelConfig c;
    c.id = "bench";
    c.argv = {binary,
              "--port",
              std::to_string(port),
              "--ready-after-ms",
              std::to_string(load_ms),
              "--ready-line",
              "main: server is listening"};
    c.proxy = absl::StrCat("http://127.0.0.1:", port);
    c.check_endpoint = "/health";
    c.health_check_timeout = absl::Seconds(30);
    c.unload_timeout = absl::Seconds(5);
    if (ready_pattern) c.ready_pattern = "server is listening";
    absl::Mutex mu;
    absl::Time spawned, ready;
    absl::Notification started, stopped;
    std::unique_ptr<actor::ModelActor> a;
    host.loop().RunSync([&] {
      a = std::make_unique<actor::ModelActor>(
          c, host.env(), host.revisions(), std::make_shared<logs::LogBuffer>(),
          [&](const actor::StateEvent& e) {
            absl::MutexLock lock(&mu);
            if (e.new_state == actor::State::kStarting && e.status.pid == 0) {
              spawned = e.status.state_since;
            }
            if (e.new_state == actor::State::kReady)
              ready = e.status.state_since;
          });
      a->Start([&](absl::Status s) {
        if (!s.ok())
          fprintf(stderr, "start failed: %s\n", s.ToString().c_str());
        started.Notify();
      });
    });
    started.WaitForNotification();
    int64_t healthy_us = ReadyAtMicros(port);
    host.loop().Post([&] { a->Stop([&] { stopped.Notify(); }); });
    stopped.WaitForNotification();
    host.loop().RunSync([&] { a.reset(); });
    absl::MutexLock lock(&mu);
    if (healthy_us == 0 || ready == absl::Time()) continue;
    absl::Time healthy = absl::FromUnixMicros(healthy_us);
    // llama-swap: probes at spawn + 250 ms + k * 1 s.
    absl::Duration since_spawn = healthy - spawned;
    absl::Duration probe = absl::Milliseconds(250);
    while (probe < since_spawn) probe += absl::Seconds(1);
    samples.push_back(Sample{absl::ToDoubleMilliseconds(ready - healthy),
                             absl::ToDoubleMilliseconds(probe - since_spawn)});
  }
  return samples;
}

void Report(const char* name, const std::vector<Sample>& s, double target) {
  std::vector<double> mp, ls;
  for (const Sample& x : s) {
    mp.push_back(x.modelplane_ms);
    ls.push_back(x.llama_swap_ms);
  }
  double p50 = Percentile(mp, 0.5), p99 = Percentile(mp, 0.99);
  double ls50 = Percentile(ls, 0.5);
  printf(
      "%-22s n=%-3zu modelplane p50 %7.2f ms  p99 %7.2f ms | llama-swap "
      "schedule p50 %7.1f ms  p99 %7.1f ms | ratio p50 %5.1fx | target "
      "p50 <= %.0f ms: %s\n",
      name, s.size(), p50, p99, ls50, Percentile(ls, 0.99),
      p50 > 0 ? ls50 / p50 : 0.0, target, p50 <= target ? "met" : "MISSED");
}

int Main(int argc, char** argv) {
  FlagParser flags("readiness_bench [--runs N] [--fake-upstream PATH]");
  int runs = 30;
  std::string binary = "tools/fake_upstream/fake_upstream";
  flags.Int("runs", &runs, "starts per mode (default 30)", 1);
  flags.String("fake-upstream", &binary, "path of the fake_upstream binary");
  auto rest = flags.Parse(argc, argv);
  if (!rest.ok()) {
    fprintf(stderr, "%s\n%s", std::string(rest.status().message()).c_str(),
            flags.Usage().c_str());
    return absl::IsNotFound(rest.status()) ? 0 : 2;
  }
  runtime::ActorHost host;
  printf(
      "readiness: delay from upstream healthy to READY, %d starts of "
      "fake_upstream --ready-after-ms 300 per mode\n",
      runs);
  Report("with readyPattern", Run(host, binary, runs, true, false), 10);
  Report("polling, 300 ms", Run(host, binary, runs, false, false), 60);
  Report("polling, 300..349 ms", Run(host, binary, runs, false, true), 60);
  return 0;
}

}  // namespace
}  // namespace modelplane::bench

int main(int argc, char** argv) { return modelplane::bench::Main(argc, argv); }
