#include "server/rpc/model_manager_service.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "server/rpc/acquire_reactor.h"
#include "server/rpc/convert.h"
#include "server/rpc/logs_reactor.h"
#include "server/rpc/status_mapping.h"
#include "server/rpc/watch_reactor.h"

namespace modelplane::rpc {
namespace {

using ModelResult = absl::StatusOr<scheduler::ModelView>;

// A unary call that waits on the scheduler (Start, WaitReady, Stop): it
// answers exactly once, from the scheduler's callback or from a
// cancellation (deadline, client gone), and is freed on the loop thread
// after anything posted for it has run.
class WaitingReactor : public grpc::ServerUnaryReactor {
 public:
  WaitingReactor(Manager* m, v1::Model* resp,
                 std::unique_ptr<StreamLimits::Slot> slot)
      : manager_(m), resp_(resp), slot_(std::move(slot)) {}

  // Runs `begin` on the loop; it returns the waiter to cancel, if any. The
  // scheduler may answer after the call is gone (a Stop goes on after its
  // client cancelled): the answer then finds `alive_` false (both run on
  // the loop thread) and does nothing.
  void Begin(std::function<scheduler::WaiterId(scheduler::Scheduler::ModelDone)>
                 begin) {
    manager_->loop().Post([this, begin = std::move(begin)] {
      waiter_ = begin([this, alive = alive_](ModelResult r) {
        if (*alive) Answer(std::move(r));
      });
    });
  }

  void Answer(ModelResult r) {
    {
      absl::MutexLock lock(&mu_);
      if (answered_) return;
      answered_ = true;
    }
    if (r.ok()) ToProto(*r, resp_);
    Finish(ToGrpc(r.status()));
  }

  void OnCancel() override {
    manager_->loop().Post([this] {
      manager_->scheduler().CancelWait(waiter_);
      Answer(absl::CancelledError("the call was cancelled"));
    });
  }

  void OnDone() override {
    manager_->loop().Post([this] {
      *alive_ = false;
      delete this;
    });
  }

 private:
  Manager* manager_;
  v1::Model* resp_;
  // A call that waits (for READY, a stop) holds a place under the stream
  // limits while it waits, as a stream does: else 20,000 of them would.
  std::unique_ptr<StreamLimits::Slot> slot_;
  scheduler::WaiterId waiter_ = 0;  // Loop thread.
  // False once the reactor is freed (loop thread).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  absl::Mutex mu_;
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
};

grpc::ServerUnaryReactor* Reject(grpc::CallbackServerContext* ctx,
                                 grpc::Status status) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(std::move(status));
  return r;
}

grpc::Status MissingModel() {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "the request must name a model");
}

}  // namespace

namespace {

// Compares in time that depends on the lengths only, not on where the first
// difference is (no timing oracle for the token).
bool SameSecret(absl::string_view got, absl::string_view want) {
  unsigned char diff = got.size() == want.size() ? 0 : 1;
  for (size_t i = 0; i < got.size(); ++i) {
    diff |=
        static_cast<unsigned char>(got[i]) ^
        static_cast<unsigned char>(want[i % std::max<size_t>(want.size(), 1)]);
  }
  return diff == 0 && !want.empty();
}

}  // namespace

grpc::Status ModelManagerService::Admit(
    grpc::CallbackServerContext* ctx) const {
  if (!auth_token_.empty()) {
    auto it = ctx->client_metadata().find("authorization");
    if (it == ctx->client_metadata().end() ||
        !SameSecret(absl::string_view(it->second.data(), it->second.size()),
                    "Bearer " + auth_token_)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "missing or wrong 'authorization: Bearer <token>'");
    }
  }
  if (manager_->shutting_down()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "the manager is shutting down");
  }
  return grpc::Status::OK;
}

