// Control-plane latencies, measured against the real modelmanager binary over
// gRPC on loopback, each beside a peer measured in the same run:
//
//   1. ACQUIRE -> GRANTED for a READY model (a first acquire each time;
//      also after 1.5 s of silence on the stream, a few times),
//      beside a unary GetModel round trip on the same channel, and beside
//      the transport's floor: the same exchange with an echo server (this
//      binary, in another process) that answers every ACQUIRE at once on
//      gRPC's own thread, with no scheduler and no thread hop. The two go in
//      interleaved rounds (this 2-core machine drifts by 10-20 % within a
//      minute): the p50 printed is the median of the rounds' p50s, the ratio
//      the median of the rounds' ratios.
//   2. Eviction of an idle holder: from the Start of another model to the
//      holder receiving REVOKED.
//   3. A full swap driven by leases (Start B while A is held and released on
//      REVOKED), beside the processes' own start and stop times measured
//      directly (fork/exec to "listening", SIGTERM to exit).
//   4. Watch fan-out: the delay from a model's READY transition to each of
//      100 watchers receiving it.
//
//   bazel run -c opt //tools/bench/control_plane -- [--iterations 2000]
//
// Targets (DESIGN.md): first grant p50 <= 100 us; revocation of an idle
// holder <= 1 ms; swap overhead <= 20 ms beyond the processes' own times.
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/flags.h"
#include "modelplane/v1/model_manager.grpc.pb.h"

