// The activity log on disk: one SQLite row per request served by a model
// (config `store.path`, llama-swap's key), in WAL mode, surviving restarts,
// pruned to the newest `store.maxRows`. Written by a thread of its own in
// batches (the workers hand it what they gathered every 100 ms: the
// request path takes no lock for it), and queried there too: a page of GET
// /api/metrics/activity never runs on a worker's loop.
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

  // Entries for the writer, in any order (any thread). An id already
  // stored is kept, not replaced.
  void Add(std::vector<answers::ActivityEntry> entries);
  // A page, on the store's thread (after what was added before it);
  // `done` there.
  void Query(ActivityQuery query,
             std::function<void(absl::StatusOr<ActivityPage>)> done);
  // Waits until everything added so far is written (tests, benchmarks).
  void Flush();
  // Rows stored (the store's thread's count).
  uint64_t rows();
  // The last write failure (a full disk, an I/O error) and how many since
  // the last call, once; "" when none. The proxy logs it.
  std::string TakeError();

 private:
  ActivityStore(std::string path, sqlite3* db, uint64_t max_rows);
  void Run();
  void Write(std::vector<answers::ActivityEntry>* batch);
  void Prune();
  absl::StatusOr<ActivityPage> Read(const ActivityQuery& q);
  // A write failed (counted, its message kept for TakeError).
  void Failed(const char* what);

  const std::string path_;
  sqlite3* db_;
  sqlite3_stmt* insert_ = nullptr;
  uint64_t max_id_ = 0;
  uint64_t rows_ = 0;  // The store's thread.
  absl::Mutex mu_;
  absl::CondVar wake_;
  absl::CondVar written_cv_;  // written_ moved.
  std::vector<answers::ActivityEntry> pending_ ABSL_GUARDED_BY(mu_);
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

}  // namespace modelplane::proxy::store

#endif  // MODELPLANE_PROXY_STORE_ACTIVITY_STORE_H_