grpc::Status ModelManagerService::Place(
    grpc::CallbackServerContext* ctx, absl::string_view rpc,
    std::unique_ptr<StreamLimits::Slot>* slot) {
  if (limits_ == nullptr) return grpc::Status::OK;
  absl::StatusOr<std::unique_ptr<StreamLimits::Slot>> s =
      limits_->Open(ctx->peer(), rpc);
  if (!s.ok()) return ToGrpc(s.status());
  *slot = *std::move(s);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* ModelManagerService::Start(
    grpc::CallbackServerContext* ctx, const v1::StartRequest* req,
    v1::Model* resp) {
  return Wait(ctx, req->model(), resp,
              [](scheduler::Scheduler& s, const std::string& model,
                 scheduler::Scheduler::ModelDone done) {
                return s.Start(model, std::move(done));
              });
}

grpc::ServerUnaryReactor* ModelManagerService::WaitReady(
    grpc::CallbackServerContext* ctx, const v1::WaitReadyRequest* req,
    v1::Model* resp) {
  return Wait(ctx, req->model(), resp,
              [](scheduler::Scheduler& s, const std::string& model,
                 scheduler::Scheduler::ModelDone done) {
                return s.WaitReady(model, std::move(done));
              });
}

grpc::ServerUnaryReactor* ModelManagerService::Stop(
    grpc::CallbackServerContext* ctx, const v1::StopRequest* req,
    v1::Model* resp) {
  bool force = req->force();
  return Wait(ctx, req->model(), resp,
              [force](scheduler::Scheduler& s, const std::string& model,
                      scheduler::Scheduler::ModelDone done) {
                s.Stop(model, force, std::move(done));
                return scheduler::WaiterId{0};  // A stop goes on regardless.
              });
}

grpc::ServerUnaryReactor* ModelManagerService::Wait(
    grpc::CallbackServerContext* ctx, const std::string& model, v1::Model* resp,
    WaitFn begin) {
  if (grpc::Status s = Admit(ctx); !s.ok()) return Reject(ctx, s);
  if (model.empty()) return Reject(ctx, MissingModel());
  std::unique_ptr<StreamLimits::Slot> slot;
  if (grpc::Status s = Place(ctx, "waiting call", &slot); !s.ok()) {
    return Reject(ctx, s);
  }
  auto* r = new WaitingReactor(manager_, resp, std::move(slot));
  r->Begin([this, model,
            begin = std::move(begin)](scheduler::Scheduler::ModelDone done) {
    return begin(manager_->scheduler(), model, std::move(done));
  });
  return r;
}

grpc::ServerUnaryReactor* ModelManagerService::GetModel(
    grpc::CallbackServerContext* ctx, const v1::GetModelRequest* req,
    v1::Model* resp) {
  if (grpc::Status s = Admit(ctx); !s.ok()) return Reject(ctx, s);
  if (req->model().empty()) return Reject(ctx, MissingModel());
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  manager_->loop().Post([this, r, req, resp] {
    ModelResult v = manager_->scheduler().Get(req->model());
    if (v.ok()) ToProto(*v, resp);
    r->Finish(ToGrpc(v.status()));
  });
  return r;
}

grpc::ServerUnaryReactor* ModelManagerService::PlanStart(
    grpc::CallbackServerContext* ctx, const v1::PlanStartRequest* req,
    v1::PlanStartResponse* resp) {
  if (grpc::Status s = Admit(ctx); !s.ok()) return Reject(ctx, s);
  if (req->model().empty()) return Reject(ctx, MissingModel());
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  manager_->loop().Post([this, r, req, resp] {
    absl::StatusOr<scheduler::StartPlan> plan =
        manager_->scheduler().Plan(req->model());
    if (plan.ok()) ToProto(*plan, resp);
    r->Finish(ToGrpc(plan.status()));
  });
  return r;
}

grpc::ServerUnaryReactor* ModelManagerService::Drain(
    grpc::CallbackServerContext* ctx, const v1::DrainRequest* req,
    v1::DrainResponse* resp) {
  if (grpc::Status s = Admit(ctx); !s.ok()) return Reject(ctx, s);
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  manager_->loop().Post([this, r, req, resp] {
    if (manager_->scheduler().shutting_down()) {
      r->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                             "the manager is shutting down"));
      return;
    }
    manager_->SetDraining(!req->resume());
    resp->set_draining(manager_->scheduler().draining());
    r->Finish(grpc::Status::OK);
  });
  return r;
}