namespace modelplane::bench {
namespace {

using Stream =
    grpc::ClientReaderWriter<v1::AcquireRequest, v1::AcquireResponse>;

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// Spawns argv with stdout+stderr on a pipe; returns the pid and the read end.
pid_t Spawn(const std::vector<std::string>& argv, int* out) {
  int p[2];
  if (pipe(p) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    dup2(p[1], 2);
    close(p[0]);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(p[1]);
  *out = p[0];
  return pid;
}

// Reads lines from fd until one contains `needle`; returns it ("" at EOF).
std::string ReadUntil(int fd, const std::string& needle) {
  std::string buf, line;
  char c;
  while (read(fd, &c, 1) == 1) {
    if (c != '\n') {
      line += c;
      continue;
    }
    if (line.find(needle) != std::string::npos) return line;
    line.clear();
  }
  return "";
}

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1,
                    static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

double Us(absl::Duration d) { return absl::ToDoubleMicroseconds(d); }

bool ReadUntilKind(Stream* s, v1::AcquireResponse::KindCase kind,
                   v1::AcquireResponse* r) {
  while (s->Read(r)) {
    if (r->kind_case() == kind) return true;
  }
  return false;
}

// The floor peer: ModelManager.Acquire answered with GRANTED at once, on the
// thread gRPC ran the read on.
class EchoService final : public v1::ModelManager::CallbackService {
  grpc::ServerBidiReactor<v1::AcquireRequest, v1::AcquireResponse>* Acquire(
      grpc::CallbackServerContext*) override {
    class Reactor : public grpc::ServerBidiReactor<v1::AcquireRequest,
                                                   v1::AcquireResponse> {
     public:
      Reactor() { StartRead(&req_); }
      void OnReadDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::OK);
        if (!req_.has_acquire()) return StartRead(&req_);
        resp_.Clear();
        v1::AcquireResponse::Granted* g = resp_.mutable_granted();
        g->set_model(req_.acquire().model());
        g->set_request_id(req_.acquire().request_id());
        g->set_lease_id(++lease_);
        g->set_upstream_url("http://127.0.0.1:1");
        StartWrite(&resp_);
      }
      void OnWriteDone(bool ok) override {
        if (!ok) return Finish(grpc::Status::OK);
        StartRead(&req_);
      }
      void OnDone() override { delete this; }

     private:
      v1::AcquireRequest req_;
      v1::AcquireResponse resp_;
      uint64_t lease_ = 0;
    };
    return new Reactor;
  }
};

int RunEchoServer(int port) {
  EchoService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", port),
                           grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return 1;
  server->Wait();  // Until SIGTERM ends the process.
  return 0;
}

// ACQUIRE -> GRANTED round trips on one stream (each lease released before
// the next ACQUIRE, and `idle` waited after each release), in microseconds.
std::vector<double> FirstGrants(v1::ModelManager::Stub* stub, int n,
                                absl::Duration idle = absl::ZeroDuration()) {
  std::vector<double> us;
  grpc::ClientContext ctx;
  std::unique_ptr<Stream> s = stub->Acquire(&ctx);
  v1::AcquireRequest hello;
  hello.mutable_hello()->set_client_id("bench");
  s->Write(hello);
  for (int i = 0; i < n; ++i) {
    if (idle > absl::ZeroDuration()) absl::SleepFor(idle);
    v1::AcquireRequest acq;
    acq.mutable_acquire()->set_model("a");
    acq.mutable_acquire()->set_request_id(std::to_string(i));
    absl::Time t0 = absl::Now();
    s->Write(acq);
    v1::AcquireResponse r;
    if (!ReadUntilKind(s.get(), v1::AcquireResponse::kGranted, &r)) break;
    us.push_back(Us(absl::Now() - t0));
    v1::AcquireRequest rel;
    rel.mutable_release()->set_model("a");
    rel.mutable_release()->set_lease_id(r.granted().lease_id());
    s->Write(rel);
  }
  s->WritesDone();
  ctx.TryCancel();
  s->Finish();
  return us;
}

int Main(int argc, char** argv) {
  FlagParser flags("control_plane_bench [--iterations N]");
  int iterations = 2000, swaps = 20, watchers = 100, idle_samples = 8;
  std::string manager_bin = "server/modelmanager";
  std::string fake_bin = "tools/fake_upstream/fake_upstream";
  flags.Int("iterations", &iterations, "acquire round trips (default 2000)",
            10);
  flags.Int("swaps", &swaps, "lease-driven swaps (default 20)", 2);
  flags.Int("idle-samples", &idle_samples,
            "acquires after 1.5 s of silence (default 8)", 1);
  flags.Int("watchers", &watchers, "Watch streams (default 100)", 1);
  flags.String("modelmanager", &manager_bin, "path of modelmanager");
  flags.String("fake-upstream", &fake_bin, "path of fake_upstream");
  int echo_port = 0;
  flags.Int("echo-server-port", &echo_port,
            "internal: serve the floor peer on this port", 0);
  auto rest = flags.Parse(argc, argv);
  if (!rest.ok()) {
    fprintf(stderr, "%s\n%s", std::string(rest.status().message()).c_str(),
            flags.Usage().c_str());
    return absl::IsNotFound(rest.status()) ? 0 : 2;
  }
  if (echo_port > 0) return RunEchoServer(echo_port);
  char cwd[4096];
  std::string root = getcwd(cwd, sizeof(cwd)) ? std::string(cwd) + "/" : "";
  fake_bin = fake_bin[0] == '/' ? fake_bin : root + fake_bin;
  manager_bin = manager_bin[0] == '/' ? manager_bin : root + manager_bin;

  std::string config =
      absl::StrCat("/tmp/modelplane-bench-", getpid(), ".yaml");
  {
    std::ofstream f(config);
    for (const char* id : {"a", "b", "c"}) {
      int port = FreePort();
      f << (id[0] == 'a' ? "models:\n" : "") << "  " << id << ":\n"
        << "    cmd: " << fake_bin << " --port " << port
        << " --ready-line ready-now\n"
        << "    proxy: http://127.0.0.1:" << port << "\n"
        << "    readyPattern: ready-now\n    maxQueueWait: 0\n";
    }
    f << "groups:\n  solo: {members: [c], exclusive: false}\n";
  }
  int mport = FreePort();
  int mout = -1;
  pid_t manager =
      Spawn({manager_bin, "--config", config, "--listen",
             absl::StrCat("127.0.0.1:", mport), "--log-level", "warn"},
            &mout);
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", mport),
                                     grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(
          absl::ToChronoTime(absl::Now() + absl::Seconds(10)))) {
    fprintf(stderr, "modelmanager did not come up\n");
    return 1;
  }
  auto stub = v1::ModelManager::NewStub(channel);
  auto start = [&](const std::string& m) {
    grpc::ClientContext ctx;
    v1::StartRequest req;
    req.set_model(m);
    v1::Model resp;
    return stub->Start(&ctx, req, &resp);
  };
  start("a");

