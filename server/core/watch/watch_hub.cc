#include "server/core/watch/watch_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace modelplane::watch {
namespace {

// The pending-queue key of bookmarks and settings (no model id can be
// empty).
const char kBookmarkKey[] = "";

WatchItem::Type Merge(WatchItem::Type older, WatchItem::Type newer) {
  using T = WatchItem::Type;
  if (older == T::kAdded && newer == T::kModified) return T::kAdded;
  if (older == T::kDeleted && newer == T::kAdded) return T::kModified;
  return newer;
}

}  // namespace

bool Watcher::Wants(const std::string& model) const {
  return models_.empty() || models_.count(model) > 0;
}

void Watcher::Push(WatchItem item, const std::string& model) {
  using T = WatchItem::Type;
  auto slot = [](T t) {
    return t == T::kBookmark   ? 1
           : t == T::kSettings ? 2
           : t == T::kGpus     ? 3
                               : 0;
  };
  auto old = std::find_if(pending_.begin(), pending_.end(), [&](auto& p) {
    return slot(p.item.type) == slot(item.type) && p.model == model;
  });
  bool moved_past_bookmark = false;
  if (old != pending_.end()) {
    if (item.type != WatchItem::Type::kBookmark) {
      if (old->item.type == WatchItem::Type::kAdded &&
          item.type == WatchItem::Type::kDeleted) {
        pending_.erase(old);  // Never seen: nothing to tell.
        return;
      }
      item.type = Merge(old->item.type, item.type);
      moved_past_bookmark = std::any_of(old + 1, pending_.end(), [](auto& p) {
        return p.item.type == WatchItem::Type::kBookmark;
      });
    }
    pending_.erase(old);
  }
  uint64_t revision = item.revision;
  pending_.push_back(Pending{std::move(item), model});
  if (moved_past_bookmark) {
    // The bookmark promised a complete state; it now follows this change.
    auto b = std::find_if(pending_.begin(), pending_.end(), [](auto& p) {
      return p.item.type == WatchItem::Type::kBookmark;
    });
    pending_.erase(b);
    pending_.push_back(
        Pending{WatchItem{WatchItem::Type::kBookmark, revision, std::nullopt},
                kBookmarkKey});
  }
}

std::optional<WatchItem> Watcher::Next() {
  absl::MutexLock lock(&mu_);
  if (pending_.empty() || cancelled_) return std::nullopt;
  WatchItem item = std::move(pending_.front().item);
  pending_.pop_front();
  return item;
}

void Watcher::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  pending_.clear();
  wake_ = nullptr;
}

void WatchHub::Publish(const scheduler::ModelChange& change) {
  WatchItem::Type type = change.kind == scheduler::ModelChange::Kind::kAdded
                             ? WatchItem::Type::kAdded
                         : change.kind == scheduler::ModelChange::Kind::kDeleted
                             ? WatchItem::Type::kDeleted
                             : WatchItem::Type::kModified;
  const std::string& id = change.view.config->id;
  std::vector<std::shared_ptr<Watcher>> live;
  uint64_t revision;
  {
    absl::MutexLock lock(&mu_);
    revision_ = std::max(revision_ + 1, change.view.revision);
    revision = revision_;
    // Revisions before this process's first one are another manager's.
    if (history_floor_ == 0) history_floor_ = revision - 1;
    Change c{revision, id, type, change.view};
    c.view.revision = revision;
    history_.push_back(c);
    while (history_.size() > history_size_) {
      history_floor_ = history_.front().revision;
      history_.pop_front();
    }
    if (type == WatchItem::Type::kDeleted) {
      current_.erase(id);
    } else {
      current_[id] = std::move(c);
    }
    for (auto it = watchers_.begin(); it != watchers_.end();) {
      if (auto w = it->lock()) {
        live.push_back(std::move(w));
        ++it;
      } else {
        it = watchers_.erase(it);
      }
    }
  }
  for (auto& w : live) {
    std::function<void()> wake;
    {
      absl::MutexLock lock(&w->mu_);
      if (w->cancelled_ || !w->Wants(id)) continue;
      scheduler::ModelView view = change.view;
      view.revision = revision;
      w->Push(WatchItem{type, revision, std::move(view)}, id);
      wake = w->wake_;
    }
    if (wake) wake();
  }
}

void WatchHub::PublishSettings(std::shared_ptr<const config::Config> config) {
  PushToAll(WatchItem::Type::kSettings, &config, nullptr);
}

void WatchHub::PublishDraining(bool draining) {
  PushToAll(WatchItem::Type::kSettings, nullptr, &draining);
}

