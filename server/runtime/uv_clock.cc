#include "server/runtime/uv_clock.h"

#include <cmath>
#include <utility>

namespace modelplane::runtime {
namespace {

// The uv handle and the callback live on the heap until the close callback,
// so the Timer may be destroyed from inside its own callback.
struct TimerState {
  uv_timer_t handle;
  std::function<void()> fn;
};

class UvTimer : public actor::Timer {
 public:
  UvTimer(uv_loop_t* loop, absl::Duration delay, std::function<void()> fn)
      : state_(new TimerState{uv_timer_t{}, std::move(fn)}) {
    uv_timer_init(loop, &state_->handle);
    uv_update_time(loop);  // The cached loop time may be stale.
    state_->handle.data = state_;
    // uv timers have millisecond resolution; round up so a timer never
    // fires early.
    double ms = std::ceil(absl::ToDoubleMilliseconds(delay));
    uv_timer_start(
        &state_->handle,
        [](uv_timer_t* h) {
          auto* s = static_cast<TimerState*>(h->data);
          if (s->fn) std::function<void()>(std::move(s->fn))();
        },
        ms > 0 ? static_cast<uint64_t>(ms) : 0, 0);
  }

  ~UvTimer() override {
    uv_timer_stop(&state_->handle);
    state_->fn = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&state_->handle),
             [](uv_handle_t* h) { delete static_cast<TimerState*>(h->data); });
  }

 private:
  TimerState* state_;
};

}  // namespace

std::unique_ptr<actor::Timer> UvClock::After(absl::Duration delay,
                                             std::function<void()> fn) {
  return std::make_unique<UvTimer>(loop_, delay, std::move(fn));
}

}  // namespace modelplane::runtime
