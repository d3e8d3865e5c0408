// Keeps a Cluster's nodes to its `--manager` targets: a plain address is a
// node as it is; a dns: target (resolver.h) is every address its name has,
// resolved at Start and again every `interval` on a thread of its own. A
// name that fails to resolve keeps its last nodes (a DNS outage does not
// empty the cluster); one whose records change adds and removes nodes.
//
//   Membership m(&cluster, {"dns:///managers:50051"}, absl::Seconds(5), log);
//   m.Start();   // The first resolution, then the thread.
#ifndef MODELPLANE_PROXY_CLUSTER_MEMBERSHIP_H_
#define MODELPLANE_PROXY_CLUSTER_MEMBERSHIP_H_

#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proxy/cluster/cluster.h"

namespace modelplane::proxy::cluster {

class Membership {
 public:
  using Log = std::function<void(const std::string& line, const char* level)>;
  Membership(Cluster* cluster, std::vector<std::string> targets,
             absl::Duration interval, Log log);
  // Stop().
  ~Membership();

  void Start();
  // Joins the thread; the cluster keeps its nodes.
  void Stop();

 private:
  void Run();
  // Resolves every dns: target and sets the cluster's members.
  void Refresh();

  Cluster* cluster_;
  std::vector<std::string> targets_;
  absl::Duration interval_;
  Log log_;
  // Per dns: target, its last addresses and the last error said (the
  // thread's only, and Start's before it).
  std::map<std::string, std::vector<std::string>> resolved_;
  std::map<std::string, std::string> errors_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace modelplane::proxy::cluster

#endif  // MODELPLANE_PROXY_CLUSTER_MEMBERSHIP_H_
