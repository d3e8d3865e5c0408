#include "proxy/store/activity_store.h"

#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "proxy/store/activity_records.h"

namespace modelplane::proxy::store {
namespace {

// The schema: a row per batch of entries (activity_records.h: `records`,
// one JSON array), its id range and entry count, and the distinct models
// and statuses in it (JSON arrays) that let a filtered query pass it by
// without reading its entries. `max_id` orders the batches: the ids of two
// batches may interleave (workers hand theirs over independently).
constexpr char kSchema[] =
    "CREATE TABLE IF NOT EXISTS activity_batch ("
    " seq INTEGER PRIMARY KEY,"
    " min_id INTEGER NOT NULL,"
    " max_id INTEGER NOT NULL,"
    " count INTEGER NOT NULL,"
    " models TEXT NOT NULL,"
    " statuses TEXT NOT NULL,"
    " records TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS activity_batch_max ON activity_batch "
    "(max_id);"
    // llama-swap's fields (tokens, cached and draft tokens, prompt and
    // generation speed, duration, status, error) and modelplane's (node,
    // time to first token, queue and load waits), one row per entry, for
    // people with the sqlite3 shell.
    "CREATE VIEW IF NOT EXISTS activity AS SELECT"
    " r.value ->> '$[0]' AS id,"
    " r.value ->> '$[1]' AS unix_ms,"
    " r.value ->> '$[2]' AS model,"
    " r.value ->> '$[3]' AS node,"
    " r.value ->> '$[4]' AS path,"
    " r.value ->> '$[5]' AS status,"
    " r.value ->> '$[6]' AS input_tokens,"
    " r.value ->> '$[7]' AS output_tokens,"
    " r.value ->> '$[8]' AS cached_tokens,"
    " r.value ->> '$[9]' AS draft_tokens,"
    " r.value ->> '$[10]' AS draft_accepted_tokens,"
    " r.value ->> '$[11]' AS prompt_tokens_per_second,"
    " r.value ->> '$[12]' AS tokens_per_second,"
    " r.value ->> '$[13]' AS time_to_first_token_ms,"
    " r.value ->> '$[14]' AS queue_wait_ms,"
    " r.value ->> '$[15]' AS load_wait_ms,"
    " r.value ->> '$[16]' AS duration_ms,"
    " r.value ->> '$[17]' AS error"
    " FROM activity_batch b, json_each(b.records) r;";

// PRAGMA user_version of the schema above. Version 1 (a row per entry in
// a table `activity`) is converted when opened.
constexpr int kSchemaVersion = 2;

// How many entries end the store's thread's gathering for one transaction
// (Run).
constexpr size_t kGatherEntries = 2048;
// Emptied hand-over vectors kept for reuse.
constexpr size_t kSpares = 8;

std::string Error(sqlite3* db) { return sqlite3_errmsg(db); }

}  // namespace

absl::StatusOr<std::unique_ptr<ActivityStore>> ActivityStore::Open(
    const std::string& path, uint64_t max_rows) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
      nullptr);
  if (rc != SQLITE_OK) {
    std::string why = db != nullptr ? Error(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return absl::UnavailableError(
        absl::StrCat("cannot open the activity store ", path, ": ", why));
  }
  // WAL (readers never wait for the writer), synchronous NORMAL (a power
  // cut may lose the last batches, never corrupt the file), and an
  // exclusive lock held while open: one process per file. secure_delete
  // FAST: Debian's SQLite, built with SQLITE_SECURE_DELETE, would zero
  // every page pruning frees, in the WAL and again in the checkpoint (440
  // against 318 bytes written an entry at the bound); FAST still clears
  // deleted content from the pages that stay in use. Pages of
  // 16 KiB (a new file's; 4 KiB is SQLite's default): a batch row is a few of
  // them, and the WAL writes a frame header and the page in two calls a
  // page (writing 300,000 entries: 0.43 against 0.6 us of kernel time an
  // entry).
  char* err = nullptr;
  rc = sqlite3_exec(db,
                    "PRAGMA page_size=16384;"
                    "PRAGMA locking_mode=EXCLUSIVE;"
                    "PRAGMA journal_mode=WAL;"
                    "PRAGMA synchronous=NORMAL;"
                    "PRAGMA secure_delete=FAST;",
                    nullptr, nullptr, &err);
  // The schema's version: a file another version of it made is refused
  // (with a message) rather than written with the wrong columns.
  int version = -1;
  if (rc == SQLITE_OK) {
    sqlite3_stmt* v = nullptr;
    if (sqlite3_prepare_v2(
            db,
            "SELECT (SELECT user_version FROM pragma_user_version),"
            " (SELECT COUNT(*) FROM sqlite_master WHERE name ="
            " 'activity')",
            -1, &v, nullptr) == SQLITE_OK &&
        sqlite3_step(v) == SQLITE_ROW) {
      version = sqlite3_column_int(v, 1) == 0 ? 0 : sqlite3_column_int(v, 0);
    } else {
      rc = sqlite3_errcode(db);
    }
    sqlite3_finalize(v);
  }
  if (rc == SQLITE_OK && version != 0 && version != 1 &&
      version != kSchemaVersion) {
    sqlite3_close(db);
    return absl::FailedPreconditionError(
        absl::StrCat("the activity store ", path, " has schema version ",
                     version, ", not ", kSchemaVersion,
                     ": move it away (or point store.path "
                     "elsewhere)"));
  }
  // Version 1's table goes (its rows converted below) before the view
  // takes its name.
  if (rc == SQLITE_OK && version == 1) {
    rc = sqlite3_exec(db,
                      "BEGIN; ALTER TABLE activity RENAME TO activity_v1;"
                      " DROP INDEX IF EXISTS activity_model;"
                      " DROP INDEX IF EXISTS activity_error;",
                      nullptr, nullptr, &err);
  }
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, kSchema, nullptr, nullptr, &err);
  if (rc == SQLITE_OK && version != kSchemaVersion) {
    rc = sqlite3_exec(
        db, absl::StrCat("PRAGMA user_version=", kSchemaVersion).c_str(),
        nullptr, nullptr, &err);
  }
  if (rc != SQLITE_OK) {
    std::string why = err != nullptr ? err : Error(db);
    sqlite3_free(err);
    sqlite3_close(db);
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
      why = "another process holds it";
    }
    return absl::UnavailableError(
        absl::StrCat("cannot open the activity store ", path, ": ", why));
  }
  auto store =
      std::unique_ptr<ActivityStore>(new ActivityStore(path, db, max_rows));
  if (sqlite3_prepare_v2(
          db,
          "INSERT INTO activity_batch (min_id, max_id, count, models, "
          "statuses, records) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
          -1, &store->insert_, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(
          db,
          "UPDATE activity_batch SET min_id = ?1, max_id = ?2, count = ?3, "
          "models = ?4, statuses = ?5, records = ?6 WHERE seq = ?7",
          -1, &store->update_, nullptr) != SQLITE_OK) {
    return absl::InternalError(
        absl::StrCat("activity store ", path, ": ", Error(db)));
  }
  if (version == 1) {
    absl::Status converted = store->MigrateFromV1();
    if (!converted.ok()) return converted;
  }
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db,
                         "SELECT COALESCE(MAX(max_id), 0), "
                         "COALESCE(SUM(count), 0) FROM activity_batch",
                         -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    store->max_id_ = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    store->rows_ = static_cast<uint64_t>(sqlite3_column_int64(s, 1));
  }
  sqlite3_finalize(s);
  store->thread_ = std::thread([s = store.get()] {
    // Named for top -H and the activity bench, which reads its CPU time.
    pthread_setname_np(pthread_self(), "activity-store");
    // SCHED_BATCH: no latency wanted here, so a wake-up of this thread
    // does not preempt a worker in the middle of its requests (the
    // kernel's wake-up preemption favours a thread that sleeps as much as
    // this one); its share of the CPU is the same as before.
    sched_param batch{};
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch);
    s->Run();
  });
  return store;
}

