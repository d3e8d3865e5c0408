// The state of the fake GPUs that tools/fake_nvml's libnvidia-ml.so.1
// reports and fake_upstream's `--vram-mib` writes: plain files in one
// directory ($FAKE_NVML_DIR), read and changed under an flock so that
// several processes agree.
//
//   gpus        one line per GPU: its total memory in MiB, then optionally
//               its name ("81559 NVIDIA H100 80GB HBM3").
//   proc.<pid>  a process's memory: "<gpu> <MiB> <release lag ms>", then,
//               once the process is seen gone, " <ms since the epoch>" of
//               that moment. Its memory counts until the lag is over after
//               it (a driver frees a dead process's memory a little late).
//   oom.log     one line per allocation refused for lack of memory.
//
// Plain C++ and POSIX (no Abseil): it is linked into a shared library that
// another program dlopens.
#ifndef MODELPLANE_TOOLS_FAKE_NVML_FAKE_GPU_STATE_H_
#define MODELPLANE_TOOLS_FAKE_NVML_FAKE_GPU_STATE_H_

#include <cstdint>
#include <string>
#include <vector>

namespace modelplane::fake_gpu {

struct Gpu {
  uint64_t total_mib = 0;
  std::string name;
};

struct Proc {
  int pid = 0;
  int gpu = 0;
  uint64_t mib = 0;
  int64_t lag_ms = 0;
  int64_t dead_since_ms = 0;  // 0: alive.
};

struct State {
  std::vector<Gpu> gpus;
  std::vector<Proc> procs;  // Those whose memory still counts.
  uint64_t UsedMib(int gpu) const;
};

// The directory named by $FAKE_NVML_DIR, or "" when it is not set.
std::string Dir();

// Reads the state, retiring (deleting) the processes whose memory is free:
// gone, and their lag over. False with `error` when `dir` has no readable
// `gpus` file.
bool Read(const std::string& dir, State* out, std::string* error);

// Registers `mib` MiB of GPU `gpu` for process `pid` (replacing what it
// had: a sleep shrinks it, a wake grows it back), freed `lag_ms` after it
// is seen gone. False with `error` (and a line in oom.log) when the GPU
// has less than `mib` free, or when there is no such GPU.
bool Allocate(const std::string& dir, int pid, int gpu, uint64_t mib,
              int64_t lag_ms, std::string* error);

}  // namespace modelplane::fake_gpu

#endif  // MODELPLANE_TOOLS_FAKE_NVML_FAKE_GPU_STATE_H_
