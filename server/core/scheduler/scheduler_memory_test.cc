// GPU memory as a rule of the queue's pass (scheduler_memory.cc), with the
// fake actors and a table for NVML that each test fills as its fake
// processes "allocate".
#include <memory>

#include "server/core/gpu/monitor.h"
#include "server/core/scheduler/scheduler_test_util.h"

namespace modelplane::scheduler {
namespace {

constexpr uint64_t kMiB = gpu::kMiB;

// NVML as a table the test writes.
class TableSource : public gpu::GpuSource {
 public:
  absl::StatusOr<gpu::GpuSnapshot> Read() override { return snap; }
  gpu::GpuSnapshot snap;
};

class MemoryTest : public SchedulerTest {
 protected:
  // `gpus`: each GPU's size, MiB.
  void LoadWithGpus(const std::string& yaml, std::vector<uint64_t> gpus) {
    auto source = std::make_unique<TableSource>();
    table_ = source.get();
    for (size_t i = 0; i < gpus.size(); ++i) {
      table_->snap.gpus.push_back(
          gpu::GpuInfo{static_cast<int>(i), "t", "", gpus[i] * kMiB, 0});
    }
    gpu::MonitorOptions o;
    o.group_of = [](int pid) { return pid; };
    o.log = [this](const std::string&, const std::string& line) {
      log_.push_back(line);
    };
    monitor_ = std::make_unique<gpu::Monitor>(std::move(source), &clock_, o);
    SchedulerOptions so;
    so.gpu = monitor_.get();
    Load(yaml, so);
  }
  void TearDown() override {
    scheduler_.reset();
    monitor_.reset();
  }
  // `model`'s process takes `mib` of `gpu` (as NVML would show it).
  void Allocates(const std::string& model, uint64_t mib, int gpu = 0) {
    FakeProcessRecord* p = Proc(model);
    ASSERT_NE(p, nullptr) << model;
    table_->snap.processes.push_back(gpu::GpuProcess{p->pid, gpu, mib * kMiB});
    table_->snap.gpus[gpu].used_bytes += mib * kMiB;
  }
  // Its process is gone; the driver gives its memory back now, or later.
  void Frees(const std::string& model, bool now = true) {
    FakeProcessRecord* p = Proc(model);
    for (auto it = table_->snap.processes.begin();
         it != table_->snap.processes.end();) {
      if (it->pid != p->pid) {
        ++it;
        continue;
      }
      if (now) table_->snap.gpus[it->gpu].used_bytes -= it->used_bytes;
      it = table_->snap.processes.erase(it);
    }
  }
  void DriverReturns(int gpu, uint64_t mib) {
    table_->snap.gpus[gpu].used_bytes -= mib * kMiB;
  }
  // A start that fits: spawned, healthy, allocated.
  void StartFitting(ClientId c, const std::string& model, uint64_t mib) {
    Acquire(c, model);
    ASSERT_TRUE(Alive(model)) << model << " did not start";
    Allocates(model, mib);
    Healthy(model);
    ASSERT_EQ(StateOf(model), State::kReady) << model;
  }
  // `model`'s server answers the sleep POST with `status`, having freed its
  // memory first when it succeeds.
  void AnswersSleep(const std::string& model, int status = 200) {
    if (status == 200) Frees(model);
    int port = scheduler_->Get(model)->config->port;
    ASSERT_TRUE(prober_.AnswerUrl(
        absl::StrCat("POST http://localhost:", port, "/sleep?level=1"),
        status));
    Settle();
  }
  // A sleeping `model`'s server answers the wake POST, its process taking
  // `mib` of GPU 0 again.
  void AnswersWake(const std::string& model, uint64_t mib) {
    int port = scheduler_->Get(model)->config->port;
    ASSERT_TRUE(prober_.AnswerUrl(
        absl::StrCat("POST http://localhost:", port, "/wake_up"), 200));
    Allocates(model, mib);
  }
  // An evicted model's process exits as asked, and its memory is free.
  void StopsAndFrees(const std::string& model) {
    Frees(model);
    Exits(model);
  }