ActivityStore::ActivityStore(std::string path, sqlite3* db, uint64_t max_rows)
    : path_(std::move(path)),
      db_(db),
      cap_max_rows_(max_rows),
      max_rows_(max_rows) {}

ActivityStore::~ActivityStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_.Signal();
  }
  if (thread_.joinable()) thread_.join();
  sqlite3_finalize(insert_);
  sqlite3_finalize(update_);
  sqlite3_close(db_);
}

void ActivityStore::set_max_rows(uint64_t n) {
  absl::MutexLock lock(&mu_);
  max_rows_ = n;
  wake_.Signal();
}

void ActivityStore::Add(std::vector<answers::ActivityEntry> entries) {
  if (entries.empty()) return;
  absl::MutexLock lock(&mu_);
  Enqueue(std::move(entries));
}

void ActivityStore::HandOver(std::vector<answers::ActivityEntry>* entries) {
  if (entries->empty()) return;
  absl::MutexLock lock(&mu_);
  Enqueue(std::move(*entries));
  // An emptied vector of an earlier hand-over takes its place: the worker
  // fills memory it has filled before, not a fresh allocation each time.
  *entries = std::vector<answers::ActivityEntry>();
  if (!spares_.empty()) {
    *entries = std::move(spares_.back());
    spares_.pop_back();
  }
}

