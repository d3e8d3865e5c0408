#include "server/core/gpu/nvml.h"

#include <dlfcn.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace modelplane::gpu {
namespace {

// NVML's ABI (nvml.h): results are an int enum, devices opaque pointers.
using NvmlReturn = int;
using NvmlDevice = void*;
constexpr NvmlReturn kNvmlSuccess = 0;
constexpr NvmlReturn kNvmlInsufficientSize = 7;

struct NvmlMemory {
  unsigned long long total;  // NOLINT(runtime/int): NVML's ABI.
  unsigned long long free;   // NOLINT(runtime/int)
  unsigned long long used;   // NOLINT(runtime/int)
};

// nvmlProcessInfo_t of the _v2 and _v3 queries (same layout).
struct NvmlProcessInfo {
  unsigned int pid;
  unsigned long long used_gpu_memory;  // NOLINT(runtime/int)
  unsigned int gpu_instance_id;
  unsigned int compute_instance_id;
};
// usedGpuMemory when the driver cannot tell (Windows WDDM, some containers).
constexpr unsigned long long kNotAvailable = ~0ULL;  // NOLINT(runtime/int)

struct Api {
  NvmlReturn (*init)();
  NvmlReturn (*shutdown)();
  const char* (*error_string)(NvmlReturn);
  NvmlReturn (*count)(unsigned int*);
  NvmlReturn (*handle)(unsigned int, NvmlDevice*);
  NvmlReturn (*name)(NvmlDevice, char*, unsigned int);
  NvmlReturn (*uuid)(NvmlDevice, char*, unsigned int);
  NvmlReturn (*memory)(NvmlDevice, NvmlMemory*);
  NvmlReturn (*processes)(NvmlDevice, unsigned int*, NvmlProcessInfo*);
};

class NvmlSource : public GpuSource {
 public:
  NvmlSource(void* library, Api api) : library_(library), api_(api) {}
  ~NvmlSource() override {
    api_.shutdown();
    dlclose(library_);
  }

  absl::StatusOr<GpuSnapshot> Read() override {
    GpuSnapshot snap;
    unsigned int n = 0;
    if (NvmlReturn r = api_.count(&n); r != kNvmlSuccess) {
      return Error("nvmlDeviceGetCount", r);
    }
    for (unsigned int i = 0; i < n; ++i) {
      NvmlDevice device = nullptr;
      if (NvmlReturn r = api_.handle(i, &device); r != kNvmlSuccess) {
        return Error("nvmlDeviceGetHandleByIndex", r);
      }
      GpuInfo g;
      g.index = static_cast<int>(i);
      char text[96] = {};
      if (api_.name(device, text, sizeof(text)) == kNvmlSuccess) g.name = text;
      memset(text, 0, sizeof(text));
      if (api_.uuid(device, text, sizeof(text)) == kNvmlSuccess) g.uuid = text;
      NvmlMemory m{};
      if (NvmlReturn r = api_.memory(device, &m); r != kNvmlSuccess) {
        return Error("nvmlDeviceGetMemoryInfo", r);
      }
      g.total_bytes = m.total;
      g.used_bytes = m.used;
      snap.gpus.push_back(std::move(g));
      // The count may grow between the two calls: ask again, bounded.
      for (int attempt = 0; attempt < 4; ++attempt) {
        unsigned int count = static_cast<unsigned int>(infos_.size());
        NvmlReturn r = api_.processes(device, &count, infos_.data());
        if (r == kNvmlInsufficientSize) {
          infos_.resize(count + 8);
          continue;
        }
        if (r != kNvmlSuccess) {
          return Error("nvmlDeviceGetComputeRunningProcesses", r);
        }
        for (unsigned int k = 0; k < count; ++k) {
          const NvmlProcessInfo& p = infos_[k];
          if (p.used_gpu_memory == kNotAvailable) continue;
          snap.processes.push_back(GpuProcess{
              static_cast<int>(p.pid), static_cast<int>(i), p.used_gpu_memory});
        }
        break;
      }
    }
    return snap;
  }

 private:
  absl::Status Error(const char* call, NvmlReturn r) {
    return absl::UnavailableError(
        absl::StrCat(call, ": ", api_.error_string(r), " (", r, ")"));
  }

  void* library_;
  Api api_;
  std::vector<NvmlProcessInfo> infos_ = std::vector<NvmlProcessInfo>(16);
};

}  // namespace

absl::StatusOr<std::unique_ptr<GpuSource>> OpenNvml(
    const std::string& library) {
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return absl::UnavailableError(
        absl::StrCat("cannot load ", library, ": ", why ? why : "?"));
  }
  Api api{};
  std::string missing;
  auto find = [&](auto* fn, const char* name, const char* fallback = nullptr) {
    void* sym = dlsym(handle, name);
    if (sym == nullptr && fallback != nullptr) sym = dlsym(handle, fallback);
    if (sym == nullptr)
      absl::StrAppend(&missing, missing.empty() ? "" : ", ", name);
    *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(sym);
  };
  find(&api.init, "nvmlInit_v2");
  find(&api.shutdown, "nvmlShutdown");
  find(&api.error_string, "nvmlErrorString");
  find(&api.count, "nvmlDeviceGetCount_v2");
  find(&api.handle, "nvmlDeviceGetHandleByIndex_v2");
  find(&api.name, "nvmlDeviceGetName");
  find(&api.uuid, "nvmlDeviceGetUUID");
  find(&api.memory, "nvmlDeviceGetMemoryInfo");
  find(&api.processes, "nvmlDeviceGetComputeRunningProcesses_v3",
       "nvmlDeviceGetComputeRunningProcesses_v2");
  if (!missing.empty()) {
    dlclose(handle);
    return absl::FailedPreconditionError(
        absl::StrCat(library, " lacks ", missing));
  }
  if (NvmlReturn r = api.init(); r != kNvmlSuccess) {
    std::string why = api.error_string(r);
    dlclose(handle);
    return absl::UnavailableError(
        absl::StrCat("nvmlInit: ", why, " (", r, ")"));
  }
  return std::unique_ptr<GpuSource>(new NvmlSource(handle, api));
}

}  // namespace modelplane::gpu
