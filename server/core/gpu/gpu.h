// What the manager knows of the machine's GPUs: a snapshot read from NVML
// (nvml.h) — each GPU's memory and the memory of each process on it — and
// the seam the scheduler reads it through, so that its tests need no GPU.
#ifndef MODELPLANE_SERVER_CORE_GPU_GPU_H_
#define MODELPLANE_SERVER_CORE_GPU_GPU_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace modelplane::gpu {

inline constexpr uint64_t kMiB = 1024 * 1024;

struct GpuInfo {
  int index = 0;  // NVML's index (CUDA_VISIBLE_DEVICES's, in PCI order).
  std::string name;
  std::string uuid;
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;
};

struct GpuProcess {
  int pid = 0;
  int gpu = 0;
  uint64_t used_bytes = 0;
};

struct GpuSnapshot {
  std::vector<GpuInfo> gpus;          // By index.
  std::vector<GpuProcess> processes;  // Compute processes, every GPU.
};

// Where snapshots come from: NVML, or a test's table. Called on the
// scheduler's loop thread.
class GpuSource {
 public:
  virtual ~GpuSource() = default;
  virtual absl::StatusOr<GpuSnapshot> Read() = 0;
};

}  // namespace modelplane::gpu

#endif  // MODELPLANE_SERVER_CORE_GPU_GPU_H_
