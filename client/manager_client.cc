#include "client/manager_client.h"

#include <algorithm>
#include <utility>

namespace modelplane::client {

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

ManagerClient ManagerClient::Connect(const ClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  args.SetInt(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Pings go on while a stream carries nothing (an idle Watch): gRPC's
  // default stops after two.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  if (options.max_reconnect_backoff > absl::ZeroDuration()) {
    int max_ms = static_cast<int>(
        absl::ToInt64Milliseconds(options.max_reconnect_backoff));
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, std::min(100, max_ms));
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, std::min(100, max_ms));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_ms);
  }
  return ManagerClient(
      grpc::CreateCustomChannel(options.target,
                                options.credentials != nullptr
                                    ? options.credentials
                                    : grpc::InsecureChannelCredentials(),
                                args),
      options.token);
}

ManagerClient::ManagerClient(std::shared_ptr<grpc::Channel> channel,
                             std::string token)
    : channel_(std::move(channel)),
      stub_(v1::ModelManager::NewStub(channel_)),
      token_(std::move(token)) {}

std::unique_ptr<grpc::ClientContext> ManagerClient::Context(
    absl::Duration timeout) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (timeout != absl::InfiniteDuration()) {
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
  if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  return ctx;
}

namespace {

template <typename Req, typename Resp, typename Call>
absl::StatusOr<Resp> Unary(std::unique_ptr<grpc::ClientContext> ctx,
                           const Req& req, Call call) {
  Resp resp;
  grpc::Status s = call(ctx.get(), req, &resp);
  if (!s.ok()) return FromGrpc(s);
  return resp;
}

}  // namespace

absl::StatusOr<v1::Model> ManagerClient::Start(const std::string& model,
                                               absl::Duration timeout) {
  v1::StartRequest req;
  req.set_model(model);
  return Unary<v1::StartRequest, v1::Model>(
      Context(timeout), req,
      [&](auto* c, auto& r, auto* o) { return stub_->Start(c, r, o); });
}

absl::StatusOr<v1::Model> ManagerClient::Stop(const std::string& model,
                                              bool force,
                                              absl::Duration timeout) {
  v1::StopRequest req;
  req.set_model(model);
  req.set_force(force);
  return Unary<v1::StopRequest, v1::Model>(
      Context(timeout), req,
      [&](auto* c, auto& r, auto* o) { return stub_->Stop(c, r, o); });
}

absl::StatusOr<v1::Model> ManagerClient::WaitReady(const std::string& model,
                                                   absl::Duration timeout) {
  v1::WaitReadyRequest req;
  req.set_model(model);
  return Unary<v1::WaitReadyRequest, v1::Model>(
      Context(timeout), req,
      [&](auto* c, auto& r, auto* o) { return stub_->WaitReady(c, r, o); });
}

absl::StatusOr<v1::Model> ManagerClient::GetModel(const std::string& model,
                                                  absl::Duration timeout) {
  v1::GetModelRequest req;
  req.set_model(model);
  return Unary<v1::GetModelRequest, v1::Model>(
      Context(timeout), req,
      [&](auto* c, auto& r, auto* o) { return stub_->GetModel(c, r, o); });
}

absl::StatusOr<v1::DrainResponse> ManagerClient::Drain(bool resume,
                                                       absl::Duration timeout) {
  v1::DrainRequest req;
  req.set_resume(resume);
  return Unary<v1::DrainRequest, v1::DrainResponse>(
      Context(timeout), req,
      [&](auto* c, auto& r, auto* o) { return stub_->Drain(c, r, o); });
}

absl::StatusOr<v1::PlanStartResponse> ManagerClient::PlanStart(
    const std::string& model, absl::Duration timeout) {
  v1::PlanStartRequest req;
  req.set_model(model);
  return Unary<v1::PlanStartRequest, v1::PlanStartResponse>(
      Context(timeout), req,
      [&](auto* c, auto& r, auto* o) { return stub_->PlanStart(c, r, o); });
}

absl::StatusOr<v1::ListModelsResponse> ManagerClient::ListModels(
    absl::Duration timeout) {
  return Unary<v1::ListModelsRequest, v1::ListModelsResponse>(
      Context(timeout), v1::ListModelsRequest(),
      [&](auto* c, auto& r, auto* o) { return stub_->ListModels(c, r, o); });
}

absl::StatusOr<v1::StopAllResponse> ManagerClient::StopAll(
    bool force, absl::Duration timeout) {
  v1::StopAllRequest req;
  req.set_force(force);
  return Unary<v1::StopAllRequest, v1::StopAllResponse>(
      Context(timeout), req,
      [&](auto* c, auto& r, auto* o) { return stub_->StopAll(c, r, o); });
}

