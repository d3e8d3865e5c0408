// A stand-in manager for the orphan test: runs two model actors on the real
// runtime (fake_upstream, one of them forking a grandchild that keeps the
// output pipes), prints their pids once both are READY, then waits to be
// killed. orphan_test.py SIGKILLs it and checks that nothing survives.
//
//   orphan_harness FAKE_UPSTREAM_PATH PORT_A PORT_B
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "server/core/actor/model_actor.h"
#include "server/runtime/actor_host.h"

int main(int argc, char** argv) {
  using modelplane::actor::ModelActor;
  if (argc != 4) {
    fprintf(stderr, "usage: orphan_harness FAKE_UPSTREAM PORT_A PORT_B\n");
    return 2;
  }
  modelplane::runtime::ActorHost host;
  std::vector<std::unique_ptr<ModelActor>> actors;
  std::vector<std::shared_ptr<modelplane::logs::LogBuffer>> logs;
  for (int i = 0; i < 2; ++i) {
    modelplane::config::ModelConfig c;
    c.id = i == 0 ? "plain" : "forking";
    c.argv = {argv[1], "--port", argv[2 + i], "--ignore-sigterm"};
    if (i == 1) c.argv.push_back("--fork-child");
    c.proxy = std::string("http://127.0.0.1:") + argv[2 + i];
    c.check_endpoint = "/health";
    c.health_check_timeout = absl::Seconds(30);
    c.unload_timeout = absl::Seconds(10);
    logs.push_back(std::make_shared<modelplane::logs::LogBuffer>());
    host.loop().RunSync([&] {
      actors.push_back(std::make_unique<ModelActor>(
          c, host.env(), host.revisions(), logs.back(), nullptr));
    });
  }
  absl::Notification ready[2];
  for (int i = 0; i < 2; ++i) {
    host.loop().Post([&, i] {
      actors[i]->Start([&, i](absl::Status s) {
        if (!s.ok()) {
          fprintf(stderr, "start failed: %s\n", s.ToString().c_str());
          _exit(1);
        }
        ready[i].Notify();
      });
    });
  }
  for (auto& r : ready) r.WaitForNotification();
  host.loop().RunSync([&] {
    for (auto& a : actors)
      printf("model %s pid %d\n", a->id().c_str(), a->status().pid);
  });
  uint64_t offset = 0;
  std::string log = logs[1]->Read(&offset, 1 << 20).data;
  size_t at = log.find("forked child pid ");
  printf("grandchild pid %s\n",
         at == std::string::npos
             ? "0"
             : log.substr(at + 17, log.find('\n', at) - at - 17).c_str());
  printf("ready\n");
  fflush(stdout);
  for (;;) pause();
}
