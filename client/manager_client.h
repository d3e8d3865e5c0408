// A small C++ client for modelplane.v1.ModelManager: what mpctl, the proxy
// and other services use to talk to modelmanager.
//
//   ManagerClient c = ManagerClient::Connect({"127.0.0.1:50051"});
//   absl::StatusOr<v1::Model> m = c.Start("qwen", absl::Seconds(120));
//   c.StartAsync("qwen", absl::Seconds(120),
//                [](absl::StatusOr<v1::Model> m) { ... });  // gRPC thread.
//
// Every call has a deadline. Errors come back as absl::Status with the
// server's code and message (UNAVAILABLE when the manager is unreachable).
// Thread-safe: calls may be made from any thread.
#ifndef MODELPLANE_CLIENT_MANAGER_CLIENT_H_
#define MODELPLANE_CLIENT_MANAGER_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "modelplane/v1/model_manager.grpc.pb.h"

namespace modelplane::client {

struct ClientOptions {
  // host:port, or unix:PATH.
  std::string target = "127.0.0.1:50051";
  // Sent as `authorization: Bearer <token>` when not empty.
  std::string token;
  // TLS (MakeCredentials in client/credentials.h); null: cleartext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // The longest wait between two attempts to reach the manager once the
  // channel lost it (zero: gRPC's default, up to two minutes). A data
  // plane that must notice the manager is back sets a second or so.
  absl::Duration max_reconnect_backoff = absl::ZeroDuration();
  // HTTP/2 keepalive: a ping after this long without traffic, and the
  // connection given up when its answer takes longer than the timeout (a
  // hung manager: SIGSTOP, a dead host). The manager takes pings this often
  // (server/serve.cc).
  absl::Duration keepalive_time = absl::Seconds(10);
  absl::Duration keepalive_timeout = absl::Seconds(5);
  // With TLS: the name the manager's certificate must carry, when `target`
  // does not say it (an address a DNS name resolved to). Empty: target's.
  std::string tls_server_name;
};

// An async unary call in flight. Cancel() ends it early (its callback then
// gets CANCELLED); any thread, and harmless once the callback has run.
class CallHandle {
 public:
  void Cancel();

 private:
  friend class ManagerClient;
  friend class LogStream;
  absl::Mutex mu_;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;  // Null when done.
};

// The Acquire stream in async form (docs/api.md, "Acquire"), for data
// planes: HELLO is sent first; Send queues ACQUIRE and RELEASE messages in
// order from any thread. `on_response` runs on a gRPC thread for every
// message, in order; `on_end` once, after the last, with how the stream
// ended. The owner destroys it only once done() (gRPC no longer touches it
// after that); Cancel() ends it early.
class AcquireStream
    : public grpc::ClientBidiReactor<v1::AcquireRequest, v1::AcquireResponse> {
 public:
  struct Handlers {
    std::function<void(const v1::AcquireResponse&)> on_response;
    std::function<void(const absl::Status&)> on_end;
  };

  // Dropped once the stream has ended.
  void Send(v1::AcquireRequest request);
  void Cancel() { ctx_->TryCancel(); }
  // The stream has ended: set before on_end runs.
  bool ended() const { return ended_.load(); }
  // on_end has returned: the stream may be destroyed.
  bool done() const { return done_.load(); }

  // grpc::ClientBidiReactor.
  void OnWriteDone(bool ok) override;
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  friend class ManagerClient;
  AcquireStream(std::unique_ptr<grpc::ClientContext> ctx, Handlers handlers)
      : ctx_(std::move(ctx)), handlers_(std::move(handlers)) {}

  std::unique_ptr<grpc::ClientContext> ctx_;
  Handlers handlers_;
  v1::AcquireResponse response_;
  absl::Mutex mu_;
  std::deque<v1::AcquireRequest> out_ ABSL_GUARDED_BY(mu_);
  v1::AcquireRequest current_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> ended_{false};
  std::atomic<bool> done_{false};
};

// The Watch stream in async form: `on_event` on a gRPC thread for every
// event, in order; `on_end` once, after the last. Destroyed only once
// done(), as AcquireStream.
class WatchStream : public grpc::ClientReadReactor<v1::WatchEvent> {
 public:
  struct Handlers {
    std::function<void(const v1::WatchEvent&)> on_event;
    std::function<void(const absl::Status&)> on_end;
  };

  void Cancel() { ctx_->TryCancel(); }
  bool done() const { return done_.load(); }

  // grpc::ClientReadReactor.
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  friend class ManagerClient;
  WatchStream(std::unique_ptr<grpc::ClientContext> ctx, Handlers handlers)
      : ctx_(std::move(ctx)), handlers_(std::move(handlers)) {}

