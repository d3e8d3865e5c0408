// The change feed behind the Watch RPC: every model change, stamped with its
// global revision, kept in a bounded history for resumption, and fanned out
// to watchers that each pull at their own pace.
//
// A watcher never blocks the publisher. Each watcher holds at most one
// undelivered change per model: a newer change of a model replaces the older
// one and moves to the end, so a slow watcher may skip a model's intermediate
// states but always sees revisions in increasing order.
//
//   WatchHub hub(/*history=*/1024);
//   hub.Publish(change);                            // The loop thread.
//   auto w = hub.Subscribe(0, {}, [&] { wake(); });  // Any thread.
//   while (auto e = (*w)->Next()) Send(*e);          // Any thread.
//
// Thread-safe.
#ifndef MODELPLANE_SERVER_CORE_WATCH_WATCH_HUB_H_
#define MODELPLANE_SERVER_CORE_WATCH_WATCH_HUB_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/core/scheduler/scheduler.h"

namespace modelplane::watch {

// A GPU's memory as watchers see it (ListModels' figures).
struct GpuReport {
  int index = 0;
  std::string name;
  std::string uuid;
  uint64_t total_bytes = 0;
  uint64_t used_bytes = 0;
  bool trusted = true;
};

struct WatchItem {
  enum class Type { kAdded, kModified, kDeleted, kBookmark, kSettings, kGpus };
  Type type;
  uint64_t revision;
  std::optional<scheduler::ModelView> model;  // Unset for kBookmark.
  // kSettings: the config whose data-plane settings (API keys, peers,
  // selectors, ...) are in force from here on.
  std::shared_ptr<const config::Config> settings = nullptr;
  // kSettings: the manager is draining (it starts no model).
  bool draining = false;
  // kGpus: every GPU.
  std::shared_ptr<const std::vector<GpuReport>> gpus = nullptr;
};

class WatchHub;

class Watcher {
 public:
  // The next item to send, or nullopt when there is none yet.
  std::optional<WatchItem> Next();
  // Stops delivery; the wake callback is not called after Cancel returns.
  void Cancel();

 private:
  friend class WatchHub;
  struct Pending {
    WatchItem item;
    std::string model;
  };
  bool Wants(const std::string& model) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Replaces any pending item of the same slot (the same model, the
  // bookmark, the settings), appending this one.
  void Push(WatchItem item, const std::string& model)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::set<std::string> models_ ABSL_GUARDED_BY(mu_);  // Empty: all.
  bool settings_ ABSL_GUARDED_BY(mu_) = false;         // Wants kSettings items.
  bool gpus_ ABSL_GUARDED_BY(mu_) = false;             // Wants kGpus items.
  std::deque<Pending> pending_ ABSL_GUARDED_BY(mu_);
  std::function<void()> wake_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

class WatchHub {
 public:
  explicit WatchHub(size_t history = 1024) : history_size_(history) {}

  // Records a change (revisions must grow) and wakes the watchers.
  void Publish(const scheduler::ModelChange& change);

  // A bookmark at the current revision to every watcher: a revision that
  // advanced for models a watcher filters out still reaches it.
  void PublishBookmark();

  // The data-plane settings in force from now on (at start, and after a
  // reload that changed them): a kSettings item to every watcher that asked
  // for settings. Publish the reload's model changes first and a bookmark
  // after, so the bookmark covers both.
  void PublishSettings(std::shared_ptr<const config::Config> config);
  // The manager drains (or takes starts again): a kSettings item, with the
  // settings in force, to every watcher that asked for settings.
  void PublishDraining(bool draining);
  // The GPUs' memory now: a kGpus item to every watcher that asked for
  // GPUs (the caller decides when it changed enough to tell).
  void PublishGpus(std::vector<GpuReport> gpus);

  // since_revision 0: a snapshot (ADDED per model, by revision), then a
  // BOOKMARK, then changes. Otherwise the changes after it from the history,
  // then a BOOKMARK, then changes; OutOfRange when it is older than the
  // history or newer than the current revision. `models`: canonical ids
  // (empty: all). `settings`: also the settings in force, before that first
  // BOOKMARK, and every later change of them; `gpus` likewise the GPUs.
  // `wake` is called (on the publishing thread) when items arrive; it must
  // not block.
  absl::StatusOr<std::shared_ptr<Watcher>> Subscribe(
      uint64_t since_revision, std::vector<std::string> models,
      std::function<void()> wake, bool settings = false, bool gpus = false);

  uint64_t revision() const;
  // Watchers subscribed and not cancelled (modelmanager's /metrics).
  size_t watchers() const;

 private:
  struct Change {
    uint64_t revision;
    std::string model;
    WatchItem::Type type;
    scheduler::ModelView view;
  };

  // A bookmark, or the settings or the GPUs (to the watchers that asked),
  // to every watcher. `new_settings`, `new_draining`, `new_gpus`: the state
  // changed first (null: kept).
  void PushToAll(
      WatchItem::Type type,
      const std::shared_ptr<const config::Config>* new_settings,
      const bool* new_draining,
      const std::shared_ptr<const std::vector<GpuReport>>* new_gpus = nullptr);

  mutable absl::Mutex mu_;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  size_t history_size_;
  std::deque<Change> history_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Change> current_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const config::Config> settings_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const std::vector<GpuReport>> gpus_ ABSL_GUARDED_BY(mu_);
  uint64_t revision_ ABSL_GUARDED_BY(mu_) = 0;
  // The revision just before the oldest change in the history.
  uint64_t history_floor_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::weak_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace modelplane::watch

#endif  // MODELPLANE_SERVER_CORE_WATCH_WATCH_HUB_H_
