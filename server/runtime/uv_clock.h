// actor::Clock on a libuv loop: wall-clock Now() (for timestamps users see)
// and uv_timer timers (monotonic, so a clock step never fires or delays them).
#ifndef MODELPLANE_SERVER_RUNTIME_UV_CLOCK_H_
#define MODELPLANE_SERVER_RUNTIME_UV_CLOCK_H_

#include <uv.h>

#include "server/core/actor/env.h"

namespace modelplane::runtime {

class UvClock : public actor::Clock {
 public:
  // `loop` must outlive every timer made here. Loop thread only.
  explicit UvClock(uv_loop_t* loop) : loop_(loop) {}

  absl::Time Now() override { return absl::Now(); }
  std::unique_ptr<actor::Timer> After(absl::Duration delay,
                                      std::function<void()> fn) override;

 private:
  uv_loop_t* loop_;
};

}  // namespace modelplane::runtime

#endif  // MODELPLANE_SERVER_RUNTIME_UV_CLOCK_H_
