// A libuv loop on a thread of its own, reachable from other threads through
// Post(). The model actors and their processes, timers and health probes all
// live on one such loop (docs/process-actors.md).
//
//   LoopThread loop;                       // Starts the thread.
//   loop.Post([&] { actor.Start(...); });  // Runs on the loop thread.
//   loop.RunSync([&] { ... });             // Same, and waits for it.
//   // ~LoopThread stops the thread after running what was posted.
//
// Post is thread-safe. Sends coalesce: one uv_async_send may carry many
// tasks, and the async callback drains the whole queue.
#ifndef MODELPLANE_COMMON_LOOP_THREAD_H_
#define MODELPLANE_COMMON_LOOP_THREAD_H_

#include <uv.h>

#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace modelplane {

class LoopThread {
 public:
  LoopThread();
  // Runs the tasks already posted, closes every handle still open on the
  // loop, and joins the thread.
  ~LoopThread();
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  // Queues `task` to run on the loop thread. After the destructor began,
  // tasks are dropped.
  void Post(std::function<void()> task);

  // Posts `task` and waits until it ran. Must not be called on the loop
  // thread.
  void RunSync(std::function<void()> task);

  bool OnLoopThread() const {
    return std::this_thread::get_id() == thread_.get_id();
  }

  // Only on the loop thread.
  uv_loop_t* loop() { return &loop_; }

 private:
  static void OnAsync(uv_async_t* handle);
  void Drain();

  uv_loop_t loop_;
  uv_async_t async_;
  absl::Mutex mu_;
  std::vector<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace modelplane

#endif  // MODELPLANE_COMMON_LOOP_THREAD_H_
