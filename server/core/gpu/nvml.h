// GPU discovery through NVML, loaded at run time: dlopen("libnvidia-ml.so.1")
// (the driver's library; the build needs no CUDA). A machine without it —
// no NVIDIA driver, or a container without the library — gets a status
// saying why, and the manager runs with the GPU features off.
//
// Tests run this same path against tools/fake_nvml's libnvidia-ml.so.1 by
// putting its directory on LD_LIBRARY_PATH.
#ifndef MODELPLANE_SERVER_CORE_GPU_NVML_H_
#define MODELPLANE_SERVER_CORE_GPU_NVML_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/core/gpu/gpu.h"

namespace modelplane::gpu {

inline constexpr char kNvmlLibrary[] = "libnvidia-ml.so.1";

// Loads `library` and initializes NVML. The source reads every GPU's
// memory and its compute processes on each Read (a few NVML calls per GPU;
// NVML is thread-safe, the source is not: one caller at a time). Errors:
// Unavailable when the library cannot be loaded or NVML does not start
// (its message says which), FailedPrecondition when a function the
// manager needs is missing.
absl::StatusOr<std::unique_ptr<GpuSource>> OpenNvml(
    const std::string& library = kNvmlLibrary);

}  // namespace modelplane::gpu

#endif  // MODELPLANE_SERVER_CORE_GPU_NVML_H_