absl::StatusOr<v1::ReloadConfigResponse> ManagerClient::ReloadConfig(
    absl::Duration timeout) {
  return Unary<v1::ReloadConfigRequest, v1::ReloadConfigResponse>(
      Context(timeout), v1::ReloadConfigRequest(),
      [&](auto* c, auto& r, auto* o) { return stub_->ReloadConfig(c, r, o); });
}

absl::Status ManagerClient::Watch(
    const v1::WatchRequest& request, absl::Duration timeout,
    const std::function<bool(const v1::WatchEvent&)>& on_event) {
  std::unique_ptr<grpc::ClientContext> ctx = Context(timeout);
  auto reader = stub_->Watch(ctx.get(), request);
  v1::WatchEvent e;
  while (reader->Read(&e)) {
    if (!on_event(e)) {
      ctx->TryCancel();
      reader->Finish();
      return absl::OkStatus();
    }
  }
  return FromGrpc(reader->Finish());
}

absl::Status ManagerClient::StreamLogs(
    const v1::StreamLogsRequest& request, absl::Duration timeout,
    const std::function<bool(const v1::LogChunk&)>& on_chunk) {
  std::unique_ptr<grpc::ClientContext> ctx = Context(timeout);
  auto reader = stub_->StreamLogs(ctx.get(), request);
  v1::LogChunk c;
  while (reader->Read(&c)) {
    if (!on_chunk(c)) {
      ctx->TryCancel();
      reader->Finish();
      return absl::OkStatus();
    }
  }
  return FromGrpc(reader->Finish());
}

namespace {

// One async unary call: `method` is the stub's async method, bound.
template <typename Req, typename Resp, typename Method>
void CallAsync(std::unique_ptr<grpc::ClientContext> ctx, Req req, Method method,
               std::function<void(absl::StatusOr<Resp>)> done) {
  struct Call {
    std::unique_ptr<grpc::ClientContext> ctx;
    Req req;
    Resp resp;
  };
  auto* call = new Call{std::move(ctx), std::move(req), {}};
  method(call->ctx.get(), &call->req, &call->resp,
         [call, done = std::move(done)](grpc::Status s) {
           std::unique_ptr<Call> owned(call);
           if (s.ok()) {
             done(std::move(owned->resp));
           } else {
             done(FromGrpc(s));
           }
         });
}

}  // namespace

void ManagerClient::StartAsync(
    const std::string& model, absl::Duration timeout,
    std::function<void(absl::StatusOr<v1::Model>)> done) {
  v1::StartRequest req;
  req.set_model(model);
  CallAsync<v1::StartRequest, v1::Model>(
      Context(timeout), std::move(req),
      [this](auto* c, auto* r, auto* o, auto f) {
        stub_->async()->Start(c, r, o, std::move(f));
      },
      std::move(done));
}

void ManagerClient::StopAsync(
    const std::string& model, bool force, absl::Duration timeout,
    std::function<void(absl::StatusOr<v1::Model>)> done) {
  v1::StopRequest req;
  req.set_model(model);
  req.set_force(force);
  CallAsync<v1::StopRequest, v1::Model>(
      Context(timeout), std::move(req),
      [this](auto* c, auto* r, auto* o, auto f) {
        stub_->async()->Stop(c, r, o, std::move(f));
      },
      std::move(done));
}

void ManagerClient::PlanStartAsync(
    const std::string& model, absl::Duration timeout,
    std::function<void(absl::StatusOr<v1::PlanStartResponse>)> done) {
  v1::PlanStartRequest req;
  req.set_model(model);
  CallAsync<v1::PlanStartRequest, v1::PlanStartResponse>(
      Context(timeout), std::move(req),
      [this](auto* c, auto* r, auto* o, auto f) {
        stub_->async()->PlanStart(c, r, o, std::move(f));
      },
      std::move(done));
}

void ManagerClient::StopAllAsync(
    bool force, absl::Duration timeout,
    std::function<void(absl::StatusOr<v1::StopAllResponse>)> done) {
  v1::StopAllRequest req;
  req.set_force(force);
  CallAsync<v1::StopAllRequest, v1::StopAllResponse>(
      Context(timeout), std::move(req),
      [this](auto* c, auto* r, auto* o, auto f) {
        stub_->async()->StopAll(c, r, o, std::move(f));
      },
      std::move(done));
}

void CallHandle::Cancel() {
  absl::MutexLock lock(&mu_);
  if (ctx_ != nullptr) ctx_->TryCancel();
}

