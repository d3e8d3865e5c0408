#include "server/core/watch/watch_hub.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::watch {
namespace {

using ::testing::ElementsAre;

class WatchHubTest : public ::testing::Test {
 protected:
  void Publish(const std::string& id, uint64_t revision,
               actor::State state = actor::State::kStopped,
               scheduler::ModelChange::Kind kind =
                   scheduler::ModelChange::Kind::kModified) {
    auto c = std::make_shared<config::ModelConfig>();
    c->id = id;
    scheduler::ModelView v;
    v.config = c;
    v.status.state = state;
    v.revision = revision;
    hub_.Publish(scheduler::ModelChange{kind, v});
  }

  // Drains a watcher into "TYPE model@revision" strings.
  static std::vector<std::string> Drain(Watcher& w) {
    std::vector<std::string> out;
    while (auto item = w.Next()) {
      const char* t = item->type == WatchItem::Type::kAdded      ? "ADDED"
                      : item->type == WatchItem::Type::kModified ? "MODIFIED"
                      : item->type == WatchItem::Type::kDeleted  ? "DELETED"
                      : item->type == WatchItem::Type::kSettings ? "SETTINGS"
                                                                 : "BOOKMARK";
      if (item->gpus != nullptr) {
        std::string g = "GPUS";
        for (const GpuReport& r : *item->gpus) {
          absl::StrAppend(&g, " ", r.index, ":", r.used_bytes, "/",
                          r.total_bytes, r.trusted ? "" : "!");
        }
        out.push_back(absl::StrCat(g, "@", item->revision));
        continue;
      }
      if (item->settings != nullptr) {
        out.push_back(absl::StrCat("SETTINGS ", item->settings->start_port,
                                   item->draining ? " draining" : "", "@",
                                   item->revision));
        continue;
      }
      out.push_back(item->model ? absl::StrCat(t, " ", item->model->config->id,
                                               "@", item->revision)
                                : absl::StrCat(t, "@", item->revision));
    }
    return out;
  }

