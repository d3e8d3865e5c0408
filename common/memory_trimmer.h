// Gives freed heap memory back to the system, off the threads that serve.
//
// glibc keeps what a burst of allocations freed (thousands of streams that
// closed, a large request body): its arenas grow and stay, so a process
// that served a burst once keeps that footprint for good. malloc_trim(0)
// returns the free pages of every arena; it walks them all, so it runs on a
// thread of its own, at most once per `min_interval`. In a binary that
// links jemalloc (modelproxy, modelplane: third_party/jemalloc_conf.cc) the
// same request purges every jemalloc arena instead.
//
//   MemoryTrimmer trimmer;
//   ... a burst ended:  trimmer.Request();   // Any thread; never blocks.
//
// Thread-safe. The destructor stops the thread (a trim in progress ends
// first).
#ifndef MODELPLANE_COMMON_MEMORY_TRIMMER_H_
#define MODELPLANE_COMMON_MEMORY_TRIMMER_H_

#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace modelplane {

class MemoryTrimmer {
 public:
  explicit MemoryTrimmer(absl::Duration min_interval = absl::Seconds(1));
  ~MemoryTrimmer();
  MemoryTrimmer(const MemoryTrimmer&) = delete;
  MemoryTrimmer& operator=(const MemoryTrimmer&) = delete;

  // A trim soon (requests coalesce).
  void Request();
  // Trims done so far (tests).
  uint64_t trims();

 private:
  void Run();

  absl::Duration min_interval_;
  absl::Mutex mu_;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t trims_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace modelplane

#endif  // MODELPLANE_COMMON_MEMORY_TRIMMER_H_
