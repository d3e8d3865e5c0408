// The activity log on disk (config `store.path`, llama-swap's key): SQLite
// in WAL mode, surviving restarts, pruned to the newest `store.maxRows`.
// Written by a thread of its own in batches (the workers hand it what they
// gathered every 100 ms: the request path takes no lock for it), and
// queried there too: a page of GET /api/metrics/activity never runs on a
// worker's loop.
//
// A SQLite row holds a batch of up to 256 entries (activity_records.h: one
// JSON array), with the batch's id range, models and statuses beside it:
// one B-tree insert per batch instead of three per entry (a row and two
// indexes an entry would take about 16,000 instructions, a tenth of a
// saturated proxy's throughput; the batch row takes 3,200 an entry). A
// query skips a batch by those columns, in SQL, before its entries are
// read. The view `activity` shows one row per entry, for
// `sqlite3 activity.db 'SELECT ... FROM activity'`.
//
//   auto store = ActivityStore::Open("/var/lib/modelplane/activity.db", 1e6);
//   (*store)->Add(std::move(batch));                  // Any thread.
//   (*store)->Query({"qwen", 0, 0, 100}, [](auto page) { ... });
//
// One process per file: the database is held with an exclusive lock, so a
// second modelproxy opening the same path gets an error (and keeps its log
// in memory) instead of mixing two processes' ids.
#ifndef MODELPLANE_PROXY_STORE_ACTIVITY_STORE_H_
#define MODELPLANE_PROXY_STORE_ACTIVITY_STORE_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proxy/answers/activity.h"

struct sqlite3;
struct sqlite3_stmt;

namespace modelplane::proxy::store {

struct ActivityQuery {
  std::string model;    // "": any.
  int status = 0;       // 0: any.
  uint64_t before = 0;  // 0: from the newest.
  size_t limit = 100;
};

struct ActivityPage {
  std::vector<answers::ActivityEntry> entries;  // Newest first.
  bool more = false;                            // Older entries match too.
};

class ActivityStore {
 public:
  static absl::StatusOr<std::unique_ptr<ActivityStore>> Open(
      const std::string& path, uint64_t max_rows);
  // Writes what is queued, then closes.
  ~ActivityStore();
  ActivityStore(const ActivityStore&) = delete;
  ActivityStore& operator=(const ActivityStore&) = delete;

  const std::string& path() const { return path_; }
  // The largest id stored when it was opened: new ids go on after it.
  uint64_t max_id() const { return max_id_; }
  void set_max_rows(uint64_t n);

  // Entries for the writer, in any order (any thread). Ids are unique (the
  // proxy's counter); one at or below max_id() is dropped, the stored one
  // kept.
  void Add(std::vector<answers::ActivityEntry> entries);
  // The same for `*entries`, which is left empty, with the room of an
  // earlier hand-over when the store has one (a worker's batch vector).
  void HandOver(std::vector<answers::ActivityEntry>* entries);
  // How long the writer gathers a steady stream for one transaction
  // (50 ms); a test makes it long enough that only a query, a flush or
  // the stop can end it.
  void set_gather_for_testing(absl::Duration d);
  // A page, on the store's thread (after what was added before it);
  // `done` there.
  void Query(ActivityQuery query,
             std::function<void(absl::StatusOr<ActivityPage>)> done);
  // Waits until everything added so far is written (tests, benchmarks).
  void Flush();
  // Entries stored (the store's thread's count).
  uint64_t rows();
  // The last write failure (a full disk, an I/O error) and how many since
  // the last call, once; "" when none. The proxy logs it.
  std::string TakeError();

 private:
  ActivityStore(std::string path, sqlite3* db, uint64_t max_rows);
  void Run();
  // Queues a hand-over and wakes the writer.
  void Enqueue(std::vector<answers::ActivityEntry> entries)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Write(const std::vector<std::vector<answers::ActivityEntry>>& batch);
  // Appends sorted entries to the open batch row and new ones, inside the
  // caller's transaction. False on a failed statement.
  bool Append(const std::vector<const answers::ActivityEntry*>& sorted);
  // Converts schema version 1's row per entry (Open, before the thread).
  absl::Status MigrateFromV1();
  // Entries per batch row: 256, fewer for a small bound (pruning drops
  // whole batches, so a batch is at most 1/128 of the bound).
  size_t BatchCap() const;
  void Prune();
  absl::StatusOr<ActivityPage> Read(const ActivityQuery& q);
  // A write failed (counted, its message kept for TakeError).
  void Failed(const char* what);

  const std::string path_;
  sqlite3* db_;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* update_ = nullptr;
  // The newest batch row while it has room (the store's thread): entries
  // that come in small batches fill it instead of making rows of one.
  struct OpenBatch {
    int64_t seq = 0;  // Its row; 0: none.
    uint64_t min_id = 0, max_id = 0;
    size_t count = 0;
    std::string records;  // The records, comma-separated, no brackets.
    std::vector<std::string> models;
    std::vector<int> statuses;
  };
  OpenBatch open_;
  uint64_t cap_max_rows_;  // max_rows_ as of the last write.
  uint64_t max_id_ = 0;
  uint64_t rows_ = 0;  // The store's thread.
  absl::Mutex mu_;
  absl::CondVar wake_;
  absl::CondVar written_cv_;  // written_ moved.
  // The hand-overs not yet written, each as it came.
  std::vector<std::vector<answers::ActivityEntry>> pending_
      ABSL_GUARDED_BY(mu_);
  size_t pending_entries_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration gather_ ABSL_GUARDED_BY(mu_) = absl::Milliseconds(50);
  // Written hand-overs' vectors, empty, for HandOver to give back.
  std::vector<std::vector<answers::ActivityEntry>> spares_ ABSL_GUARDED_BY(mu_);
  int flushes_ ABSL_GUARDED_BY(mu_) = 0;  // Flush calls waiting.
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  uint64_t max_rows_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t written_ ABSL_GUARDED_BY(mu_) = 0;  // Batches written.
  uint64_t added_ ABSL_GUARDED_BY(mu_) = 0;    // Batches added.
  uint64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t reported_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// The entries of `hand_overs` whose id is above `above`, oldest first (the
// order the store writes them in, so that rows hold runs of ids).
std::vector<const answers::ActivityEntry*> NewestInIdOrder(
    const std::vector<std::vector<answers::ActivityEntry>>& hand_overs,
    uint64_t above);

}  // namespace modelplane::proxy::store

#endif  // MODELPLANE_PROXY_STORE_ACTIVITY_STORE_H_