  WatchHub hub_{/*history=*/4};
};

TEST_F(WatchHubTest, SnapshotIsAddedPerModelByRevisionThenABookmark) {
  Publish("b", 10, actor::State::kStopped,
          scheduler::ModelChange::Kind::kAdded);
  Publish("a", 11, actor::State::kStopped,
          scheduler::ModelChange::Kind::kAdded);
  Publish("b", 12);
  auto w = hub_.Subscribe(0, {}, nullptr);
  ASSERT_TRUE(w.ok());
  EXPECT_THAT(Drain(**w),
              ElementsAre("ADDED a@11", "ADDED b@12", "BOOKMARK@12"));
  Publish("a", 13);
  EXPECT_THAT(Drain(**w), ElementsAre("MODIFIED a@13"));
}

std::shared_ptr<const config::Config> Settings(int start_port) {
  auto c = std::make_shared<config::Config>();
  c->start_port = start_port;  // Tells one from another.
  return c;
}

// A data plane's watcher gets the settings before the first bookmark, and
// a reload's settings in order: after its model changes, before the
// bookmark that follows them. Other watchers never see them.
TEST_F(WatchHubTest, SettingsTravelInTheStreamsOrderToWatchersThatAsk) {
  Publish("a", 10, actor::State::kStopped,
          scheduler::ModelChange::Kind::kAdded);
  hub_.PublishSettings(Settings(5800));
  auto plane = hub_.Subscribe(0, {}, nullptr, /*settings=*/true);
  auto other = hub_.Subscribe(0, {}, nullptr);
  ASSERT_TRUE(plane.ok() && other.ok());
  EXPECT_THAT(Drain(**plane),
              ElementsAre("ADDED a@10", "SETTINGS 5800@10", "BOOKMARK@10"));
  EXPECT_THAT(Drain(**other), ElementsAre("ADDED a@10", "BOOKMARK@10"));
  // A reload: a model added, the settings changed, a bookmark.
  Publish("b", 11, actor::State::kStopped,
          scheduler::ModelChange::Kind::kAdded);
  hub_.PublishSettings(Settings(6000));
  hub_.PublishBookmark();
  EXPECT_THAT(Drain(**plane),
              ElementsAre("ADDED b@11", "SETTINGS 6000@11", "BOOKMARK@11"));
  EXPECT_THAT(Drain(**other), ElementsAre("ADDED b@11", "BOOKMARK@11"));
  // A slow watcher holds only the newest settings, still ahead of the
  // bookmark that covers them.
  hub_.PublishSettings(Settings(6100));
  hub_.PublishBookmark();
  Publish("a", 12);
  hub_.PublishSettings(Settings(6200));
  EXPECT_THAT(Drain(**plane),
              ElementsAre("MODIFIED a@12", "SETTINGS 6200@12", "BOOKMARK@12"));
  // A resume gets the settings in force too.
  auto resumed = hub_.Subscribe(11, {}, nullptr, /*settings=*/true);
  ASSERT_TRUE(resumed.ok());
  EXPECT_THAT(Drain(**resumed),
              ElementsAre("MODIFIED a@12", "SETTINGS 6200@12", "BOOKMARK@12"));
}

// A drain travels as settings: to the watchers that asked, with the
// settings in force; a new watcher gets it with its first settings; a
// reload's settings keep it.
std::vector<GpuReport> Gpus(uint64_t used0, uint64_t used1,
                            bool trusted = true) {
  std::vector<GpuReport> g(2);
  g[0].index = 0;
  g[0].total_bytes = 100;
  g[0].used_bytes = used0;
  g[1].index = 1;
  g[1].total_bytes = 200;
  g[1].used_bytes = used1;
  g[1].trusted = trusted;
  return g;
}

TEST_F(WatchHubTest, GpusGoToWatchersThatAskTheLatestOnly) {
  Publish("a", 1, actor::State::kStopped, scheduler::ModelChange::Kind::kAdded);
  auto none = *hub_.Subscribe(0, {}, nullptr, /*settings=*/true);
  auto early = *hub_.Subscribe(0, {}, nullptr, false, /*gpus=*/true);
  // No GPUs published yet: nothing of them in the snapshot.
  EXPECT_THAT(Drain(*early), ElementsAre("ADDED a@1", "BOOKMARK@1"));
  int wakes = 0;
  hub_.PublishGpus(Gpus(10, 20));
  auto w = *hub_.Subscribe(
      0, {}, [&] { ++wakes; }, false, /*gpus=*/true);
  // The GPUs in force, before the first bookmark.
  EXPECT_THAT(Drain(*w), ElementsAre("ADDED a@1", "GPUS 0:10/100 1:20/200@1",
                                     "BOOKMARK@1"));
  hub_.PublishGpus(Gpus(30, 20));
  Publish("a", 2);
  hub_.PublishGpus(Gpus(30, 40, /*trusted=*/false));
  EXPECT_EQ(wakes, 3);
  // A slow watcher gets the latest GPUs once, after the change before it.
  EXPECT_THAT(Drain(*w),
              ElementsAre("MODIFIED a@2", "GPUS 0:30/100 1:40/200!@2"));
  EXPECT_THAT(Drain(*early),
              ElementsAre("MODIFIED a@2", "GPUS 0:30/100 1:40/200!@2"));
  // One that did not ask gets none (its snapshot, not yet read, merged
  // with the change).
  EXPECT_THAT(Drain(*none), ElementsAre("ADDED a@2", "BOOKMARK@2"));
}

TEST_F(WatchHubTest, DrainingTravelsWithTheSettings) {
  hub_.PublishSettings(Settings(5800));
  auto plane = hub_.Subscribe(0, {}, nullptr, /*settings=*/true);
  auto other = hub_.Subscribe(0, {}, nullptr);
  ASSERT_TRUE(plane.ok() && other.ok());
  Drain(**plane);
  Drain(**other);
  hub_.PublishDraining(true);
  EXPECT_THAT(Drain(**plane), ElementsAre("SETTINGS 5800 draining@0"));
  EXPECT_THAT(Drain(**other), ElementsAre());
  auto late = hub_.Subscribe(0, {}, nullptr, /*settings=*/true);
  ASSERT_TRUE(late.ok());
  EXPECT_THAT(Drain(**late),
              ElementsAre("SETTINGS 5800 draining@0", "BOOKMARK@0"));
  hub_.PublishSettings(Settings(6000));
  EXPECT_THAT(Drain(**plane), ElementsAre("SETTINGS 6000 draining@0"));
  hub_.PublishDraining(false);
  EXPECT_THAT(Drain(**plane), ElementsAre("SETTINGS 6000@0"));
}

TEST_F(WatchHubTest, ResumesFromARevisionInsideTheHistory) {
  for (uint64_t r = 1; r <= 6; ++r) Publish(r % 2 ? "a" : "b", r);
  auto w = hub_.Subscribe(4, {}, nullptr);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_THAT(Drain(**w),
              ElementsAre("MODIFIED a@5", "MODIFIED b@6", "BOOKMARK@6"));
}

TEST_F(WatchHubTest, TooOldOrTooNewIsOutOfRange) {
  for (uint64_t r = 1; r <= 6; ++r) Publish("a", r);
  EXPECT_EQ(hub_.Subscribe(1, {}, nullptr).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(hub_.Subscribe(7, {}, nullptr).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(hub_.Subscribe(2, {}, nullptr).ok());  // Floor: 2 was dropped
                                                     // last, 3.. retained.
}

TEST_F(WatchHubTest, RevisionsBeforeTheFirstOneAreAnotherManagers) {
  Publish("a", 1000);
  EXPECT_EQ(hub_.Subscribe(5, {}, nullptr).status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(hub_.Subscribe(999, {}, nullptr).ok());
}

TEST_F(WatchHubTest, SlowWatcherSkipsIntermediateStatesInOrder) {
  auto w = *hub_.Subscribe(0, {}, nullptr);
  Drain(*w);
  Publish("a", 1);
  Publish("b", 2);
  Publish("a", 3);  // Replaces a@1, after b@2.
  Publish("c", 4);
  EXPECT_THAT(Drain(*w),
              ElementsAre("MODIFIED b@2", "MODIFIED a@3", "MODIFIED c@4"));
}

TEST_F(WatchHubTest, AChangeBeforeTheInitialBookmarkKeepsTheSnapshotComplete) {
  Publish("a", 1, actor::State::kStopped, scheduler::ModelChange::Kind::kAdded);
  Publish("b", 2, actor::State::kStopped, scheduler::ModelChange::Kind::kAdded);
  auto w = *hub_.Subscribe(0, {}, nullptr);
  Publish("a", 3, actor::State::kStarting);  // Before the client pulled.
  EXPECT_THAT(Drain(*w), ElementsAre("ADDED b@2", "ADDED a@3", "BOOKMARK@3"));
}

TEST_F(WatchHubTest, FiltersByModelAndWakes) {
  int wakes = 0;
  auto w = *hub_.Subscribe(0, {"a"}, [&] { ++wakes; });
  Drain(*w);
  Publish("b", 1);
  EXPECT_EQ(wakes, 0);
  Publish("a", 2);
  EXPECT_EQ(wakes, 1);
  EXPECT_THAT(Drain(*w), ElementsAre("MODIFIED a@2"));
  hub_.PublishBookmark();
  EXPECT_THAT(Drain(*w), ElementsAre("BOOKMARK@2"));
}

TEST_F(WatchHubTest, DeletedModelsLeaveTheSnapshot) {
  Publish("a", 1, actor::State::kStopped, scheduler::ModelChange::Kind::kAdded);
  Publish("a", 2, actor::State::kStopped,
          scheduler::ModelChange::Kind::kDeleted);
  auto w = *hub_.Subscribe(0, {}, nullptr);
  EXPECT_THAT(Drain(*w), ElementsAre("BOOKMARK@2"));
  auto old = *hub_.Subscribe(1, {}, nullptr);
  EXPECT_THAT(Drain(*old), ElementsAre("DELETED a@2", "BOOKMARK@2"));
}

TEST_F(WatchHubTest, CancelledWatcherGetsNothing) {
  int wakes = 0;
  auto w = *hub_.Subscribe(0, {}, [&] { ++wakes; });
  w->Cancel();
  Publish("a", 1);
  EXPECT_EQ(wakes, 0);
  EXPECT_FALSE(w->Next().has_value());
}

}  // namespace
}  // namespace modelplane::watch