grpc::ServerUnaryReactor* ModelManagerService::ListModels(
    grpc::CallbackServerContext* ctx, const v1::ListModelsRequest*,
    v1::ListModelsResponse* resp) {
  if (grpc::Status s = Admit(ctx); !s.ok()) return Reject(ctx, s);
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  manager_->loop().Post([this, r, resp] {
    // On the loop thread, the list and the feed's revision agree.
    for (const scheduler::ModelView& v : manager_->scheduler().List()) {
      ToProto(v, resp->add_models());
    }
    resp->set_revision(manager_->hub().revision());
    resp->set_draining(manager_->scheduler().draining());
    v1::DataPlaneSettings settings;
    ToProto(*manager_->scheduler().config(), &settings);
    resp->mutable_api_key_sha256()->Swap(settings.mutable_api_key_sha256());
    resp->set_include_aliases_in_list(settings.include_aliases_in_list());
    resp->set_metrics_max_in_memory(settings.metrics_max_in_memory());
    resp->set_store_path(settings.store_path());
    resp->set_store_max_rows(settings.store_max_rows());
    resp->set_startup_profile(settings.startup_profile());
    if (gpu::Monitor* g = manager_->scheduler().gpu(); g != nullptr) {
      g->Refresh();
      for (const watch::GpuReport& gpu : manager_->GpuReports()) {
        ToProto(gpu, resp->add_gpus());
      }
    }
    resp->mutable_upstream_ignore_paths()->Swap(
        settings.mutable_upstream_ignore_paths());
    resp->mutable_peers()->Swap(settings.mutable_peers());
    resp->mutable_selectors()->Swap(settings.mutable_selectors());
    resp->mutable_profiles()->Swap(settings.mutable_profiles());
    r->Finish(grpc::Status::OK);
  });
  return r;
}

grpc::ServerUnaryReactor* ModelManagerService::StopAll(
    grpc::CallbackServerContext* ctx, const v1::StopAllRequest* req,
    v1::StopAllResponse* resp) {
  if (grpc::Status s = Admit(ctx); !s.ok()) return Reject(ctx, s);
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  bool force = req->force();
  manager_->loop().Post([this, r, resp, force] {
    manager_->scheduler().StopAll(
        force, [r, resp](std::vector<scheduler::ModelView> models) {
          for (const scheduler::ModelView& v : models) {
            ToProto(v, resp->add_models());
          }
          r->Finish(grpc::Status::OK);
        });
  });
  return r;
}

grpc::ServerUnaryReactor* ModelManagerService::ReloadConfig(
    grpc::CallbackServerContext* ctx, const v1::ReloadConfigRequest*,
    v1::ReloadConfigResponse* resp) {
  if (grpc::Status s = Admit(ctx); !s.ok()) return Reject(ctx, s);
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  manager_->Reload([r, resp](absl::StatusOr<ReloadResult> result) {
    if (result.ok()) {
      resp->set_revision(result->revision);
      for (const auto& id : result->diff.added) resp->add_added(id);
      for (const auto& id : result->diff.removed) resp->add_removed(id);
      for (const auto& id : result->diff.restart) resp->add_restarted(id);
      for (const auto& [id, why] : result->diff.restart_reasons) {
        (*resp->mutable_restart_reasons())[id] = why;
      }
      for (const auto& id : result->diff.update) resp->add_updated(id);
      for (const auto& w : result->warnings) resp->add_warnings(w.ToString());
    }
    r->Finish(ToGrpc(result.status()));
  });
  return r;
}

grpc::ServerWriteReactor<v1::WatchEvent>* ModelManagerService::Watch(
    grpc::CallbackServerContext* ctx, const v1::WatchRequest* req) {
  grpc::Status admit = Admit(ctx);
  std::unique_ptr<StreamLimits::Slot> slot;
  if (admit.ok()) admit = Place(ctx, "Watch", &slot);
  return NewWatchReactor(manager_, ctx, req, std::move(admit), std::move(slot));
}

grpc::ServerWriteReactor<v1::LogChunk>* ModelManagerService::StreamLogs(
    grpc::CallbackServerContext* ctx, const v1::StreamLogsRequest* req) {
  grpc::Status admit = Admit(ctx);
  std::unique_ptr<StreamLimits::Slot> slot;
  if (admit.ok()) admit = Place(ctx, "StreamLogs", &slot);
  return NewLogsReactor(manager_, ctx, req, std::move(admit), std::move(slot));
}

grpc::ServerBidiReactor<v1::AcquireRequest, v1::AcquireResponse>*
ModelManagerService::Acquire(grpc::CallbackServerContext* ctx) {
  grpc::Status admit = Admit(ctx);
  std::unique_ptr<StreamLimits::Slot> slot;
  if (admit.ok()) admit = Place(ctx, "Acquire", &slot);
  return NewAcquireReactor(manager_, ctx, std::move(admit), std::move(slot));
}

}  // namespace modelplane::rpc
