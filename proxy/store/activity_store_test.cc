// The activity store on a real SQLite file: what goes in comes out, paged
// and filtered; it survives a reopen; it is pruned to its bound; a second
// process's open is refused.
#include "proxy/store/activity_store.h"

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::proxy::store {
namespace {

std::string TempPath(const char* name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  unlink(path.c_str());
  unlink((path + "-wal").c_str());
  unlink((path + "-shm").c_str());
  return path;
}

answers::ActivityEntry Entry(uint64_t id, const std::string& model,
                             int status) {
  answers::ActivityEntry e;
  e.id = id;
  e.unix_ms = 1700000000000 + static_cast<int64_t>(id);
  e.model = model;
  e.node = "127.0.0.1:50051";
  e.path = "/v1/chat/completions";
  e.status = status;
  e.input_tokens = id;
  e.output_tokens = 2 * id;
  e.tokens_per_second = 40.5;
  e.load_wait_ms = 1200;
  e.duration_ms = 10.25;
  if (status >= 400) e.error = "no";
  return e;
}

ActivityPage Page(ActivityStore& store, ActivityQuery q) {
  ActivityPage page;
  absl::Notification done;
  store.Query(std::move(q), [&](absl::StatusOr<ActivityPage> p) {
    EXPECT_TRUE(p.ok()) << p.status();
    if (p.ok()) page = *std::move(p);
    done.Notify();
  });
  done.WaitForNotification();
  return page;
}

std::vector<uint64_t> Ids(const ActivityPage& p) {
  std::vector<uint64_t> ids;
  for (const auto& e : p.entries) ids.push_back(e.id);
  return ids;
}

TEST(ActivityStoreTest, PagesFiltersAndSurvivesAReopen) {
  std::string path = TempPath("activity.db");
  {
    auto store = ActivityStore::Open(path, 1000);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->max_id(), 0u);
    std::vector<answers::ActivityEntry> batch;
    for (uint64_t i = 1; i <= 10; ++i) {
      batch.push_back(Entry(i, i % 2 ? "a" : "b", i == 7 ? 503 : 200));
    }
    (*store)->Add(std::move(batch));
    ActivityPage p = Page(**store, {"", 0, 0, 4});
    EXPECT_THAT(Ids(p), ::testing::ElementsAre(10, 9, 8, 7));
    EXPECT_TRUE(p.more);
    p = Page(**store, {"", 0, 7, 100});
    EXPECT_THAT(Ids(p), ::testing::ElementsAre(6, 5, 4, 3, 2, 1));
    EXPECT_FALSE(p.more);
    EXPECT_THAT(Ids(Page(**store, {"a", 0, 0, 100})),
                ::testing::ElementsAre(9, 7, 5, 3, 1));
    p = Page(**store, {"a", 503, 0, 100});
    ASSERT_THAT(Ids(p), ::testing::ElementsAre(7));
    const answers::ActivityEntry& e = p.entries[0];
    EXPECT_EQ(e.error, "no");
    EXPECT_EQ(e.output_tokens, 14u);
    EXPECT_FALSE(e.cached_tokens.has_value());
    EXPECT_EQ(e.load_wait_ms, 1200);
    EXPECT_EQ(e.node, "127.0.0.1:50051");
  }
  auto again = ActivityStore::Open(path, 1000);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->max_id(), 10u);
  EXPECT_EQ((*again)->rows(), 10u);
  // An id at or below the largest stored at the open: the stored one stays.
  (*again)->Add({Entry(10, "zzz", 200)});
  EXPECT_EQ(Page(**again, {"", 0, 0, 1}).entries[0].model, "b");
}

