// libnvidia-ml.so.1 for tests on machines with no GPU: the NVML functions
// modelmanager calls (server/core/gpu/nvml.cc), answering from the fake GPU
// state in $FAKE_NVML_DIR (fake_gpu_state.h) that fake_upstream processes
// write. modelmanager loads it by its real dlopen path when a test puts
// this library's directory on LD_LIBRARY_PATH.
//
// The types are NVML's ABI (nvml.h, CUDA 12): an enum for the result, an
// opaque pointer per device, three 64-bit counters of memory in bytes, and
// the four-field process record of the _v2 and _v3 process queries.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "tools/fake_nvml/fake_gpu_state.h"

namespace {

using modelplane::fake_gpu::State;

enum Result {
  kSuccess = 0,
  kUninitialized = 1,
  kInvalidArgument = 2,
  kInsufficientSize = 7,
  kDriverNotLoaded = 9,
  kUnknown = 999,
};

struct Memory {
  unsigned long long total;  // NOLINT(runtime/int): NVML's ABI.
  unsigned long long free;   // NOLINT(runtime/int)
  unsigned long long used;   // NOLINT(runtime/int)
};

struct ProcessInfo {
  unsigned int pid;
  unsigned long long used_gpu_memory;  // NOLINT(runtime/int)
  unsigned int gpu_instance_id;
  unsigned int compute_instance_id;
};

constexpr unsigned long long kMiB = 1024ULL * 1024;  // NOLINT(runtime/int)

int g_inits = 0;

// A device handle is its index + 1 (never null).
void* Handle(unsigned int index) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(index) + 1);
}
int IndexOf(void* device) {
  return static_cast<int>(reinterpret_cast<uintptr_t>(device)) - 1;
}

bool ReadState(State* state) {
  std::string error;
  return modelplane::fake_gpu::Read(modelplane::fake_gpu::Dir(), state, &error);
}

// The state and the device's index, or an error result.
int Device(void* device, State* state, int* index) {
  if (g_inits == 0) return kUninitialized;
  if (!ReadState(state)) return kUnknown;
  *index = IndexOf(device);
  if (*index < 0 || *index >= static_cast<int>(state->gpus.size())) {
    return kInvalidArgument;
  }
  return kSuccess;
}

int CopyString(const std::string& s, char* out, unsigned int length) {
  if (out == nullptr) return kInvalidArgument;
  if (s.size() + 1 > length) return kInsufficientSize;
  memcpy(out, s.c_str(), s.size() + 1);
  return kSuccess;
}

int RunningProcesses(void* device, unsigned int* count, ProcessInfo* infos) {
  State state;
  int index;
  if (count == nullptr) return kInvalidArgument;
  if (int r = Device(device, &state, &index); r != kSuccess) return r;
  unsigned int n = 0;
  for (const auto& p : state.procs) {
    if (p.gpu == index && p.dead_since_ms == 0) ++n;
  }
  if (infos == nullptr || *count < n) {
    *count = n;
    return n == 0 ? kSuccess : kInsufficientSize;
  }
  unsigned int i = 0;
  for (const auto& p : state.procs) {
    if (p.gpu != index || p.dead_since_ms != 0) continue;
    infos[i++] = ProcessInfo{static_cast<unsigned int>(p.pid), p.mib * kMiB,
                             0xFFFFFFFFu, 0xFFFFFFFFu};
  }
  *count = n;
  return kSuccess;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int nvmlInit_v2() {
  if (modelplane::fake_gpu::Dir().empty()) return kDriverNotLoaded;
  State state;
  if (!ReadState(&state)) return kDriverNotLoaded;
  ++g_inits;
  return kSuccess;
}

__attribute__((visibility("default"))) int nvmlShutdown() {
  if (g_inits == 0) return kUninitialized;
  --g_inits;
  return kSuccess;
}

__attribute__((visibility("default"))) const char* nvmlErrorString(int r) {
  switch (r) {
    case kSuccess:
      return "Success";
    case kUninitialized:
      return "Uninitialized";
    case kInvalidArgument:
      return "Invalid Argument";
    case kInsufficientSize:
      return "Insufficient Size";
    case kDriverNotLoaded:
      return "Driver Not Loaded (fake NVML: FAKE_NVML_DIR has no gpus file)";
    default:
      return "Unknown Error";
  }
}

__attribute__((visibility("default"))) int nvmlSystemGetDriverVersion(
    char* version, unsigned int length) {
  return CopyString("fake-nvml", version, length);
}

__attribute__((visibility("default"))) int nvmlDeviceGetCount_v2(
    unsigned int* count) {
  if (g_inits == 0) return kUninitialized;
  if (count == nullptr) return kInvalidArgument;
  State state;
  if (!ReadState(&state)) return kUnknown;
  *count = static_cast<unsigned int>(state.gpus.size());
  return kSuccess;
}

__attribute__((visibility("default"))) int nvmlDeviceGetHandleByIndex_v2(
    unsigned int index, void** device) {
  if (g_inits == 0) return kUninitialized;
  if (device == nullptr) return kInvalidArgument;
  State state;
  if (!ReadState(&state)) return kUnknown;
  if (index >= state.gpus.size()) return kInvalidArgument;
  *device = Handle(index);
  return kSuccess;
}

__attribute__((visibility("default"))) int nvmlDeviceGetName(
    void* device, char* name, unsigned int length) {
  State state;
  int index;
  if (int r = Device(device, &state, &index); r != kSuccess) return r;
  return CopyString(state.gpus[index].name, name, length);
}

__attribute__((visibility("default"))) int nvmlDeviceGetUUID(
    void* device, char* uuid, unsigned int length) {
  State state;
  int index;
  if (int r = Device(device, &state, &index); r != kSuccess) return r;
  char text[64];
  snprintf(text, sizeof(text), "GPU-fake0000-0000-0000-0000-%012d", index);
  return CopyString(text, uuid, length);
}

__attribute__((visibility("default"))) int nvmlDeviceGetMemoryInfo(
    void* device, Memory* memory) {
  State state;
  int index;
  if (memory == nullptr) return kInvalidArgument;
  if (int r = Device(device, &state, &index); r != kSuccess) return r;
  unsigned long long total = state.gpus[index].total_mib * kMiB;  // NOLINT
  unsigned long long used = state.UsedMib(index) * kMiB;          // NOLINT
  *memory = Memory{total, used > total ? 0 : total - used, used};
  return kSuccess;
}

__attribute__((visibility("default"))) int
nvmlDeviceGetComputeRunningProcesses_v3(void* device, unsigned int* count,
                                        ProcessInfo* infos) {
  return RunningProcesses(device, count, infos);
}

__attribute__((visibility("default"))) int
nvmlDeviceGetComputeRunningProcesses_v2(void* device, unsigned int* count,
                                        ProcessInfo* infos) {
  return RunningProcesses(device, count, infos);
}

}  // extern "C"