void ActivityStore::Enqueue(std::vector<answers::ActivityEntry> entries) {
  const size_t before = pending_entries_;
  pending_entries_ += entries.size();
  pending_.push_back(std::move(entries));
  ++added_;
  // The writer wakes for the first hand-over and when enough are waiting
  // to end its gathering, not for each one in between.
  if (pending_.size() == 1 ||
      (before < kGatherEntries && pending_entries_ >= kGatherEntries)) {
    wake_.Signal();
  }
}

void ActivityStore::set_gather_for_testing(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  gather_ = d;
}

void ActivityStore::Query(
    ActivityQuery query,
    std::function<void(absl::StatusOr<ActivityPage>)> done) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back([this, query = std::move(query), done = std::move(done)] {
    done(Read(query));
  });
  wake_.Signal();
}

void ActivityStore::Flush() {
  absl::MutexLock lock(&mu_);
  uint64_t want = added_;
  ++flushes_;
  wake_.Signal();
  while (written_ < want) written_cv_.Wait(&mu_);
  --flushes_;
}

uint64_t ActivityStore::rows() {
  uint64_t n = 0;
  absl::Notification done;
  {
    absl::MutexLock lock(&mu_);
    tasks_.push_back([this, &n, &done] {
      n = rows_;
      done.Notify();
    });
    wake_.Signal();
  }
  done.WaitForNotification();
  return n;
}

void ActivityStore::Run() {
  // Kept across passes (swapped with pending_, so the queue keeps its
  // room and a hand-over does not grow it under the lock).
  std::vector<std::vector<answers::ActivityEntry>> batch;
  while (true) {
    std::deque<std::function<void()>> tasks;
    uint64_t batches = 0;
    bool stop = false;
    {
      absl::MutexLock lock(&mu_);
      while (pending_.empty() && tasks_.empty() && !stopping_) {
        wake_.Wait(&mu_);
      }
      // A commit writes the table's and the index's last pages and the
      // file's header again whatever it holds: entries that come in a
      // steady stream are gathered for up to gather_ (50 ms), or until
      // kGatherEntries of them, and go in one transaction. A query, a
      // Flush or the stop ends the wait at once.
      const absl::Time until = absl::Now() + gather_;
      while (pending_entries_ < kGatherEntries && tasks_.empty() &&
             !stopping_ && flushes_ == 0) {
        if (wake_.WaitWithDeadline(&mu_, until)) break;
      }
      pending_entries_ = 0;
      batch.swap(pending_);
      tasks.swap(tasks_);
      batches = added_;
      stop = stopping_;
    }
    // Writes first: a query sees every entry added before it.
    if (!batch.empty()) {
      Write(batch);
      Prune();
      for (auto& part : batch) part.clear();  // Here, not on a worker.
    }
    {
      absl::MutexLock lock(&mu_);
      written_ = batches;
      written_cv_.SignalAll();
      // The emptied vectors, their room kept, for the next hand-overs
      // (a few: one a worker in flight).
      for (auto& part : batch) {
        if (spares_.size() >= kSpares) break;
        if (part.capacity() != 0) spares_.push_back(std::move(part));
      }
    }
    batch.clear();
    for (auto& t : tasks) t();
    if (stop) {
      absl::MutexLock lock(&mu_);
      if (pending_.empty() && tasks_.empty()) return;
    }
  }
}