  std::unique_ptr<grpc::ClientContext> ctx_;
  Handlers handlers_;
  v1::WatchRequest request_;
  v1::WatchEvent event_;
  std::atomic<bool> done_{false};
};

// StreamLogs in async form: `on_chunk` on a gRPC thread for every chunk,
// in order; `on_end` once, after the last. It owns itself (freed after
// on_end); the CallHandle StreamLogsAsync returns cancels it.
class LogStream : public grpc::ClientReadReactor<v1::LogChunk> {
 public:
  struct Handlers {
    std::function<void(const v1::LogChunk&)> on_chunk;
    std::function<void(const absl::Status&)> on_end;
  };

  // grpc::ClientReadReactor.
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

 private:
  friend class ManagerClient;
  LogStream(std::unique_ptr<grpc::ClientContext> ctx, Handlers handlers,
            std::shared_ptr<CallHandle> handle)
      : ctx_(std::move(ctx)),
        handlers_(std::move(handlers)),
        handle_(std::move(handle)) {}

  std::unique_ptr<grpc::ClientContext> ctx_;
  Handlers handlers_;
  std::shared_ptr<CallHandle> handle_;
  v1::StreamLogsRequest request_;
  v1::LogChunk chunk_;
};

class ManagerClient {
 public:
  static ManagerClient Connect(const ClientOptions& options);

  absl::StatusOr<v1::Model> Start(const std::string& model,
                                  absl::Duration timeout);
  absl::StatusOr<v1::Model> Stop(const std::string& model, bool force,
                                 absl::Duration timeout);
  absl::StatusOr<v1::Model> WaitReady(const std::string& model,
                                      absl::Duration timeout);
  absl::StatusOr<v1::Model> GetModel(const std::string& model,
                                     absl::Duration timeout);
  // Drains the manager (no model starts there), or with `resume` ends it.
  absl::StatusOr<v1::DrainResponse> Drain(bool resume, absl::Duration timeout);
  // What starting `model` would evict now (a dry run: nothing starts).
  absl::StatusOr<v1::PlanStartResponse> PlanStart(const std::string& model,
                                                  absl::Duration timeout);
  absl::StatusOr<v1::ListModelsResponse> ListModels(absl::Duration timeout);
  absl::StatusOr<v1::StopAllResponse> StopAll(bool force,
                                              absl::Duration timeout);
  absl::StatusOr<v1::ReloadConfigResponse> ReloadConfig(absl::Duration timeout);

  // Calls `on_event` for each event until it returns false, the stream ends
  // or `timeout` passes (InfiniteDuration: no deadline). Returns how the
  // stream ended (OK when on_event stopped it).
  absl::Status Watch(
      const v1::WatchRequest& request, absl::Duration timeout,
      const std::function<bool(const v1::WatchEvent&)>& on_event);
  absl::Status StreamLogs(
      const v1::StreamLogsRequest& request, absl::Duration timeout,
      const std::function<bool(const v1::LogChunk&)>& on_chunk);

  // The async form, for event loops: `done` runs on a gRPC thread. It is
  // gRPC's callback API, whose threads sleep 100 ms after an idle second: in
  // a process that makes such calls rarely, `done` can run up to 100 ms late
  // unless the process keeps a GrpcPollKeeper (common/grpc_poll_keeper.h)
  // alive, as modelproxy and modelmanager do.
  void StartAsync(const std::string& model, absl::Duration timeout,
                  std::function<void(absl::StatusOr<v1::Model>)> done);
  void StopAsync(const std::string& model, bool force, absl::Duration timeout,
                 std::function<void(absl::StatusOr<v1::Model>)> done);
  void PlanStartAsync(
      const std::string& model, absl::Duration timeout,
      std::function<void(absl::StatusOr<v1::PlanStartResponse>)> done);
  void StopAllAsync(
      bool force, absl::Duration timeout,
      std::function<void(absl::StatusOr<v1::StopAllResponse>)> done);
  std::shared_ptr<CallHandle> ListModelsAsync(
      absl::Duration timeout,
      std::function<void(absl::StatusOr<v1::ListModelsResponse>)> done);
  // The streams (no deadline): see AcquireStream and WatchStream.
  std::unique_ptr<AcquireStream> AcquireAsync(const std::string& client_id,
                                              AcquireStream::Handlers handlers);
  std::unique_ptr<WatchStream> WatchAsync(const v1::WatchRequest& request,
                                          WatchStream::Handlers handlers);
  std::shared_ptr<CallHandle> StreamLogsAsync(
      const v1::StreamLogsRequest& request, LogStream::Handlers handlers);

  v1::ModelManager::Stub* stub() { return stub_.get(); }

 private:
  ManagerClient(std::shared_ptr<grpc::Channel> channel, std::string token);
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) const;

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ModelManager::Stub> stub_;
  std::string token_;
};

// grpc::Status as absl::Status (same codes).
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace modelplane::client

#endif  // MODELPLANE_CLIENT_MANAGER_CLIENT_H_