std::shared_ptr<CallHandle> ManagerClient::ListModelsAsync(
    absl::Duration timeout,
    std::function<void(absl::StatusOr<v1::ListModelsResponse>)> done) {
  auto handle = std::make_shared<CallHandle>();
  std::unique_ptr<grpc::ClientContext> ctx = Context(timeout);
  {
    absl::MutexLock lock(&handle->mu_);
    handle->ctx_ = ctx.get();
  }
  CallAsync<v1::ListModelsRequest, v1::ListModelsResponse>(
      std::move(ctx), v1::ListModelsRequest(),
      [this](auto* c, auto* r, auto* o, auto f) {
        stub_->async()->ListModels(c, r, o, std::move(f));
      },
      std::function<void(absl::StatusOr<v1::ListModelsResponse>)>(
          [handle,
           done = std::move(done)](absl::StatusOr<v1::ListModelsResponse> r) {
            {
              // The context goes with the call: no Cancel reaches it now.
              absl::MutexLock lock(&handle->mu_);
              handle->ctx_ = nullptr;
            }
            done(std::move(r));
          }));
  return handle;
}

std::unique_ptr<AcquireStream> ManagerClient::AcquireAsync(
    const std::string& client_id, AcquireStream::Handlers handlers) {
  std::unique_ptr<AcquireStream> s(new AcquireStream(
      Context(absl::InfiniteDuration()), std::move(handlers)));
  stub_->async()->Acquire(s->ctx_.get(), s.get());
  v1::AcquireRequest hello;
  hello.mutable_hello()->set_client_id(client_id);
  s->Send(std::move(hello));
  s->StartRead(&s->response_);
  s->StartCall();
  return s;
}

void AcquireStream::Send(v1::AcquireRequest request) {
  {
    absl::MutexLock lock(&mu_);
    if (ended_.load()) return;
    out_.push_back(std::move(request));
    if (writing_) return;
    writing_ = true;
    current_ = std::move(out_.front());
    out_.pop_front();
  }
  StartWrite(&current_);
}

void AcquireStream::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    if (!ok || out_.empty()) {
      writing_ = false;
      return;
    }
    current_ = std::move(out_.front());
    out_.pop_front();
  }
  StartWrite(&current_);
}

void AcquireStream::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows.
  if (handlers_.on_response) handlers_.on_response(response_);
  StartRead(&response_);
}

void AcquireStream::OnDone(const grpc::Status& status) {
  // ended_ first: a caller that sees it knows no lease holds any more.
  ended_.store(true);
  if (handlers_.on_end) handlers_.on_end(FromGrpc(status));
  // Last: the owner may destroy the stream once it sees this.
  done_.store(true);
}

std::unique_ptr<WatchStream> ManagerClient::WatchAsync(
    const v1::WatchRequest& request, WatchStream::Handlers handlers) {
  std::unique_ptr<WatchStream> s(
      new WatchStream(Context(absl::InfiniteDuration()), std::move(handlers)));
  s->request_ = request;
  stub_->async()->Watch(s->ctx_.get(), &s->request_, s.get());
  s->StartRead(&s->event_);
  s->StartCall();
  return s;
}

std::shared_ptr<CallHandle> ManagerClient::StreamLogsAsync(
    const v1::StreamLogsRequest& request, LogStream::Handlers handlers) {
  auto handle = std::make_shared<CallHandle>();
  auto* s = new LogStream(Context(absl::InfiniteDuration()),
                          std::move(handlers), handle);
  {
    absl::MutexLock lock(&handle->mu_);
    handle->ctx_ = s->ctx_.get();
  }
  s->request_ = request;
  stub_->async()->StreamLogs(s->ctx_.get(), &s->request_, s);
  s->StartRead(&s->chunk_);
  s->StartCall();
  return handle;
}

void LogStream::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows.
  if (handlers_.on_chunk) handlers_.on_chunk(chunk_);
  StartRead(&chunk_);
}

void LogStream::OnDone(const grpc::Status& status) {
  {
    // No Cancel reaches the context once it is gone.
    absl::MutexLock lock(&handle_->mu_);
    handle_->ctx_ = nullptr;
  }
  if (handlers_.on_end) handlers_.on_end(FromGrpc(status));
  delete this;
}

void WatchStream::OnReadDone(bool ok) {
  if (!ok) return;  // OnDone follows.
  if (handlers_.on_event) handlers_.on_event(event_);
  StartRead(&event_);
}

void WatchStream::OnDone(const grpc::Status& status) {
  if (handlers_.on_end) handlers_.on_end(FromGrpc(status));
  done_.store(true);  // Last: the owner may destroy it once it sees this.
}

}  // namespace modelplane::client
