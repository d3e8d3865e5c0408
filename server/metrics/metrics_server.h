// modelmanager's --metrics-listen: a small HTTP/1.1 server that answers
// GET /metrics (Prometheus text) on a thread of its own. Blocking sockets,
// one connection at a time, each bounded (2 s to send its request and 2 s
// for each piece of the answer to be taken, then the connection closes): a
// scrape every few seconds is all it serves, and nothing it does touches the
// manager's loop but the render.
//
//   auto server = MetricsServer::Start("127.0.0.1:9090", [&] { return text; });
//   (*server)->port();   // The one bound (":0" picks one).
#ifndef MODELPLANE_SERVER_METRICS_METRICS_SERVER_H_
#define MODELPLANE_SERVER_METRICS_METRICS_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace modelplane::metrics {

class MetricsServer {
 public:
  // The metrics' text, made on the server's thread for each scrape.
  using Render = std::function<std::string()>;

  // Listens on `listen` ("HOST:PORT", "[V6]:PORT"; port 0 picks one).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, Render render);
  // Stops: the thread is joined, the socket closed.
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsServer(int fd, int port, int wake_read, int wake_write, Render render);
  void Run();
  void Serve(int client);

  int fd_;
  int port_;
  int wake_read_, wake_write_;  // A pipe: the destructor's wake-up.
  Render render_;
  std::thread thread_;
};

}  // namespace modelplane::metrics

#endif  // MODELPLANE_SERVER_METRICS_METRICS_SERVER_H_
