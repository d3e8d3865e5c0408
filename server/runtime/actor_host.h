// The loop thread plus the real seams (timers, health probes, the process
// launcher) that model actors run on. The manager owns one; integration
// tests and the orphan-test harness use it too.
//
//   ActorHost host;
//   host.loop().RunSync([&] {
//     actor = std::make_unique<actor::ModelActor>(config, host.env(),
//                                                 host.revisions(), log, sink);
//   });
//   ...
//   host.loop().RunSync([&] { actor.reset(); });  // Before ~ActorHost.
#ifndef MODELPLANE_SERVER_RUNTIME_ACTOR_HOST_H_
#define MODELPLANE_SERVER_RUNTIME_ACTOR_HOST_H_

#include <cstdint>
#include <memory>

#include "common/loop_thread.h"
#include "server/core/actor/env.h"
#include "server/runtime/http_probe.h"
#include "server/runtime/process_launcher.h"
#include "server/runtime/uv_clock.h"

namespace modelplane::runtime {

class ActorHost {
 public:
  ActorHost();
  // Destroys the seams on the loop thread (closing the lifeline, so any model
  // process still running is killed by its supervisor), then the loop.
  ~ActorHost();
  ActorHost(const ActorHost&) = delete;
  ActorHost& operator=(const ActorHost&) = delete;

  LoopThread& loop() { return loop_; }
  // The seams, for actors on this host's loop. Loop thread only.
  actor::ActorEnv env() {
    return actor::ActorEnv{clock_.get(), launcher_.get(), prober_.get()};
  }
  // The revision counter shared by every actor on the loop. Loop thread only.
  uint64_t* revisions() { return &revisions_; }
  // Where the launcher says what it killed after a supervisor's death
  // (ProcessLauncher::set_warn). Loop thread only.
  void set_warn(ProcessLauncher::Warn warn) {
    launcher_->set_warn(std::move(warn));
  }
  // ProcessLauncher::isolation(). Any thread.
  const std::string& isolation() const { return launcher_->isolation(); }

 private:
  LoopThread loop_;
  std::unique_ptr<UvClock> clock_;
  std::unique_ptr<HttpProber> prober_;
  std::unique_ptr<ProcessLauncher> launcher_;
  uint64_t revisions_ = 0;
};

}  // namespace modelplane::runtime

#endif  // MODELPLANE_SERVER_RUNTIME_ACTOR_HOST_H_
