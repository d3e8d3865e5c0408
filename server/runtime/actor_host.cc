#include "server/runtime/actor_host.h"

namespace modelplane::runtime {

ActorHost::ActorHost() {
  loop_.RunSync([this] {
    clock_ = std::make_unique<UvClock>(loop_.loop());
    prober_ = std::make_unique<HttpProber>(loop_.loop());
    launcher_ = std::make_unique<ProcessLauncher>(loop_.loop());
  });
}

ActorHost::~ActorHost() {
  loop_.RunSync([this] {
    launcher_.reset();
    prober_.reset();
    clock_.reset();
  });
}

}  // namespace modelplane::runtime
