#include "common/grpc_poll_keeper.h"

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace modelplane {
namespace {

// Waits (without asserting how long it takes) until `keeper` has made
// `n` calls.
bool WaitForTicks(const GrpcPollKeeper& keeper, uint64_t n) {
  absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (keeper.ticks() < n) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

TEST(GrpcPollKeeperTest, ItsCallsCompleteOnTheCallbackQueue) {
  GrpcPollKeeper keeper(absl::Milliseconds(10));
  // Each tick is a call whose completion callback ran: an event on the
  // callback API's shared queue, which is the whole point.
  EXPECT_TRUE(WaitForTicks(keeper, 3));
}

TEST(GrpcPollKeeperTest, KeepsTickingAcrossIdleSeconds) {
  // The nexting threads time out after an idle second; the keeper's own
  // calls must keep completing across that (they are its events).
  GrpcPollKeeper keeper(absl::Milliseconds(250));
  absl::SleepFor(absl::Milliseconds(2500));
  EXPECT_TRUE(WaitForTicks(keeper, 5));
}

TEST(GrpcPollKeeperTest, StopsCleanlyWithACallInFlight) {
  // Destroyed while its first call may still be running: no crash, no
  // leak (ASan), no hang.
  for (int i = 0; i < 20; ++i) {
    GrpcPollKeeper keeper(absl::Milliseconds(1));
    absl::SleepFor(absl::Milliseconds(i % 3));
  }
}

}  // namespace
}  // namespace modelplane
