// LoopThread: tasks run on the loop, and a handle its owner forgot to close
// before the loop went is reported (the proxy's shutdown test reads that).
#include "common/loop_thread.h"

#include <uv.h>

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane {
namespace {

TEST(LoopThreadTest, RunSyncRunsOnTheLoopThread) {
  LoopThread loop;
  bool on_loop = false;
  loop.RunSync([&] { on_loop = loop.OnLoopThread(); });
  EXPECT_TRUE(on_loop);
  EXPECT_FALSE(loop.OnLoopThread());
}

TEST(LoopThreadTest, AHandleLeftOpenIsReportedAtShutdown) {
  auto timer = std::make_unique<uv_timer_t>();
  testing::internal::CaptureStderr();
  {
    LoopThread loop;
    loop.RunSync([&] { uv_timer_init(loop.loop(), timer.get()); });
  }
  EXPECT_THAT(testing::internal::GetCapturedStderr(),
              testing::HasSubstr(
                  "1 libuv handle(s) still open at the loop's shutdown"));
}

TEST(LoopThreadTest, NothingIsReportedWhenOwnersCloseTheirHandles) {
  auto timer = std::make_unique<uv_timer_t>();
  testing::internal::CaptureStderr();
  {
    LoopThread loop;
    loop.RunSync([&] { uv_timer_init(loop.loop(), timer.get()); });
    loop.RunSync([&] {
      uv_close(reinterpret_cast<uv_handle_t*>(timer.get()), nullptr);
    });
  }
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace modelplane
