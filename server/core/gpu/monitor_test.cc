#include "server/core/gpu/monitor.h"

#include <stdlib.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/core/actor/fake_env.h"

namespace modelplane::gpu {
namespace {

// NVML as a table the test writes; `fail` makes reads fail.
class TableSource : public GpuSource {
 public:
  absl::StatusOr<GpuSnapshot> Read() override {
    if (fail) return absl::UnavailableError("GPU is lost");
    return snap;
  }
  GpuSnapshot snap;
  bool fail = false;
};

class MonitorTest : public ::testing::Test {
 protected:
  void Make(std::string state_file = "") {
    auto source = std::make_unique<TableSource>();
    table_ = source.get();
    table_->snap.gpus.push_back(GpuInfo{0, "t", "", 10240 * kMiB, 0});
    MonitorOptions o;
    o.state_file = std::move(state_file);
    o.group_of = [](int pid) { return pid; };
    o.log = [this](const std::string& level, const std::string& line) {
      log_.push_back(level + " " + line);
    };
    monitor_ = std::make_unique<Monitor>(std::move(source), &clock_, o);
  }
  void Holds(int pid, uint64_t mib) {
    table_->snap.processes.push_back(GpuProcess{pid, 0, mib * kMiB});
    table_->snap.gpus[0].used_bytes += mib * kMiB;
  }
  void Unlists(int pid) {
    auto& ps = table_->snap.processes;
    for (auto it = ps.begin(); it != ps.end();) {
      it = it->pid == pid ? ps.erase(it) : it + 1;
    }
  }
  bool Logged(const std::string& part) const {
    for (const std::string& l : log_) {
      if (l.find(part) != std::string::npos) return true;
    }
    return false;
  }
  std::string TempPath(const std::string& name) {
    return absl::StrCat(getenv("TEST_TMPDIR"), "/", name);
  }

  actor::FakeClock clock_;
  TableSource* table_ = nullptr;
  std::unique_ptr<Monitor> monitor_;
  std::vector<std::string> log_;
};

TEST_F(MonitorTest, AttributesMemoryToAModelsProcessGroupAndMeasuresThePeak) {
  Make();
  Holds(100, 3000);
  monitor_->Refresh(absl::ZeroDuration());
  EXPECT_EQ(monitor_->UsedBy(100).at(0), 3000 * kMiB);
  EXPECT_EQ(monitor_->Sample("a", "cmd a", 100), 3000 * kMiB);
  EXPECT_EQ(monitor_->Measured("a", "cmd a"), 3000 * kMiB);
  EXPECT_EQ(monitor_->Measured("a", "cmd other"), 0u) << "per command";
  EXPECT_EQ(monitor_->MeasuredGpus("a", "cmd a"), std::vector<int>{0});
}

TEST_F(MonitorTest, FootprintsSurviveInTheStateFile) {
  std::string path = TempPath("footprints.json");
  Make(path);
  Holds(100, 3000);
  monitor_->Refresh(absl::ZeroDuration());
  monitor_->Sample("a", "cmd a", 100);
  monitor_->OnStarted("a", "cmd a", absl::Milliseconds(1500));
  monitor_.reset();
  Make(path);
  EXPECT_EQ(monitor_->Measured("a", "cmd a"), 3000 * kMiB);
  EXPECT_EQ(monitor_->StartTime("a"), absl::Milliseconds(1500));
}

TEST_F(MonitorTest, ACorruptStateFileIsWarnedAndMeasuredAnew) {
  std::string path = TempPath("corrupt.json");
  std::ofstream(path) << "{\"models\": [1, 2";
  Make(path);
  EXPECT_TRUE(Logged("not a footprint file")) << log_.size();
  EXPECT_EQ(monitor_->Measured("a", "cmd a"), 0u);
  // Entries of the wrong shape are skipped, the others kept.
  std::ofstream(path) << R"({"version": 1, "models": {"a": {"command": 5},
      "b": {"command": "cmd b", "vramBytes": 1048576, "gpus": ["x", 0]}}})";
  monitor_.reset();
  Make(path);
  EXPECT_EQ(monitor_->Measured("a", "cmd a"), 0u);
  EXPECT_EQ(monitor_->Measured("b", "cmd b"), kMiB);
  EXPECT_EQ(monitor_->MeasuredGpus("b", "cmd b"), std::vector<int>{0});
}

TEST_F(MonitorTest, AStateFileThatCannotBeWrittenKeepsFootprintsInMemory) {
  Make("/nonexistent-dir/footprints.json");
  Holds(100, 3000);
  monitor_->Refresh(absl::ZeroDuration());
  monitor_->Sample("a", "cmd a", 100);
  EXPECT_TRUE(Logged("footprints are kept in memory only"));
  EXPECT_EQ(monitor_->Measured("a", "cmd a"), 3000 * kMiB);
}

