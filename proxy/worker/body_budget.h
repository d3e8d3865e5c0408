// The request bodies every worker holds in memory at once, bounded: a body
// is read whole before it goes upstream (its model is in it), so without a
// bound ten clients each sending the largest body allowed could take
// gigabytes. A body is charged by the bytes that arrived (not by what its
// head declares); past the bound the request is refused with 503 before it
// takes more, and its bytes are read and dropped. The charge is
// given back when the last holder of the body lets it go (the upstream
// write, a retry).
//
//   BodyBudget budget(1 << 30);
//   if (!budget.TryCharge(n)) ... 503 ...;
//   budget.Release(n);
//
// Thread-safe: one for the process, charged from every worker.
#ifndef MODELPLANE_PROXY_WORKER_BODY_BUDGET_H_
#define MODELPLANE_PROXY_WORKER_BODY_BUDGET_H_

#include <atomic>
#include <cstdint>

namespace modelplane::proxy {

class BodyBudget {
 public:
  explicit BodyBudget(uint64_t limit) : limit_(limit) {}

  // Takes `n` bytes of the budget, unless that would pass the bound.
  bool TryCharge(uint64_t n) {
    uint64_t used = used_.load(std::memory_order_relaxed);
    do {
      if (n > limit_ || used > limit_ - n) return false;
    } while (!used_.compare_exchange_weak(used, used + n,
                                          std::memory_order_relaxed));
    return true;
  }
  // Takes `n` whatever the bound (bytes already held, as a filter's output).
  void Charge(uint64_t n) { used_.fetch_add(n, std::memory_order_relaxed); }
  void Release(uint64_t n) { used_.fetch_sub(n, std::memory_order_relaxed); }
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_; }

 private:
  const uint64_t limit_;
  std::atomic<uint64_t> used_{0};
};

}  // namespace modelplane::proxy

#endif  // MODELPLANE_PROXY_WORKER_BODY_BUDGET_H_