void WatchHub::PublishGpus(std::vector<GpuReport> gpus) {
  auto list = std::make_shared<const std::vector<GpuReport>>(std::move(gpus));
  PushToAll(WatchItem::Type::kGpus, nullptr, nullptr, &list);
}

void WatchHub::PublishBookmark() {
  PushToAll(WatchItem::Type::kBookmark, nullptr, nullptr);
}

void WatchHub::PushToAll(
    WatchItem::Type type,
    const std::shared_ptr<const config::Config>* new_settings,
    const bool* new_draining,
    const std::shared_ptr<const std::vector<GpuReport>>* new_gpus) {
  bool is_settings = type == WatchItem::Type::kSettings;
  bool is_gpus = type == WatchItem::Type::kGpus;
  std::vector<std::function<void()>> wakes;
  {
    // The change, and its pushes to the watchers, under the hub's lock (as
    // Subscribe: the hub's, then a watcher's): two publishers cannot leave
    // an older state in the hub or last in a watcher.
    absl::MutexLock lock(&mu_);
    if (new_settings != nullptr) settings_ = *new_settings;
    if (new_draining != nullptr) draining_ = *new_draining;
    if (new_gpus != nullptr) gpus_ = *new_gpus;
    std::shared_ptr<const config::Config> settings =
        is_settings ? settings_ : nullptr;
    bool draining = is_settings && draining_;
    for (auto& weak : watchers_) {
      std::shared_ptr<Watcher> w = weak.lock();
      if (w == nullptr) continue;
      absl::MutexLock wlock(&w->mu_);
      if (w->cancelled_ || (is_settings && !w->settings_) ||
          (is_gpus && !w->gpus_)) {
        continue;
      }
      WatchItem item{type, revision_, std::nullopt, settings, draining};
      if (is_gpus) item.gpus = gpus_;
      w->Push(std::move(item), kBookmarkKey);
      if (w->wake_) wakes.push_back(w->wake_);
    }
  }
  for (auto& wake : wakes) wake();
}

absl::StatusOr<std::shared_ptr<Watcher>> WatchHub::Subscribe(
    uint64_t since_revision, std::vector<std::string> models,
    std::function<void()> wake, bool settings, bool gpus) {
  auto w = std::make_shared<Watcher>();
  absl::MutexLock lock(&mu_);
  absl::MutexLock wlock(&w->mu_);
  w->models_.insert(models.begin(), models.end());
  w->settings_ = settings;
  w->gpus_ = gpus;
  w->wake_ = std::move(wake);
  if (since_revision == 0) {
    std::vector<const Change*> snapshot;
    for (const auto& [id, c] : current_) {
      if (w->Wants(id)) snapshot.push_back(&c);
    }
    std::sort(snapshot.begin(), snapshot.end(),
              [](const Change* a, const Change* b) {
                return a->revision < b->revision;
              });
    for (const Change* c : snapshot) {
      w->Push(WatchItem{WatchItem::Type::kAdded, c->revision, c->view},
              c->model);
    }
  } else {
    if (since_revision > revision_ || since_revision < history_floor_) {
      return absl::OutOfRangeError(absl::StrCat(
          "revision ", since_revision, " is outside the retained history (",
          history_floor_, "..", revision_, "); relist with since_revision 0"));
    }
    for (const Change& c : history_) {
      if (c.revision <= since_revision || !w->Wants(c.model)) continue;
      w->Push(WatchItem{c.type, c.revision, c.view}, c.model);
    }
  }
  if (settings && settings_ != nullptr) {
    w->Push(WatchItem{WatchItem::Type::kSettings, revision_, std::nullopt,
                      settings_, draining_},
            kBookmarkKey);
  }
  if (gpus && gpus_ != nullptr) {
    WatchItem item{WatchItem::Type::kGpus, revision_, std::nullopt};
    item.gpus = gpus_;
    w->Push(std::move(item), kBookmarkKey);
  }
  w->Push(WatchItem{WatchItem::Type::kBookmark, revision_, std::nullopt},
          kBookmarkKey);
  watchers_.push_back(w);
  return w;
}

size_t WatchHub::watchers() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (const auto& w : watchers_) {
    if (auto live = w.lock()) {
      absl::MutexLock wl(&live->mu_);
      if (!live->cancelled_) ++n;
    }
  }
  return n;
}

uint64_t WatchHub::revision() const {
  absl::MutexLock lock(&mu_);
  return revision_;
}

}  // namespace modelplane::watch