// Batches whose ids interleave (workers hand theirs over independently):
// pages still come newest first, whole and in order.
TEST(ActivityStoreTest, InterleavedBatchesPageInIdOrder) {
  std::string path = TempPath("interleaved.db");
  auto store = ActivityStore::Open(path, 640);  // Five entries a row.
  ASSERT_TRUE(store.ok()) << store.status();
  for (uint64_t parity : {1, 0}) {
    std::vector<answers::ActivityEntry> batch;
    for (uint64_t i = 1; i <= 100; ++i) {
      if (i % 2 == parity) batch.push_back(Entry(i, i % 3 ? "a" : "b", 200));
    }
    (*store)->Add(std::move(batch));
    (*store)->Flush();
  }
  for (const std::string model : {"", "b"}) {
    std::vector<uint64_t> walked;
    uint64_t before = 0;
    for (int pages = 0; pages < 100; ++pages) {
      ActivityPage p = Page(**store, {model, 0, before, 7});
      for (uint64_t id : Ids(p)) walked.push_back(id);
      if (!p.more) break;
      before = p.entries.back().id;
    }
    std::vector<uint64_t> want;
    for (uint64_t i = 100; i >= 1; --i) {
      if (model.empty() || i % 3 == 0) want.push_back(i);
    }
    EXPECT_EQ(walked, want) << "model " << model;
  }
}

// Hand-overs that come close together (two workers', their ids
// interleaved, one of them out of order) are gathered for one write, in id
// order; a query right after them, with no Flush, ends the gathering (an
// hour here: the test hangs if it does not) and sees every one.
TEST(ActivityStoreTest, HandOversCloseTogetherAreSeenByTheNextQuery) {
  std::string path = TempPath("gathered.db");
  {
    auto store = ActivityStore::Open(path, 640);  // Five entries a row.
    ASSERT_TRUE(store.ok()) << store.status();
    (*store)->set_gather_for_testing(absl::Hours(1));
    for (uint64_t round = 0; round < 4; ++round) {
      for (uint64_t parity : {0, 1}) {
        std::vector<answers::ActivityEntry> batch;
        for (uint64_t i = 1; i <= 25; ++i) {
          uint64_t id = round * 50 + 2 * i - parity;
          batch.push_back(Entry(id, parity ? "a" : "b", 200));
        }
        if (round == 2 && parity == 1) std::swap(batch[3], batch[17]);
        (*store)->Add(std::move(batch));
      }
    }
    std::vector<uint64_t> walked;
    uint64_t before = 0;
    for (int pages = 0; pages < 100; ++pages) {
      ActivityPage p = Page(**store, {"", 0, before, 9});
      for (uint64_t id : Ids(p)) walked.push_back(id);
      if (!p.more) break;
      before = p.entries.back().id;
    }
    std::vector<uint64_t> want;
    for (uint64_t i = 200; i >= 1; --i) want.push_back(i);
    EXPECT_EQ(walked, want);
    EXPECT_EQ((*store)->rows(), 200u);
    // A hand-over leaves the caller's vector empty, with the room of one
    // written before it.
    std::vector<answers::ActivityEntry> more;
    more.push_back(Entry(201, "a", 200));
    (*store)->HandOver(&more);
    EXPECT_TRUE(more.empty());
    EXPECT_GE(more.capacity(), 25u);
    (*store)->Flush();  // Ends the hour's wait too.
    EXPECT_EQ((*store)->rows(), 201u);
  }  // The stop ends a wait as well.
  // One write in id order: rows of five consecutive ids, in order.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT min_id, max_id, count FROM "
                               "activity_batch ORDER BY seq",
                               -1, &s, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  uint64_t next = 1;
  while (sqlite3_step(s) == SQLITE_ROW && next <= 200) {
    EXPECT_EQ(sqlite3_column_int64(s, 0), static_cast<int64_t>(next));
    EXPECT_EQ(sqlite3_column_int64(s, 1), static_cast<int64_t>(next + 4));
    EXPECT_EQ(sqlite3_column_int64(s, 2), 5);
    next += 5;
  }
  EXPECT_EQ(next, 201u);
  sqlite3_finalize(s);
  sqlite3_close(db);
}

