// A one-shot libuv timer for deadlines that move on every request but seldom
// expire: a connection's idle, header and body timeouts, an upstream's
// response-header and keep-alive timeouts.
//
// Moving the deadline later, or clearing it, makes no libuv call: the libuv
// timer stays where it was and, when it fires before the deadline, starts
// again for what is left. Only a deadline earlier than the armed one restarts
// it. A keep-alive connection serving a request every millisecond thus
// touches the loop's timer heap about once per timeout period instead of
// twice per request (nginx keeps its timers lazily for the same reason).
//
//   uv::LazyTimer t;
//   t.Init(loop, OnTimer, this);  // OnTimer(void* data): data is this.
//   t.Arm(30000);                 // Fires in 30 s ...
//   t.Disarm();                   // ... or not at all.
//   t.Close();                    // Its callback never runs after this.
//
// The libuv timer is a uv::Handle (handle.h): the LazyTimer's owner may go
// right after Close(), or its destruction, which closes it.
//
// Deadlines are on the loop's clock (uv_now), which libuv updates after each
// poll. Single-threaded: the loop's thread only.
#ifndef MODELPLANE_COMMON_UV_LAZY_TIMER_H_
#define MODELPLANE_COMMON_UV_LAZY_TIMER_H_

#include <uv.h>

#include <cstdint>

#include "common/uv/handle.h"

namespace modelplane::uv {

class LazyTimer {
 public:
  using Callback = void (*)(void* data);

  LazyTimer() = default;
  LazyTimer(const LazyTimer&) = delete;
  LazyTimer& operator=(const LazyTimer&) = delete;

  // `data` is what the callback is given.
  void Init(uv_loop_t* loop, Callback cb, void* data) {
    timer_.Init(loop, uv_timer_init, this);
    cb_ = cb;
    data_ = data;
  }

  // The callback runs once `delay_ms` from now (at least 1 ms), unless
  // re-armed or disarmed first.
  void Arm(uint64_t delay_ms) {
    if (!timer_) return;  // Closed.
    if (delay_ms == 0) delay_ms = 1;
    deadline_ = uv_now(timer_.get()->loop) + delay_ms;
    armed_ = true;
    if (!started_ || due_ > deadline_) {
      uv_timer_start(timer_.get(), OnFire, delay_ms, 0);
      started_ = true;
      due_ = deadline_;
    }
  }

  void Disarm() { armed_ = false; }

  bool armed() const { return armed_; }

  // Closes the libuv timer: the callback never runs again.
  void Close() {
    armed_ = false;
    timer_.Close();
  }

  // The libuv timer (null once closed), e.g. for uv_timer_get_due_in.
  uv_timer_t* timer() const { return timer_.get(); }

 private:
  static void OnFire(uv_timer_t* t) {
    auto* self = static_cast<LazyTimer*>(t->data);
    self->started_ = false;
    if (!self->armed_) return;
    uint64_t now = uv_now(t->loop);
    if (now < self->deadline_) {  // Moved later since it was started.
      uv_timer_start(t, OnFire, self->deadline_ - now, 0);
      self->started_ = true;
      self->due_ = self->deadline_;
      return;
    }
    self->armed_ = false;
    self->cb_(self->data_);
  }

  Handle<uv_timer_t> timer_;
  Callback cb_ = nullptr;
  void* data_ = nullptr;
  uint64_t deadline_ = 0;  // Loop time the callback is due (when armed_).
  uint64_t due_ = 0;       // Loop time the libuv timer fires (when started_).
  bool armed_ = false;
  bool started_ = false;
};

}  // namespace modelplane::uv

#endif  // MODELPLANE_COMMON_UV_LAZY_TIMER_H_
