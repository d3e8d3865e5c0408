// Abseil's lock-order checker in modelplane's binaries.
#ifndef MODELPLANE_COMMON_LOCK_CHECKS_H_
#define MODELPLANE_COMMON_LOCK_CHECKS_H_

#include "absl/synchronization/mutex.h"

namespace modelplane {

// Debian's Abseil is built with its lock-order checker on: a graph lookup
// on every Mutex::Lock. Tests (fastbuild) keep it — it has caught a real
// lock-order inversion; optimized builds (-c opt, NDEBUG) turn it off. Call
// first thing in main, before any thread starts.
inline void SkipLockOrderChecksWhenOptimized() {
#ifdef NDEBUG
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
#endif
}

}  // namespace modelplane

#endif  // MODELPLANE_COMMON_LOCK_CHECKS_H_