// The writer's order: every hand-over's entries above the stored ids, in
// id order, whatever order the hand-overs came in and one of them out of
// order within itself.
TEST(ActivityStoreTest, HandOversAreMergedInIdOrder) {
  std::vector<std::vector<answers::ActivityEntry>> hand_overs(5);
  for (uint64_t id : {9, 11, 15, 20})
    hand_overs[0].push_back(Entry(id, "m", 200));
  for (uint64_t id : {10, 12, 13, 19})
    hand_overs[1].push_back(Entry(id, "m", 200));
  for (uint64_t id : {3, 17, 14, 21})
    hand_overs[2].push_back(Entry(id, "m", 200));
  for (uint64_t id : {4, 5}) hand_overs[4].push_back(Entry(id, "m", 200));
  std::vector<uint64_t> ids;
  for (const answers::ActivityEntry* e : NewestInIdOrder(hand_overs, 8)) {
    ids.push_back(e->id);
  }
  EXPECT_THAT(
      ids, ::testing::ElementsAre(9, 10, 11, 12, 13, 14, 15, 17, 19, 20, 21));
  EXPECT_TRUE(NewestInIdOrder(hand_overs, 21).empty());
  // A backlog of more hand-overs than are merged one by one: ids dealt
  // round-robin to 20 of them, sorted all the same.
  std::vector<std::vector<answers::ActivityEntry>> backlog(20);
  for (uint64_t id = 100; id >= 1; --id) {
    backlog[id % 20].push_back(Entry(id, "m", 200));
  }
  std::vector<uint64_t> all;
  for (const answers::ActivityEntry* e : NewestInIdOrder(backlog, 0)) {
    all.push_back(e->id);
  }
  std::vector<uint64_t> want(100);
  for (uint64_t i = 0; i < 100; ++i) want[i] = i + 1;
  EXPECT_EQ(all, want);
}

// Entries that come one at a time fill a row instead of making a row
// each; the view shows one row per entry to the sqlite3 shell.
TEST(ActivityStoreTest, SmallBatchesShareARowAndTheViewShowsEntries) {
  std::string path = TempPath("small.db");
  {
    auto store = ActivityStore::Open(path, 1000000);
    ASSERT_TRUE(store.ok()) << store.status();
    for (uint64_t i = 1; i <= 300; ++i) {
      (*store)->Add({Entry(i, "m", i == 300 ? 503 : 200)});
      (*store)->Flush();
    }
    EXPECT_EQ((*store)->rows(), 300u);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT (SELECT COUNT(*) FROM activity_batch),"
                               " (SELECT COUNT(*) FROM activity),"
                               " (SELECT model || ' ' || status || ' ' ||"
                               " duration_ms || ' ' || error FROM activity"
                               " ORDER BY id DESC LIMIT 1)",
                               -1, &s, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(s, 0), 2);  // 256 and 44.
  EXPECT_EQ(sqlite3_column_int(s, 1), 300);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 2)),
               "m 503 10.25 no");
  sqlite3_finalize(s);
  sqlite3_close(db);
}

