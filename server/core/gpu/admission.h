// Admit to fit: whether a model's start fits the free memory of its GPUs,
// and if not, which idle models to evict for it (docs/gpu.md). A pure
// function of a snapshot, so that it is table-tested and benchmarked alone;
// the scheduler asks it for each start it considers (gpu_monitor.h builds
// the inputs).
//
// Memory a GPU can give a start:
//
//   usable    = total × (1 − reserve)
//   other     = NVML's used − what the residents' processes use (another
//               program's, or a stopped model's that the driver has not
//               freed yet)
//   available = usable − other − Σ over residents of max(footprint, used)
//
// A resident is charged its footprint (declared or measured) even before
// its process has allocated it: a model still starting holds its place.
#ifndef MODELPLANE_SERVER_CORE_GPU_ADMISSION_H_
#define MODELPLANE_SERVER_CORE_GPU_ADMISSION_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace modelplane::gpu {

struct GpuState {
  int index = 0;
  uint64_t total = 0;  // Bytes.
  uint64_t used = 0;   // NVML's, every process.
  // Memory of stopped models the driver has yet to give back (within the
  // wait's bound): no start goes to this GPU until it is back, and it
  // counts as coming free.
  uint64_t releasing = 0;
  // False after the wait for a stopped model's memory timed out: no start
  // goes here until that memory reappears.
  bool trusted = true;
};

// A model with a process (or a start decided) on the GPUs.
struct Resident {
  enum class Kind {
    kIdle,     // READY with no lease holder: may be evicted for memory.
    kBusy,     // Holders, or starting: never evicted for memory.
    kLeaving,  // Being stopped or evicted already: its memory comes free.
  };
  std::string id;
  Kind kind = Kind::kBusy;
  // kBusy by its lease holders alone (READY): a request that has waited
  // its maxQueueWait may have it evicted, its leases revoked first, as the
  // group rules do. A start in progress is never evicted.
  bool revocable = false;
  std::vector<int> gpus;         // Where it runs.
  uint64_t footprint = 0;        // Bytes per GPU; 0: not known.
  std::map<int, uint64_t> used;  // GPU -> bytes its processes use now.
  // Eviction order: awake before asleep, least recently used first, then
  // the quickest to start again.
  absl::Time last_used;
  absl::Duration start_time;
  bool asleep = false;
};

struct Request {
  std::string id;
  uint64_t footprint = 0;    // Bytes per GPU (> 0).
  std::vector<int> allowed;  // GPUs it may use; empty: any.
  int count = 1;             // How many at once.
  // It has waited its maxQueueWait: revocable residents may be evicted for
  // it, after the idle ones.
  bool overdue = false;
};

struct Decision {
  enum class Kind {
    kAdmit,  // Start it on `gpus`.
    kEvict,  // Evict `victims` (idle; revocable too when overdue), then
             // ask again.
    kWait,   // Memory is coming free (a stop, the driver), or only busy
             // models hold it: ask again later.
    kNever,  // It cannot fit on its GPUs even empty: `why`.
  };
  Kind kind = Kind::kWait;
  std::vector<int> gpus;
  std::vector<std::string> victims;
  std::string why;  // For kWait and kNever: what it waits for, or lacks.
  // kWait for memory coming free on `gpus` (not for busy models): later
  // starts in the queue do not take it meanwhile.
  bool coming = false;
};

// `reserve`: the fraction of each GPU kept free (0.05).
Decision Decide(const std::vector<GpuState>& gpus,
                const std::vector<Resident>& residents, const Request& request,
                double reserve);

// The memory a start could have on `gpu` now (may be negative: over).
int64_t Available(const GpuState& gpu, const std::vector<Resident>& residents,
                  double reserve);

}  // namespace modelplane::gpu

#endif  // MODELPLANE_SERVER_CORE_GPU_ADMISSION_H_
