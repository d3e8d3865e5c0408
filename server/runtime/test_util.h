// Helpers for tests that run real processes on a LoopThread: a thread-safe
// observer, WaitFor(condition, timeout), runfile paths and liveness checks.
#ifndef MODELPLANE_SERVER_RUNTIME_TEST_UTIL_H_
#define MODELPLANE_SERVER_RUNTIME_TEST_UTIL_H_

#include <functional>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "server/core/actor/env.h"

namespace modelplane::runtime {

// Path of a data dependency, e.g. "tools/fake_upstream/fake_upstream".
std::string Runfile(const std::string& path);

// Polls `condition` every millisecond or so until it holds or `timeout`
// passes; the failure message names `what`.
::testing::AssertionResult WaitFor(const std::function<bool()>& condition,
                                   absl::Duration timeout,
                                   const std::string& what);

// True while `pid` exists and is not a zombie.
bool ProcessAlive(int pid);

// Records what a process printed and how it ended; readable from the test
// thread while the loop thread writes.
class RecordingObserver : public actor::ProcessObserver {
 public:
  void OnOutput(absl::string_view data) override;
  void OnExit(actor::ExitStatus status) override;

  std::string output() const;
  std::optional<actor::ExitStatus> exit() const;
  ::testing::AssertionResult WaitForOutput(const std::string& needle,
                                           absl::Duration timeout) const;
  ::testing::AssertionResult WaitForExit(absl::Duration timeout) const;

  // Runs on the loop thread inside OnExit (e.g. to drop the Process).
  std::function<void()> on_exit;

 private:
  mutable absl::Mutex mu_;
  std::string output_ ABSL_GUARDED_BY(mu_);
  std::optional<actor::ExitStatus> exit_ ABSL_GUARDED_BY(mu_);
};

}  // namespace modelplane::runtime

#endif  // MODELPLANE_SERVER_RUNTIME_TEST_UTIL_H_