// A file of the store's first schema (a row per entry) is converted when
// opened, every field kept.
TEST(ActivityStoreTest, AVersionOneFileIsConverted) {
  std::string path = TempPath("v1.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(
          db,
          "CREATE TABLE activity (id INTEGER PRIMARY KEY, unix_ms INTEGER NOT"
          " NULL, model TEXT NOT NULL, node TEXT NOT NULL, path TEXT NOT NULL,"
          " status INTEGER NOT NULL, input_tokens INTEGER, output_tokens"
          " INTEGER, cached_tokens INTEGER, draft_tokens INTEGER,"
          " draft_accepted_tokens INTEGER, prompt_tokens_per_second REAL,"
          " tokens_per_second REAL, time_to_first_token_ms REAL,"
          " queue_wait_ms REAL, load_wait_ms REAL, duration_ms REAL NOT NULL,"
          " error TEXT);"
          "CREATE INDEX activity_model ON activity (model, id);"
          "CREATE INDEX activity_error ON activity (status, id) WHERE status"
          " != 200;"
          "INSERT INTO activity VALUES (1, 1700000000001, 'a', 'n1', '/v1/x',"
          " 200, 5, 6, NULL, NULL, NULL, NULL, 31.5, NULL, NULL, NULL, 7.5,"
          " NULL), (2, 1700000000002, 'b', 'n2', '/v1/y', 503, NULL, NULL,"
          " NULL, NULL, NULL, NULL, NULL, NULL, 2.25, NULL, 9, 'gone');"
          "PRAGMA user_version=1;",
          nullptr, nullptr, nullptr),
      SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);
  {
    auto store = ActivityStore::Open(path, 1000);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->max_id(), 2u);
    EXPECT_EQ((*store)->rows(), 2u);
    ActivityPage p = Page(**store, {"", 0, 0, 10});
    ASSERT_THAT(Ids(p), ::testing::ElementsAre(2, 1));
    EXPECT_EQ(p.entries[0].error, "gone");
    EXPECT_EQ(p.entries[0].queue_wait_ms, 2.25);
    EXPECT_EQ(p.entries[0].status, 503);
    EXPECT_EQ(p.entries[1].node, "n1");
    EXPECT_EQ(p.entries[1].output_tokens, 6u);
    EXPECT_EQ(p.entries[1].tokens_per_second, 31.5);
    EXPECT_FALSE(p.entries[1].cached_tokens.has_value());
    (*store)->Add({Entry(3, "c", 200)});
  }
  // Converted into batches, not a row per entry.
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT COUNT(*), (SELECT COUNT(*) FROM"
                               " sqlite_master WHERE name = 'activity_v1')"
                               " FROM activity_batch",
                               -1, &s, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(s, 0), 1);
  EXPECT_EQ(sqlite3_column_int(s, 1), 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  // Opened again: the version 2 it was left at.
  auto store = ActivityStore::Open(path, 1000);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->max_id(), 3u);
  EXPECT_EQ((*store)->rows(), 3u);
  EXPECT_THAT(Ids(Page(**store, {"", 0, 0, 10})),
              ::testing::ElementsAre(3, 2, 1));
}

TEST(ActivityStoreTest, PrunedToItsBound) {
  std::string path = TempPath("pruned.db");
  auto store = ActivityStore::Open(path, 100);
  ASSERT_TRUE(store.ok()) << store.status();
  for (uint64_t b = 0; b < 10; ++b) {
    std::vector<answers::ActivityEntry> batch;
    for (uint64_t i = 1; i <= 50; ++i)
      batch.push_back(Entry(b * 50 + i, "m", 200));
    (*store)->Add(std::move(batch));
  }
  (*store)->Flush();
  uint64_t rows = (*store)->rows();
  EXPECT_GE(rows, 100u);
  EXPECT_LE(rows, 150u);  // At most a batch past the bound.
  ActivityPage p = Page(**store, {"", 0, 0, 1000});
  EXPECT_EQ(p.entries.front().id, 500u);
  EXPECT_EQ(p.entries.size(), rows);
}

TEST(ActivityStoreTest, OneProcessPerFile) {
  std::string path = TempPath("locked.db");
  auto store = ActivityStore::Open(path, 100);
  ASSERT_TRUE(store.ok()) << store.status();
  (*store)->Add({Entry(1, "m", 200)});
  (*store)->Flush();
  // Another process: refused while this one holds it.
  pid_t pid = fork();
  if (pid == 0) {
    auto other = ActivityStore::Open(path, 100);
    _exit(other.ok() ? 0 : 3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_FALSE(ActivityStore::Open("/nonexistent-dir/x.db", 100).ok());
}

TEST(ActivityStoreTest, AnotherSchemasFileIsRefused) {
  std::string path = TempPath("other.db");
  {
    auto store = ActivityStore::Open(path, 100);
    ASSERT_TRUE(store.ok()) << store.status();
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(db);
  auto again = ActivityStore::Open(path, 100);
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(std::string(again.status().message()),
              ::testing::HasSubstr("schema version 99"));
}

}  // namespace
}  // namespace modelplane::proxy::store
