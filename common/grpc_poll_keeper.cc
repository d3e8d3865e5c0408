#include "common/grpc_poll_keeper.h"

#include <utility>

namespace modelplane {

GrpcPollKeeper::GrpcPollKeeper(absl::Duration period) : period_(period) {
  grpc::ServerBuilder builder;  // No ports: in-process calls only.
  builder.RegisterCallbackGenericService(&service_);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) return;  // Then there is nothing to keep.
  channel_ = server_->InProcessChannel(grpc::ChannelArguments());
  stub_ = std::make_unique<grpc::GenericStub>(channel_);
  thread_ = std::thread([this] { Run(); });
}

GrpcPollKeeper::~GrpcPollKeeper() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
  {
    // The last call's callback may still run on a gRPC thread.
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](bool* in_flight) { return !*in_flight; }, &in_flight_));
  }
  if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
}

void GrpcPollKeeper::Run() {
  while (!stop_.WaitForNotificationWithTimeout(period_)) {
    {
      absl::MutexLock lock(&mu_);
      if (in_flight_) continue;  // A slow turn: one call at a time.
      in_flight_ = true;
    }
    auto context = std::make_shared<grpc::ClientContext>();
    grpc::Slice empty("");
    auto request = std::make_shared<grpc::ByteBuffer>(&empty, 1);
    auto response = std::make_shared<grpc::ByteBuffer>();
    stub_->UnaryCall(context.get(), "/modelplane.PollKeeper/Tick",
                     grpc::StubOptions(), request.get(), response.get(),
                     [this, context, request, response](grpc::Status) {
                       ticks_.fetch_add(1, std::memory_order_relaxed);
                       absl::MutexLock lock(&mu_);
                       in_flight_ = false;
                     });
  }
}

}  // namespace modelplane
