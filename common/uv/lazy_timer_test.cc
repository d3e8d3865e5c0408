#include "common/uv/lazy_timer.h"

#include <uv.h>

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace modelplane::uv {
namespace {

// A loop, a LazyTimer on it, and the loop times its callback ran at.
class LazyTimerTest : public ::testing::Test {
 public:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    timer_.Init(&loop_, OnTimer, this);
  }
  void TearDown() override {
    timer_.Close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  static void OnTimer(void* data) {
    auto* self = static_cast<LazyTimerTest*>(data);
    self->fired_.push_back(uv_now(&self->loop_));
    if (self->rearm_ms_ != 0) {
      uint64_t ms = self->rearm_ms_;
      self->rearm_ms_ = 0;
      self->timer_.Arm(ms);
    }
  }
  // Runs `fn` on the loop `ms` from now.
  void After(uint64_t ms, void (*fn)(LazyTimerTest*)) {
    after_fn_ = fn;
    uv_timer_init(&loop_, &after_);
    after_.data = this;
    uv_timer_start(
        &after_,
        [](uv_timer_t* t) {
          auto* self = static_cast<LazyTimerTest*>(t->data);
          self->after_fn_(self);
          uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
        },
        ms, 0);
  }
  uint64_t DueIn() { return uv_timer_get_due_in(timer_.timer()); }

  uv_loop_t loop_;
  LazyTimer timer_;
  std::vector<uint64_t> fired_;
  uint64_t rearm_ms_ = 0;
  uv_timer_t after_;
  void (*after_fn_)(LazyTimerTest*) = nullptr;
  uint64_t moved_at_ = 0;
};

TEST_F(LazyTimerTest, FiresOnceAtItsDeadline) {
  uv_update_time(&loop_);
  uint64_t start = uv_now(&loop_);
  timer_.Arm(20);
  EXPECT_TRUE(timer_.armed());
  uv_run(&loop_, UV_RUN_DEFAULT);
  ASSERT_EQ(fired_.size(), 1u);
  EXPECT_GE(fired_[0], start + 20);
  EXPECT_FALSE(timer_.armed());
}

TEST_F(LazyTimerTest, MovingLaterLeavesTheLibuvTimerAndFiresAtTheNewDeadline) {
  uv_update_time(&loop_);
  timer_.Arm(20);
  timer_.Arm(60);  // Later: no restart, the libuv timer still fires in 20.
  EXPECT_LE(DueIn(), 20u);
  uint64_t start = uv_now(&loop_);
  uv_run(&loop_, UV_RUN_DEFAULT);
  ASSERT_EQ(fired_.size(), 1u);  // Not at 20: it went on for what was left.
  EXPECT_GE(fired_[0], start + 60);
}

TEST_F(LazyTimerTest, MovingLaterWhileWaitingFiresOnceAfterTheMove) {
  uv_update_time(&loop_);
  timer_.Arm(30);
  After(10, [](LazyTimerTest* t) {
    t->moved_at_ = uv_now(&t->loop_);
    t->timer_.Arm(50);
  });
  uv_run(&loop_, UV_RUN_DEFAULT);
  ASSERT_EQ(fired_.size(), 1u);
  EXPECT_GE(fired_[0], moved_at_ + 50);
}

TEST_F(LazyTimerTest, MovingEarlierRestartsIt) {
  uv_update_time(&loop_);
  timer_.Arm(60000);
  EXPECT_GT(DueIn(), 1000u);
  timer_.Arm(10);
  EXPECT_LE(DueIn(), 10u);
  uv_run(&loop_, UV_RUN_DEFAULT);  // Returns: nothing waits a minute.
  EXPECT_EQ(fired_.size(), 1u);
}

TEST_F(LazyTimerTest, DisarmedNeverFires) {
  timer_.Arm(10);
  timer_.Disarm();
  EXPECT_FALSE(timer_.armed());
  uv_run(&loop_, UV_RUN_DEFAULT);  // The libuv timer fires, finds nothing.
  EXPECT_TRUE(fired_.empty());
  // Armed again after that: fires.
  timer_.Arm(5);
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_EQ(fired_.size(), 1u);
}

TEST_F(LazyTimerTest, DisarmedThenArmedFiresAtTheNewDeadline) {
  uv_update_time(&loop_);
  timer_.Arm(10);
  timer_.Disarm();
  uint64_t start = uv_now(&loop_);
  timer_.Arm(40);
  uv_run(&loop_, UV_RUN_DEFAULT);
  ASSERT_EQ(fired_.size(), 1u);
  EXPECT_GE(fired_[0], start + 40);
}

TEST_F(LazyTimerTest, ArmedAgainFromItsCallback) {
  rearm_ms_ = 15;
  timer_.Arm(5);
  uv_run(&loop_, UV_RUN_DEFAULT);
  ASSERT_EQ(fired_.size(), 2u);
  EXPECT_GE(fired_[1], fired_[0] + 15);
}

TEST_F(LazyTimerTest, ZeroDelayStillWaitsForTheLoop) {
  timer_.Arm(0);
  EXPECT_TRUE(fired_.empty());
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_EQ(fired_.size(), 1u);
}

}  // namespace
}  // namespace modelplane::uv
