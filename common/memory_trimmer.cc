#include "common/memory_trimmer.h"

#include <malloc.h>

#include "absl/time/clock.h"

// jemalloc's control interface when the binary links jemalloc
// (third_party:jemalloc); null with glibc's malloc (and the sanitizers').
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp,
                       void* newp, size_t newlen) __attribute__((weak));

namespace modelplane {
namespace {

void GiveBack() {
  if (mallctl != nullptr) {
    // Every arena's unused pages (4096: jemalloc's MALLCTL_ARENAS_ALL).
    mallctl("arena.4096.purge", nullptr, nullptr, nullptr, 0);
    return;
  }
  malloc_trim(0);
}

}  // namespace

MemoryTrimmer::MemoryTrimmer(absl::Duration min_interval)
    : min_interval_(min_interval), thread_([this] { Run(); }) {}

MemoryTrimmer::~MemoryTrimmer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void MemoryTrimmer::Request() {
  absl::MutexLock lock(&mu_);
  requested_ = true;
}

uint64_t MemoryTrimmer::trims() {
  absl::MutexLock lock(&mu_);
  return trims_;
}

void MemoryTrimmer::Run() {
  absl::Time last = absl::InfinitePast();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](MemoryTrimmer* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->mu_) {
            return t->requested_ || t->stopping_;
          },
          this));
      if (stopping_) return;
    }
    // Not more often than min_interval: a steady trickle of closing streams
    // must not turn into a trim each.
    absl::Duration wait = last + min_interval_ - absl::Now();
    if (wait > absl::ZeroDuration()) {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), wait);
      if (stopping_) return;
    }
    {
      absl::MutexLock lock(&mu_);
      requested_ = false;
    }
    GiveBack();
    last = absl::Now();
    absl::MutexLock lock(&mu_);
    ++trims_;
  }
}

}  // namespace modelplane
