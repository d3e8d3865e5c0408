// Keeps gRPC's callback API answering within microseconds after an idle
// second, not up to 100 ms later.
//
// With the polling engines gRPC 1.51 has on Linux (epoll1, poll), every
// callback-API operation of the process (client and server reactors alike)
// completes through one shared completion queue that a few "nexting" threads
// drain (two on a machine with up to four cores). Each of them waits for an
// event at most one second; when that second passes with none, it sleeps
// 100 ms before it polls again (grpc/src/cpp/common/completion_queue_cc.cc,
// CallbackAlternativeCQ). When all of them time out together — the usual
// case after an idle second — nothing reads the sockets for up to 100 ms: a
// message that arrives then (the proxy's first ACQUIRE after its lease
// lingered out, the GRANTED coming back, a readiness answer) waits that
// long. Measured here: 43-48 ms in most such cases, once 92 ms, against
// 0.3 ms otherwise (docs/proxy.md, "Control-plane latency after idle").
//
// The keeper makes an event on that queue four times a second: a unary call
// over an in-process channel to a server of its own with no ports, which
// answers UNIMPLEMENTED (both the server's and the caller's side complete
// on the shared queue). A nexting thread that got an event within the last
// 250 ms has at least 750 ms before its own timeout, so while one sleeps
// another is polling. The cost: four in-process calls a second, no sockets.
//
// One per process that uses the callback API (modelmanager, modelproxy).
// Thread-safety: construct and destroy on one thread; ticks() anywhere.
#ifndef MODELPLANE_COMMON_GRPC_POLL_KEEPER_H_
#define MODELPLANE_COMMON_GRPC_POLL_KEEPER_H_

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace modelplane {

class GrpcPollKeeper {
 public:
  explicit GrpcPollKeeper(absl::Duration period = absl::Milliseconds(250));
  ~GrpcPollKeeper();
  GrpcPollKeeper(const GrpcPollKeeper&) = delete;
  GrpcPollKeeper& operator=(const GrpcPollKeeper&) = delete;

  // Calls completed so far (each one an event on the shared queue).
  uint64_t ticks() const { return ticks_.load(std::memory_order_relaxed); }

 private:
  void Run();

  const absl::Duration period_;
  // Answers every call UNIMPLEMENTED (its default reactor).
  grpc::CallbackGenericService service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  std::atomic<uint64_t> ticks_{0};
  absl::Mutex mu_;
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace modelplane

#endif  // MODELPLANE_COMMON_GRPC_POLL_KEEPER_H_