TEST_F(MonitorTest, TheDriverWaitEndsWhenTheMemoryIsBack) {
  Make();
  Holds(100, 6000);
  monitor_->Refresh(absl::ZeroDuration());
  monitor_->Sample("a", "cmd a", 100);
  Unlists(100);  // Gone; the driver still counts its memory as used.
  monitor_->OnStopped("a", 100, 6000 * kMiB, absl::Seconds(5));
  EXPECT_EQ(monitor_->Gpus()[0].releasing, 6000 * kMiB);
  clock_.Advance(absl::Milliseconds(300));
  table_->snap.gpus[0].used_bytes = 0;
  monitor_->Refresh(absl::ZeroDuration());
  EXPECT_EQ(monitor_->Gpus()[0].releasing, 0u);
  EXPECT_TRUE(monitor_->Trusted(0));
  // The wait it was, for an operator and tools/gpu_check.sh.
  EXPECT_TRUE(
      Logged("info GPU 0: a stopped model's 6000 MiB came back in "
             "300 ms"));
}

// Back once at least 90 % of what the model held is free again (a driver
// may keep a little for itself a while).
TEST_F(MonitorTest, TheMemoryIsBackAtNinetyPercent) {
  Make();
  Holds(100, 6000);
  monitor_->Refresh(absl::ZeroDuration());
  monitor_->Sample("a", "cmd a", 100);
  Unlists(100);
  monitor_->OnStopped("a", 100, 6000 * kMiB, absl::Seconds(5));
  table_->snap.gpus[0].used_bytes = 700 * kMiB;  // 88 % back.
  monitor_->Refresh(absl::ZeroDuration());
  EXPECT_EQ(monitor_->Gpus()[0].releasing, 6000 * kMiB);
  table_->snap.gpus[0].used_bytes = 500 * kMiB;  // 92 % back.
  monitor_->Refresh(absl::ZeroDuration());
  EXPECT_EQ(monitor_->Gpus()[0].releasing, 0u);
}

TEST_F(MonitorTest, ADeadProcessStillListedIsWaitedFor) {
  Make();
  Holds(100, 6000);
  monitor_->Refresh(absl::ZeroDuration());
  monitor_->Sample("a", "cmd a", 100);
  // Reaped, but NVML still lists the pid with its memory.
  monitor_->OnStopped("a", 100, 6000 * kMiB, absl::Seconds(5));
  EXPECT_EQ(monitor_->Gpus()[0].releasing, 6000 * kMiB);
  Unlists(100);
  table_->snap.gpus[0].used_bytes = 0;
  monitor_->Refresh(absl::ZeroDuration());
  EXPECT_EQ(monitor_->Gpus()[0].releasing, 0u);
}

TEST_F(MonitorTest, PastTheBoundUntrustedThenTakenAsLost) {
  Make();
  Holds(100, 6000);
  Holds(200, 1000);
  monitor_->Refresh(absl::ZeroDuration());
  monitor_->Sample("a", "cmd a", 100);
  monitor_->Sample("b", "cmd b", 200);
  Unlists(100);
  Unlists(200);
  monitor_->OnStopped("a", 100, 0, absl::Seconds(5));
  monitor_->OnStopped("b", 200, 0, absl::Seconds(5));
  clock_.Advance(absl::Seconds(6));  // Polls past the bound.
  EXPECT_FALSE(monitor_->Trusted(0));
  EXPECT_EQ(monitor_->wait_timeouts().at(0), 2u);
  EXPECT_TRUE(Logged("has not given back 6000 MiB"));
  // b's memory comes back, a's does not: still untrusted.
  table_->snap.gpus[0].used_bytes -= 1000 * kMiB;
  clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(monitor_->Trusted(0));
  clock_.Advance(absl::Seconds(30));
  EXPECT_TRUE(monitor_->Trusted(0));
  EXPECT_TRUE(Logged("held by no process is taken as lost"));
}

TEST_F(MonitorTest, ReadsThatFailKeepTheLastSnapshotAndStillTimeOut) {
  Make();
  Holds(100, 6000);
  monitor_->Refresh(absl::ZeroDuration());
  monitor_->Sample("a", "cmd a", 100);
  monitor_->OnStopped("a", 100, 0, absl::Seconds(2));
  table_->fail = true;
  clock_.Advance(absl::Seconds(3));
  EXPECT_TRUE(Logged("NVML read failed: GPU is lost"));
  EXPECT_FALSE(monitor_->Trusted(0)) << "no read says the memory is back";
  EXPECT_EQ(monitor_->snapshot().gpus.size(), 1u);
  table_->fail = false;
  Unlists(100);
  table_->snap.gpus[0].used_bytes = 0;
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(monitor_->Trusted(0));
}

}  // namespace
}  // namespace modelplane::gpu