absl::StatusOr<ActivityPage> ActivityStore::Read(const ActivityQuery& q) {
  // Batches by their largest id, newest first; the ids of the next ones
  // are all below this one's largest, so once `limit + 1` matches are
  // above it the page is complete. The filters are tried on the batch's
  // models and statuses in SQL, so a batch with no match is passed by
  // without its records being read from the file.
  std::string sql =
      "SELECT max_id, records FROM activity_batch WHERE min_id < ?1";
  if (!q.model.empty()) {
    absl::StrAppend(&sql,
                    " AND EXISTS (SELECT 1 FROM json_each(models) WHERE "
                    "value = ?2)");
  }
  if (q.status != 0) {
    absl::StrAppend(&sql,
                    " AND EXISTS (SELECT 1 FROM json_each(statuses) WHERE "
                    "value = ?3)");
  }
  absl::StrAppend(&sql, " ORDER BY max_id DESC");
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    return absl::InternalError(absl::StrCat("activity store: ", Error(db_)));
  }
  uint64_t before = q.before != 0 ? q.before : UINT64_MAX;
  sqlite3_bind_int64(
      s, 1, static_cast<sqlite3_int64>(std::min<uint64_t>(before, INT64_MAX)));
  if (!q.model.empty()) {
    sqlite3_bind_text(s, 2, q.model.data(), static_cast<int>(q.model.size()),
                      SQLITE_STATIC);
  }
  if (q.status != 0) sqlite3_bind_int(s, 3, q.status);
  auto keep_newest = [&](std::vector<answers::ActivityEntry>* v) {
    std::sort(v->begin(), v->end(),
              [](const answers::ActivityEntry& a,
                 const answers::ActivityEntry& b) { return a.id > b.id; });
    if (v->size() > q.limit + 1) v->resize(q.limit + 1);
  };
  std::vector<answers::ActivityEntry> found, batch;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    uint64_t max_id = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    if (found.size() == q.limit + 1 && max_id < found.back().id) break;
    batch.clear();
    const unsigned char* text = sqlite3_column_text(s, 1);
    absl::Status parsed = ParseRecords(
        absl::string_view(reinterpret_cast<const char*>(text),
                          static_cast<size_t>(sqlite3_column_bytes(s, 1))),
        &batch);
    if (!parsed.ok()) {
      sqlite3_finalize(s);
      return absl::DataLossError(
          absl::StrCat("activity store: ", parsed.message()));
    }
    for (answers::ActivityEntry& e : batch) {
      if (e.id >= before) continue;
      if (!q.model.empty() && e.model != q.model) continue;
      if (q.status != 0 && e.status != q.status) continue;
      found.push_back(std::move(e));
    }
    keep_newest(&found);
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    std::string why = Error(db_);
    sqlite3_finalize(s);
    return absl::InternalError(absl::StrCat("activity store: ", why));
  }
  sqlite3_finalize(s);
  ActivityPage page;
  page.more = found.size() > q.limit;
  if (page.more) found.resize(q.limit);
  page.entries = std::move(found);
  return page;
}

}  // namespace modelplane::proxy::store
