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
                                                                 : "BOOKMARK";
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