  // 1. First acquire of a READY model, beside the transport floor (in
  // rounds) and a unary round trip.
  char self[4096];
  ssize_t self_n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  self[self_n > 0 ? self_n : 0] = '\0';
  int eport = FreePort();
  int eout = -1;
  pid_t echo =
      Spawn({self, "--echo-server-port", std::to_string(eport)}, &eout);
  auto echo_channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", eport),
                                          grpc::InsecureChannelCredentials());
  if (!echo_channel->WaitForConnected(
          absl::ToChronoTime(absl::Now() + absl::Seconds(10)))) {
    fprintf(stderr, "the echo server did not come up\n");
    return 1;
  }
  auto echo_stub = v1::ModelManager::NewStub(echo_channel);
  constexpr int kRounds = 5;
  std::vector<double> grant_us, floor_us, grant_p50s, floor_p50s, ratios;
  for (int r = 0; r < kRounds; ++r) {
    std::vector<double> g = FirstGrants(stub.get(), iterations / kRounds);
    std::vector<double> f = FirstGrants(echo_stub.get(), iterations / kRounds);
    grant_p50s.push_back(Pct(g, 0.5));
    floor_p50s.push_back(Pct(f, 0.5));
    ratios.push_back(Pct(g, 0.5) / std::max(Pct(f, 0.5), 1e-9));
    grant_us.insert(grant_us.end(), g.begin(), g.end());
    floor_us.insert(floor_us.end(), f.begin(), f.end());
  }
  kill(echo, SIGTERM);
  waitpid(echo, nullptr, 0);
  close(eout);
  // The same after 1.5 s of silence on the stream: the shape of the proxy's
  // re-acquire once its lease lingered out. This client is synchronous, so
  // it shows the manager's side only; the 40-100 ms stall of an idle gRPC
  // callback client (common/grpc_poll_keeper.h) is on the proxy's side and
  // is not reproduced here.
  std::vector<double> idle_us =
      FirstGrants(stub.get(), idle_samples, absl::Milliseconds(1500));
  std::vector<double> unary_us;
  {
    for (int i = 0; i < iterations; ++i) {
      grpc::ClientContext c;
      v1::GetModelRequest req;
      req.set_model("a");
      v1::Model m;
      absl::Time t0 = absl::Now();
      stub->GetModel(&c, req, &m);
      unary_us.push_back(Us(absl::Now() - t0));
    }
  }

  // 2 and 3. Lease-driven swaps between a and b.
  std::vector<double> revoke_us, swap_ms;
  for (int i = 0; i < swaps; ++i) {
    std::string held = i % 2 == 0 ? "a" : "b";
    std::string next = i % 2 == 0 ? "b" : "a";
    start(held);
    grpc::ClientContext ctx;
    std::unique_ptr<Stream> s = stub->Acquire(&ctx);
    v1::AcquireRequest acq;
    acq.mutable_acquire()->set_model(held);
    s->Write(acq);
    v1::AcquireResponse r;
    ReadUntilKind(s.get(), v1::AcquireResponse::kGranted, &r);
    uint64_t lease = r.granted().lease_id();
    absl::Time t0 = absl::Now();
    absl::Time done;
    std::thread other([&] {
      start(next);
      done = absl::Now();
    });
    ReadUntilKind(s.get(), v1::AcquireResponse::kRevoked, &r);
    revoke_us.push_back(Us(absl::Now() - t0));
    v1::AcquireRequest rel;
    rel.mutable_release()->set_model(held);
    rel.mutable_release()->set_lease_id(lease);
    s->Write(rel);
    other.join();
    swap_ms.push_back(absl::ToDoubleMilliseconds(done - t0));
    s->WritesDone();
    ctx.TryCancel();
    s->Finish();
  }
  // The processes' own times, measured directly.
  std::vector<double> own_ms;
  for (int i = 0; i < swaps; ++i) {
    int out;
    absl::Time t0 = absl::Now();
    pid_t p = Spawn({fake_bin, "--port", std::to_string(FreePort()),
                     "--ready-line", "ready-now"},
                    &out);
    ReadUntil(out, "ready-now");
    absl::Time t1 = absl::Now();
    kill(p, SIGTERM);
    waitpid(p, nullptr, 0);
    close(out);
    own_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
    (void)t1;
  }

  // 4. Watch fan-out: c is in a non-exclusive group of its own, so starting
  // it evicts nothing.
  std::vector<double> fanout_us;
  {
    absl::Mutex mu;
    int ready = 0;
    std::vector<std::thread> threads;
    std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
    for (int i = 0; i < watchers; ++i)
      ctxs.push_back(std::make_unique<grpc::ClientContext>());
    for (int i = 0; i < watchers; ++i) {
      threads.emplace_back([&, i] {
        v1::WatchRequest req;
        req.add_models("c");
        auto reader = stub->Watch(ctxs[i].get(), req);
        v1::WatchEvent e;
        while (reader->Read(&e)) {
          if (e.type() == v1::WatchEvent::TYPE_BOOKMARK) {
            absl::MutexLock l(&mu);
            ++ready;
          }
          if (e.type() == v1::WatchEvent::TYPE_MODIFIED &&
              e.model().state() == v1::MODEL_STATE_READY) {
            absl::Time since =
                absl::FromUnixSeconds(e.model().state_since().seconds()) +
                absl::Nanoseconds(e.model().state_since().nanos());
            absl::MutexLock l(&mu);
            fanout_us.push_back(Us(absl::Now() - since));
            break;
          }
        }
        ctxs[i]->TryCancel();
        reader->Finish();
      });
    }
    mu.LockWhen(absl::Condition(
        +[](int* n) { return *n > 0; }, &ready));
    while (ready < watchers) {
      mu.Unlock();
      absl::SleepFor(absl::Milliseconds(1));
      mu.Lock();
    }
    mu.Unlock();
    start("c");
    for (auto& t : threads) t.join();
  }
  kill(manager, SIGTERM);
  waitpid(manager, nullptr, 0);
  unlink(config.c_str());

  printf("control plane (modelmanager over gRPC on loopback)\n");
  printf(
      "first acquire of a READY model  p50 %7.1f us  p99 %7.1f us | unary "
      "GetModel p50 %7.1f us | transport floor (echo server) p50 %7.1f us, "
      "p99 %7.1f us | ratio to the floor %.2fx | target p50 <= 100 us: %s\n",
      Pct(grant_p50s, 0.5), Pct(grant_us, 0.99), Pct(unary_us, 0.5),
      Pct(floor_p50s, 0.5), Pct(floor_us, 0.99), Pct(ratios, 0.5),
      Pct(grant_p50s, 0.5) <= 100 ? "met" : "MISSED");
  printf(
      "first acquire after 1.5 s of silence  p50 %7.1f us  max %7.1f us "
      "(%zu samples)\n",
      Pct(idle_us, 0.5), Pct(idle_us, 1.0), idle_us.size());
  printf(
      "eviction -> REVOKED at an idle holder  p50 %7.1f us  p99 %7.1f us | "
      "target "
      "<= 1000 us: %s\n",
      Pct(revoke_us, 0.5), Pct(revoke_us, 0.99),
      Pct(revoke_us, 0.5) <= 1000 ? "met" : "MISSED");
  double overhead = Pct(swap_ms, 0.5) - Pct(own_ms, 0.5);
  printf(
      "lease-driven swap  p50 %6.1f ms | processes' own start+stop p50 %6.1f "
      "ms | "
      "overhead %5.1f ms | target <= 20 ms: %s\n",
      Pct(swap_ms, 0.5), Pct(own_ms, 0.5), overhead,
      overhead <= 20 ? "met" : "MISSED");
  printf(
      "Watch fan-out to %d watchers  p50 %7.1f us  p99 %7.1f us after the "
      "READY "
      "transition\n",
      watchers, Pct(fanout_us, 0.5), Pct(fanout_us, 0.99));
  return 0;
}

}  // namespace
}  // namespace modelplane::bench

int main(int argc, char** argv) { return modelplane::bench::Main(argc, argv); }