  TableSource* table_ = nullptr;
  std::unique_ptr<gpu::Monitor> monitor_;
  std::vector<std::string> log_;
};

// 10240 MiB, 9728 usable: two of 4000 fit, three do not.
constexpr char kThreeOfFour[] = R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", resources: {vramMiB: 4000}}
  b: {cmd: "srv-b --port ${PORT}", resources: {vramMiB: 4000}}
  c: {cmd: "srv-c --port ${PORT}", resources: {vramMiB: 4000}}
)yaml";

TEST(FootprintKeyTest, ThePortIsTheMacroAndAnyOtherChangeCounts) {
  config::ModelConfig c;
  c.argv = {"llama-server", "--port", "5801",
            "-c",           "58010",  "--url=http://h:5801/x"};
  c.port = 5801;
  EXPECT_EQ(FootprintKey(c),
            "llama-server --port ${PORT} -c 58010 --url=http://h:${PORT}/x");
  config::ModelConfig moved = c;
  moved.argv = {"llama-server", "--port", "5802",
                "-c",           "58010",  "--url=http://h:5802/x"};
  moved.port = 5802;
  EXPECT_EQ(FootprintKey(moved), FootprintKey(c));
  config::ModelConfig changed = moved;
  changed.argv[4] = "4096";
  EXPECT_NE(FootprintKey(changed), FootprintKey(c));
  config::ModelConfig no_port;
  no_port.argv = {"srv", "5801"};
  EXPECT_EQ(FootprintKey(no_port), "srv 5801");
}

// A footprint measured after READY (a server that allocates as it warms
// up) reaches watchers as it grows, by 64 MiB or more; a figure that holds
// makes no event.
TEST_F(MemoryTest, AMeasuredFootprintThatGrowsReachesWatchers) {
  LoadWithGpus(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", resources: {}}
)yaml",
               {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 3000);
  auto told = [this] {
    std::vector<uint64_t> out;
    for (const ModelChange& ch : changes_) {
      if (ch.view.config->id == "a" && ch.view.memory_known &&
          ch.view.memory.measured != 0) {
        out.push_back(ch.view.memory.measured / kMiB);
      }
    }
    return out;
  };
  clock_.Advance(absl::Seconds(1));  // A poll.
  size_t before = told().size();
  Allocates("a", 1000);  // Warming up: 4000 MiB now.
  clock_.Advance(absl::Seconds(1));
  ASSERT_EQ(told().size(), before + 1);
  EXPECT_EQ(told().back(), 4000u);
  Allocates("a", 10);  // Less than 64 MiB more: not told.
  clock_.Advance(absl::Seconds(1));
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(told().size(), before + 1);
}

TEST_F(MemoryTest, ModelsThatFitRunTogetherWithoutGroups) {
  LoadWithGpus(kThreeOfFour, {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 4000);
  StartFitting(c, "b", 4000);
  EXPECT_EQ(StateOf("a"), State::kReady) << "the implicit group does not bind";
  EXPECT_EQ(Spawns("a"), 1);
}

TEST_F(MemoryTest, TheThirdEvictsTheLeastRecentlyUsedIdleOne) {
  LoadWithGpus(kThreeOfFour, {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 4000);
  clock_.Advance(absl::Seconds(1));
  StartFitting(c, "b", 4000);
  Release(c, &rc, "a");
  clock_.Advance(absl::Seconds(1));
  Release(c, &rc, "b");
  Acquire(c, "c");
  EXPECT_FALSE(Alive("c")) << "not before a is gone";
  EXPECT_EQ(StateOf("a"), State::kStopping);
  EXPECT_EQ(StateOf("b"), State::kReady);
  StopsAndFrees("a");
  ASSERT_TRUE(Alive("c"));
  EXPECT_EQ(StateOf("b"), State::kReady);
}

// Within its maxQueueWait (30 s by default) a start waits for busy models
// to become idle: none is evicted for memory under its holders.
TEST_F(MemoryTest, ABusyModelIsNotEvictedForMemoryBeforeTheStartIsOverdue) {
  LoadWithGpus(kThreeOfFour, {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 4000);
  StartFitting(c, "b", 4000);
  RecordingClient other;
  ClientId o = Connect(&other);
  Acquire(o, "c");
  for (int i = 0; i < 5; ++i) clock_.Advance(absl::Seconds(5));  // 25 s.
  EXPECT_FALSE(Alive("c"));
  EXPECT_FALSE(rc.Saw("revoked a"));
  EXPECT_FALSE(rc.Saw("revoked b"));
  EXPECT_EQ(StateOf("a"), State::kReady);
  EXPECT_EQ(StateOf("b"), State::kReady);
  Release(c, &rc, "b");  // b is idle now: it goes.
  EXPECT_EQ(StateOf("b"), State::kStopping);
  EXPECT_EQ(StateOf("a"), State::kReady);
  StopsAndFrees("b");
  EXPECT_TRUE(Alive("c"));
}

// Past it, memory follows the queue's rule for busy models (a busy model
// cannot starve the others): the least recently used one's leases are
// revoked, it drains, and it is stopped for the start; the other stays.
TEST_F(MemoryTest, AnOverdueStartRevokesTheLeastRecentlyUsedBusyModel) {
  LoadWithGpus(kThreeOfFour, {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 4000);
  clock_.Advance(absl::Seconds(1));
  StartFitting(c, "b", 4000);
  RecordingClient other;
  ClientId o = Connect(&other);
  Acquire(o, "c");
  clock_.Advance(absl::Seconds(29));
  Settle();
  EXPECT_FALSE(rc.Saw("revoked a"));
  clock_.Advance(absl::Seconds(2));
  Settle();
  ASSERT_TRUE(rc.Saw("revoked a"));
  EXPECT_FALSE(rc.Saw("revoked b"));
  EXPECT_EQ(StateOf("a"), State::kReady);  // Drains first.
  EXPECT_FALSE(Alive("c"));
  Release(c, &rc, "a");
  EXPECT_EQ(StateOf("a"), State::kStopping);
  StopsAndFrees("a");
  EXPECT_TRUE(Alive("c"));
  EXPECT_EQ(StateOf("b"), State::kReady);
  EXPECT_FALSE(rc.Saw("revoked b"));
}

// An overdue start never takes a start in progress: with a held model
// and a starting one both needed gone, it waits (revoking neither); once
// the second is READY and held too, both are revoked.
TEST_F(MemoryTest, AnOverdueStartNeverTakesAStartInProgress) {
  LoadWithGpus(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", resources: {vramMiB: 4000}}
  b: {cmd: "srv-b --port ${PORT}", resources: {vramMiB: 4000}}
  c: {cmd: "srv-c --port ${PORT}", resources: {vramMiB: 8000}, maxQueueWait: 1}
)yaml",
               {10240});
  RecordingClient rc;
  ClientId h = Connect(&rc);
  StartFitting(h, "a", 4000);
  Acquire(h, "b");
  ASSERT_TRUE(Alive("b"));
  ASSERT_EQ(StateOf("b"), State::kStarting);
  RecordingClient other;
  ClientId o = Connect(&other);
  Acquire(o, "c");
  clock_.Advance(absl::Seconds(2));
  Settle();
  EXPECT_FALSE(rc.Saw("revoked a")) << "a alone is not enough";
  EXPECT_EQ(StateOf("b"), State::kStarting);
  EXPECT_FALSE(Alive("c"));
  Allocates("b", 4000);
  Healthy("b");
  ASSERT_EQ(StateOf("b"), State::kReady);
  clock_.Advance(absl::Milliseconds(200));
  Settle();
  EXPECT_TRUE(rc.Saw("revoked a"));
  EXPECT_TRUE(rc.Saw("revoked b"));
}

TEST_F(MemoryTest, AModelTooLargeForItsGpusIsRefusedAtOnce) {
  LoadWithGpus(R"yaml(
models:
  big: {cmd: "srv-big --port ${PORT}", resources: {vramMiB: 20000}}
)yaml",
               {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  Acquire(c, "big");
  EXPECT_TRUE(rc.Saw("failed big r-big RESOURCE_EXHAUSTED")) << rc.events[0];
  EXPECT_EQ(Spawns("big"), 0);
}

TEST_F(MemoryTest, TheNextStartWaitsForTheDriverToGiveMemoryBack) {
  LoadWithGpus(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", resources: {vramMiB: 6000}}
  b: {cmd: "srv-b --port ${PORT}", resources: {vramMiB: 6000}}
gpu: {memoryWaitTimeout: 2}
)yaml",
               {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 6000);
  Release(c, &rc, "a");
  Acquire(c, "b");
  Frees("a", /*now=*/false);  // Gone, but the driver still holds it.
  Exits("a");
  for (int i = 0; i < 5; ++i) clock_.Advance(absl::Milliseconds(100));
  EXPECT_FALSE(Alive("b")) << "the memory is not back";
  DriverReturns(0, 6000);
  for (int i = 0; i < 3; ++i) clock_.Advance(absl::Milliseconds(100));
  EXPECT_TRUE(Alive("b"));
  EXPECT_TRUE(monitor_->Trusted(0));
}

TEST_F(MemoryTest, PastTheWaitTheGpuIsUntrustedUntilTheMemoryIsBack) {
  LoadWithGpus(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", resources: {vramMiB: 6000}}
  b: {cmd: "srv-b --port ${PORT}", resources: {vramMiB: 2000}}
gpu: {memoryWaitTimeout: 1}
)yaml",
               {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 6000);
  scheduler_->Stop("a", false, [](auto) {});
  Settle();
  Frees("a", /*now=*/false);
  Exits("a");
  // Past the bound, seen at the next poll (every second).
  for (int i = 0; i < 22; ++i) clock_.Advance(absl::Milliseconds(100));
  EXPECT_FALSE(monitor_->Trusted(0));
  ASSERT_EQ(monitor_->wait_timeouts().count(0), 1u);
  EXPECT_EQ(monitor_->wait_timeouts().at(0), 1u);
  // b would fit beside the stuck memory, but the GPU is not trusted.
  Acquire(c, "b");
  for (int i = 0; i < 3; ++i) clock_.Advance(absl::Milliseconds(100));
  EXPECT_FALSE(Alive("b"));
  DriverReturns(0, 6000);
  clock_.Advance(absl::Seconds(1));  // The next poll sees it.
  for (int i = 0; i < 3; ++i) clock_.Advance(absl::Milliseconds(100));
  EXPECT_TRUE(monitor_->Trusted(0));
  EXPECT_TRUE(Alive("b"));
}

TEST_F(MemoryTest, PlacedOnTheGpuWithTheMostFreeAndToldWhere) {
  LoadWithGpus(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT} --main-gpu ${GPU}", resources: {vramMiB: 6000, gpus: [0, 1]}}
  b: {cmd: "srv-b --port ${PORT} --main-gpu ${GPU}", resources: {vramMiB: 6000, gpus: [0, 1]}}
)yaml",
               {10240, 10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  Acquire(c, "a");
  ASSERT_TRUE(Alive("a"));
  const std::vector<std::string>& argv = Proc("a")->spec.argv;
  int gpu_a = argv.back() == "0" ? 0 : 1;
  EXPECT_EQ(argv.back(), absl::StrCat(gpu_a));
  const std::vector<std::string>& env = Proc("a")->spec.env;
  EXPECT_NE(std::find(env.begin(), env.end(),
                      absl::StrCat("CUDA_VISIBLE_DEVICES=", gpu_a)),
            env.end());
  Allocates("a", 6000, gpu_a);
  Healthy("a");
  Acquire(c, "b");
  ASSERT_TRUE(Alive("b"));
  EXPECT_EQ(Proc("b")->spec.argv.back(), absl::StrCat(1 - gpu_a))
      << "the other GPU has the most free";
}

TEST_F(MemoryTest, OutOfMemoryAtStartEvictsTheIdleAndRetriesOnce) {
  LoadWithGpus(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", resources: {vramMiB: 4000}}
  b: {cmd: "srv-b --port ${PORT}", resources: {vramMiB: 3000}}
)yaml",
               {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 4000);
  Release(c, &rc, "a");
  Acquire(c, "b");
  ASSERT_TRUE(Alive("b"));
  Proc("b")->Print("CUDA error: out of memory\n");
  Proc("b")->Exit(ExitStatus::Code(1));
  Settle();
  EXPECT_EQ(StateOf("a"), State::kStopping) << "a is evicted for the retry";
  EXPECT_EQ(Spawns("b"), 1) << "not before a is gone";
  EXPECT_FALSE(rc.Saw("failed b r-b FAILED_PRECONDITION"));
  StopsAndFrees("a");
  EXPECT_EQ(Spawns("b"), 2);
  // The second failure fails the start.
  Proc("b")->Print("CUDA error: out of memory\n");
  Proc("b")->Exit(ExitStatus::Code(1));
  Settle();
  EXPECT_TRUE(rc.Saw("failed b r-b FAILED_PRECONDITION"));
  EXPECT_EQ(Spawns("b"), 2);
}

TEST_F(MemoryTest, WithoutAFootprintTheGroupRulesAloneDecide) {
  LoadWithGpus(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", resources: {}}
  b: {cmd: "srv-b --port ${PORT}", resources: {}}
)yaml",
               {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 1000);
  Release(c, &rc, "a");
  // b is not measured yet: it goes alone, as the implicit group says.
  Acquire(c, "b");
  EXPECT_EQ(StateOf("a"), State::kStopping);
}

TEST_F(MemoryTest, ALaterStartDoesNotTakeMemoryAnEarlierOneWaitsFor) {
  LoadWithGpus(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", resources: {vramMiB: 6000}}
  big: {cmd: "srv-big --port ${PORT}", resources: {vramMiB: 8000}}
  small: {cmd: "srv-small --port ${PORT}", resources: {vramMiB: 2000}}
)yaml",
               {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 6000);
  Release(c, &rc, "a");
  Acquire(c, "big");  // Evicts a; a is stopping.
  ASSERT_EQ(StateOf("a"), State::kStopping);
  // small would fit beside a now (3728 MiB free), but big waits for a's
  // memory on the same GPU, and was first: small must not take it.
  Acquire(c, "small");
  for (int i = 0; i < 3; ++i) clock_.Advance(absl::Milliseconds(100));
  EXPECT_FALSE(Alive("small"));
  EXPECT_FALSE(Alive("big"));
  StopsAndFrees("a");
  EXPECT_TRUE(Alive("big"));
  EXPECT_FALSE(Alive("small")) << "big holds what small would need";
}

TEST_F(MemoryTest, AModelWithoutResourcesIsChargedWhereItWasMeasured) {
  LoadWithGpus(R"yaml(
models:
  plain: {cmd: "srv-plain --port ${PORT}"}
  a: {cmd: "srv-a --port ${PORT}", resources: {vramMiB: 6000, gpus: [0, 1]}}
groups:
  g: {swap: false, members: [plain, a]}
)yaml",
               {10240, 10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "plain", 6000);  // Runs on GPU 0, where CUDA puts it.
  const std::vector<std::string>& env = Proc("plain")->spec.env;
  EXPECT_EQ(std::count_if(env.begin(), env.end(),
                          [](const std::string& e) {
                            return e.rfind("CUDA_VISIBLE_DEVICES=", 0) == 0;
                          }),
            0)
      << "not told where to go";
  Acquire(c, "a");
  ASSERT_TRUE(Alive("a"));
  EXPECT_EQ(Proc("a")->spec.env.back(), "CUDA_VISIBLE_DEVICES=1")
      << "GPU 0 holds plain";
}

// Sleep and wake: a swap's eviction puts a model that can sleep to sleep.
constexpr char kSleepers[] = R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", resources: {vramMiB: 6000},
      sleep: "/sleep?level=1", wake: /wake_up}
  b: {cmd: "srv-b --port ${PORT}", resources: {vramMiB: 6000},
      sleep: "/sleep?level=1", wake: /wake_up}
)yaml";

TEST_F(MemoryTest, AnEvictionPutsItToSleepAndARequestWakesIt) {
  LoadWithGpus(kSleepers, {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 6000);
  Release(c, &rc, "a");
  int pid_a = Proc("a")->pid;
  Acquire(c, "b");
  // a is told to sleep, not stopped: it frees its memory, then answers.
  AnswersSleep("a");
  EXPECT_EQ(StateOf("a"), State::kSleeping);
  EXPECT_TRUE(Proc("a")->signals.empty());
  EXPECT_TRUE(Alive("b"));
  Allocates("b", 6000);
  Healthy("b");
  Release(c, &rc, "b");
  // A request for a wakes it (b goes to sleep first).
  Acquire(c, "a");
  AnswersSleep("b");
  EXPECT_EQ(StateOf("b"), State::kSleeping);
  AnswersWake("a", 6000);
  Healthy("a");
  EXPECT_EQ(StateOf("a"), State::kReady);
  EXPECT_EQ(Proc("a")->pid, pid_a);
  EXPECT_EQ(Spawns("a"), 1) << "woken, not started";
}

TEST_F(MemoryTest, AnAbandonedWakeCompletesInsteadOfStoppingTheProcess) {
  LoadWithGpus(kSleepers, {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 6000);
  Release(c, &rc, "a");
  int pid_a = Proc("a")->pid;
  Acquire(c, "b");
  AnswersSleep("a");
  Allocates("b", 6000);
  Healthy("b");
  Release(c, &rc, "b");
  // A request wakes a, then its client leaves before a is ready.
  RecordingClient gone;
  ClientId g = Connect(&gone);
  Acquire(g, "a");
  AnswersSleep("b");
  ASSERT_EQ(StateOf("a"), State::kStarting);
  scheduler_->Disconnect(g);
  Settle();
  EXPECT_EQ(StateOf("a"), State::kStarting) << "the wake goes on";
  EXPECT_TRUE(Proc("a")->signals.empty());
  AnswersWake("a", 6000);
  Healthy("a");
  EXPECT_EQ(StateOf("a"), State::kReady) << "idle, for the next request";
  EXPECT_EQ(Proc("a")->pid, pid_a);
  // A cold start nobody waits for is still stopped.
  scheduler_->Stop("b", false, [](auto) {});
  Exits("b");
  Settle();
  ClientId g2 = Connect(&gone);
  Acquire(g2, "b");
  AnswersSleep("a");  // Idle a makes room, asleep.
  ASSERT_EQ(StateOf("b"), State::kStarting);
  scheduler_->Disconnect(g2);
  Settle();
  EXPECT_EQ(StateOf("b"), State::kStopping);
}

TEST_F(MemoryTest, AStopOfASleepingModelStopsItsProcess) {
  LoadWithGpus(kSleepers, {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 6000);
  Release(c, &rc, "a");
  Acquire(c, "b");
  AnswersSleep("a");
  ASSERT_EQ(StateOf("a"), State::kSleeping);
  bool stopped = false;
  scheduler_->Stop("a", false, [&stopped](auto) { stopped = true; });
  Settle();
  EXPECT_EQ(StateOf("a"), State::kStopping);
  Exits("a");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(StateOf("a"), State::kStopped);
}

TEST_F(MemoryTest, AModelThatCannotSleepIsStoppedInstead) {
  LoadWithGpus(kSleepers, {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 6000);
  Release(c, &rc, "a");
  Acquire(c, "b");
  AnswersSleep("a", 503);
  EXPECT_EQ(StateOf("a"), State::kStopping);
  StopsAndFrees("a");
  EXPECT_TRUE(Alive("b"));
}

TEST_F(MemoryTest, AStopDuringTheSleepCallStopsIt) {
  LoadWithGpus(kSleepers, {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 6000);
  Release(c, &rc, "a");
  Acquire(c, "b");  // a is going to sleep.
  bool stopped = false;
  scheduler_->Stop("a", false, [&stopped](auto) { stopped = true; });
  Settle();
  AnswersSleep("a");
  EXPECT_EQ(StateOf("a"), State::kStopping) << "the Stop is not lost";
  Exits("a");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(StateOf("a"), State::kStopped);
}

TEST_F(MemoryTest, AnOomRetryGoesOnOnceItsVictimIsAsleep) {
  LoadWithGpus(R"yaml(
models:
  a: {cmd: "srv-a --port ${PORT}", resources: {vramMiB: 4000},
      sleep: "/sleep?level=1", wake: /wake_up}
  b: {cmd: "srv-b --port ${PORT}", resources: {vramMiB: 3000}}
)yaml",
               {10240});
  RecordingClient rc;
  ClientId c = Connect(&rc);
  StartFitting(c, "a", 4000);
  Release(c, &rc, "a");
  Acquire(c, "b");
  ASSERT_TRUE(Alive("b"));
  Proc("b")->Print("CUDA error: out of memory\n");
  Proc("b")->Exit(ExitStatus::Code(1));
  Settle();
  AnswersSleep("a");
  EXPECT_EQ(StateOf("a"), State::kSleeping);
  EXPECT_EQ(Spawns("b"), 2) << "retried once its victim is asleep";
}

}  // namespace
}  // namespace modelplane::scheduler
