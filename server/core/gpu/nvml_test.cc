// OpenNvml's real dlopen path against tools/fake_nvml's libnvidia-ml.so.1,
// whose state a test directory holds (fake_gpu_state.h).
#include "server/core/gpu/nvml.h"

#include <stdlib.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tools/fake_nvml/fake_gpu_state.h"

namespace modelplane::gpu {
namespace {

constexpr char kFake[] = "tools/fake_nvml/libnvidia-ml.so.1";

std::string MakeDir(const std::string& gpus) {
  std::string dir = absl::StrCat(getenv("TEST_TMPDIR"), "/nvml.XXXXXX");
  char* made = mkdtemp(dir.data());
  EXPECT_NE(made, nullptr);
  std::ofstream(dir + "/gpus") << gpus;
  setenv("FAKE_NVML_DIR", dir.c_str(), 1);
  return dir;
}

TEST(NvmlTest, ReadsGpusAndTheirProcessesMemory) {
  std::string dir = MakeDir("1000 Fake H100\n2000\n");
  std::string error;
  ASSERT_TRUE(fake_gpu::Allocate(dir, getpid(), 1, 300, 0, &error)) << error;
  absl::StatusOr<std::unique_ptr<GpuSource>> nvml = OpenNvml(kFake);
  ASSERT_TRUE(nvml.ok()) << nvml.status();
  absl::StatusOr<GpuSnapshot> snap = (*nvml)->Read();
  ASSERT_TRUE(snap.ok()) << snap.status();
  ASSERT_EQ(snap->gpus.size(), 2u);
  EXPECT_EQ(snap->gpus[0].name, "Fake H100");
  EXPECT_EQ(snap->gpus[0].total_bytes, 1000 * kMiB);
  EXPECT_EQ(snap->gpus[0].used_bytes, 0u);
  EXPECT_EQ(snap->gpus[1].used_bytes, 300 * kMiB);
  EXPECT_FALSE(snap->gpus[1].uuid.empty());
  ASSERT_EQ(snap->processes.size(), 1u);
  EXPECT_EQ(snap->processes[0].pid, getpid());
  EXPECT_EQ(snap->processes[0].gpu, 1);
  EXPECT_EQ(snap->processes[0].used_bytes, 300 * kMiB);
  // Out of memory: refused, and the state says so.
  EXPECT_FALSE(fake_gpu::Allocate(dir, getpid() + 1, 1, 1800, 0, &error));
  EXPECT_NE(error.find("out of memory"), std::string::npos) << error;
}

TEST(NvmlTest, NoLibraryIsUnavailableWithTheReason) {
  absl::StatusOr<std::unique_ptr<GpuSource>> nvml =
      OpenNvml("libnvidia-ml-not-here.so.1");
  ASSERT_FALSE(nvml.ok());
  EXPECT_TRUE(absl::IsUnavailable(nvml.status())) << nvml.status();
  EXPECT_NE(nvml.status().message().find("cannot load"), std::string::npos);
}

TEST(NvmlTest, ADriverThatDoesNotStartIsUnavailable) {
  unsetenv("FAKE_NVML_DIR");  // The fake's "driver not loaded".
  absl::StatusOr<std::unique_ptr<GpuSource>> nvml = OpenNvml(kFake);
  ASSERT_FALSE(nvml.ok());
  EXPECT_TRUE(absl::IsUnavailable(nvml.status())) << nvml.status();
  EXPECT_NE(nvml.status().message().find("nvmlInit"), std::string::npos);
}

}  // namespace
}  // namespace modelplane::gpu
