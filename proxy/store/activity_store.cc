#include "proxy/store/activity_store.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace modelplane::proxy::store {
namespace {

// The schema: llama-swap's fields (tokens, cached and draft tokens, prompt
// and generation speed, duration, status, error) and modelplane's (node,
// time to first token, queue and load waits). Nullable where the model may
// not report it.
constexpr char kSchema[] =
    "CREATE TABLE IF NOT EXISTS activity ("
    " id INTEGER PRIMARY KEY,"
    " unix_ms INTEGER NOT NULL,"
    " model TEXT NOT NULL,"
    " node TEXT NOT NULL,"
    " path TEXT NOT NULL,"
    " status INTEGER NOT NULL,"
    " input_tokens INTEGER,"
    " output_tokens INTEGER,"
    " cached_tokens INTEGER,"
    " draft_tokens INTEGER,"
    " draft_accepted_tokens INTEGER,"
    " prompt_tokens_per_second REAL,"
    " tokens_per_second REAL,"
    " time_to_first_token_ms REAL,"
    " queue_wait_ms REAL,"
    " load_wait_ms REAL,"
    " duration_ms REAL NOT NULL,"
    " error TEXT);"
    "CREATE INDEX IF NOT EXISTS activity_model ON activity (model, id);"
    // Errors only: a status filter finds rare ones without a scan, and a
    // request that succeeded costs no entry here (a filter on 200 walks the
    // table from its newest row, where nearly every row matches).
    "CREATE INDEX IF NOT EXISTS activity_error ON activity (status, id) "
    "WHERE status != 200;";

// PRAGMA user_version of the schema above.
constexpr int kSchemaVersion = 1;

constexpr char kColumns[] =
    "id, unix_ms, model, node, path, status, input_tokens, output_tokens, "
    "cached_tokens, draft_tokens, draft_accepted_tokens, "
    "prompt_tokens_per_second, tokens_per_second, time_to_first_token_ms, "
    "queue_wait_ms, load_wait_ms, duration_ms, error";

std::string Error(sqlite3* db) { return sqlite3_errmsg(db); }

void BindInt(sqlite3_stmt* s, int i, const std::optional<uint64_t>& v) {
  if (v) {
    sqlite3_bind_int64(s, i, static_cast<sqlite3_int64>(*v));
  } else {
    sqlite3_bind_null(s, i);
  }
}

void BindReal(sqlite3_stmt* s, int i, const std::optional<double>& v) {
  if (v) {
    sqlite3_bind_double(s, i, *v);
  } else {
    sqlite3_bind_null(s, i);
  }
}

std::string Text(sqlite3_stmt* s, int i) {
  const unsigned char* t = sqlite3_column_text(s, i);
  return t == nullptr ? "" : reinterpret_cast<const char*>(t);
}

std::optional<uint64_t> Int(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
  return static_cast<uint64_t>(sqlite3_column_int64(s, i));
}

std::optional<double> Real(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_double(s, i);
}

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
  // exclusive lock held while open: one process per file.
  char* err = nullptr;
  rc = sqlite3_exec(db,
                    "PRAGMA locking_mode=EXCLUSIVE;"
                    "PRAGMA journal_mode=WAL;"
                    "PRAGMA synchronous=NORMAL;",
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
  if (rc == SQLITE_OK && version != 0 && version != kSchemaVersion) {
    sqlite3_close(db);
    return absl::FailedPreconditionError(
        absl::StrCat("the activity store ", path, " has schema version ",
                     version, ", not ", kSchemaVersion,
                     ": move it away (or point store.path "
                     "elsewhere)"));
  }
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, kSchema, nullptr, nullptr, &err);
  if (rc == SQLITE_OK && version == 0) {
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
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db,
                         "SELECT COALESCE(MAX(id), 0), COUNT(*) FROM "
                         "activity",
                         -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    store->max_id_ = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    store->rows_ = static_cast<uint64_t>(sqlite3_column_int64(s, 1));
  }
  sqlite3_finalize(s);
  std::string insert =
      absl::StrCat("INSERT OR IGNORE INTO activity (", kColumns,
                   ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  if (sqlite3_prepare_v2(db, insert.c_str(), -1, &store->insert_, nullptr) !=
      SQLITE_OK) {
    return absl::InternalError(
        absl::StrCat("activity store ", path, ": ", Error(db)));
  }
  store->thread_ = std::thread([s = store.get()] { s->Run(); });
  return store;
}

ActivityStore::ActivityStore(std::string path, sqlite3* db, uint64_t max_rows)
    : path_(std::move(path)), db_(db), max_rows_(max_rows) {}

ActivityStore::~ActivityStore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_.Signal();
  }
  if (thread_.joinable()) thread_.join();
  sqlite3_finalize(insert_);
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
  if (pending_.empty()) {
    pending_ = std::move(entries);
  } else {
    for (auto& e : entries) pending_.push_back(std::move(e));
  }
  ++added_;
  wake_.Signal();
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
  while (written_ < want) written_cv_.Wait(&mu_);
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
  while (true) {
    std::vector<answers::ActivityEntry> batch;
    std::deque<std::function<void()>> tasks;
    uint64_t batches = 0;
    bool stop = false;
    {
      absl::MutexLock lock(&mu_);
      while (pending_.empty() && tasks_.empty() && !stopping_) {
        wake_.Wait(&mu_);
      }
      batch.swap(pending_);
      tasks.swap(tasks_);
      batches = added_;
      stop = stopping_;
    }
    // Writes first: a query sees every entry added before it.
    if (!batch.empty()) {
      Write(&batch);
      Prune();
    }
    {
      absl::MutexLock lock(&mu_);
      written_ = batches;
      written_cv_.SignalAll();
    }
    for (auto& t : tasks) t();
    if (stop) {
      absl::MutexLock lock(&mu_);
      if (pending_.empty() && tasks_.empty()) return;
    }
  }
}

void ActivityStore::Write(std::vector<answers::ActivityEntry>* batch) {
  // One transaction per batch (the WAL is written once for all of them).
  if (sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
    Failed("begin");
    return;
  }
  for (const answers::ActivityEntry& e : *batch) {
    sqlite3_stmt* s = insert_;
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(e.id));
    sqlite3_bind_int64(s, 2, e.unix_ms);
    sqlite3_bind_text(s, 3, e.model.data(), static_cast<int>(e.model.size()),
                      SQLITE_STATIC);
    sqlite3_bind_text(s, 4, e.node.data(), static_cast<int>(e.node.size()),
                      SQLITE_STATIC);
    sqlite3_bind_text(s, 5, e.path.data(), static_cast<int>(e.path.size()),
                      SQLITE_STATIC);
    sqlite3_bind_int(s, 6, e.status);
    BindInt(s, 7, e.input_tokens);
    BindInt(s, 8, e.output_tokens);
    BindInt(s, 9, e.cached_tokens);
    BindInt(s, 10, e.draft_tokens);
    BindInt(s, 11, e.draft_accepted_tokens);
    BindReal(s, 12, e.prompt_tokens_per_second);
    BindReal(s, 13, e.tokens_per_second);
    BindReal(s, 14, e.time_to_first_token_ms);
    BindReal(s, 15, e.queue_wait_ms);
    BindReal(s, 16, e.load_wait_ms);
    sqlite3_bind_double(s, 17, e.duration_ms);
    if (e.error.empty()) {
      sqlite3_bind_null(s, 18);
    } else {
      sqlite3_bind_text(s, 18, e.error.data(), static_cast<int>(e.error.size()),
                        SQLITE_STATIC);
    }
    if (sqlite3_step(s) != SQLITE_DONE) {
      Failed("insert");
    } else {
      rows_ += static_cast<uint64_t>(sqlite3_changes(db_));  // 0: kept.
    }
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    Failed("commit");
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
}

void ActivityStore::Failed(const char* what) {
  std::string why =
      absl::StrCat("activity store ", path_, ": ", what, ": ", Error(db_));
  absl::MutexLock lock(&mu_);
  ++errors_;
  last_error_ = std::move(why);
}

std::string ActivityStore::TakeError() {
  absl::MutexLock lock(&mu_);
  if (errors_ == reported_) return "";
  std::string out = absl::StrCat(last_error_, " (", errors_ - reported_,
                                 " failure(s) since the last report)");
  reported_ = errors_;
  return out;
}

void ActivityStore::Prune() {
  uint64_t max_rows;
  {
    absl::MutexLock lock(&mu_);
    max_rows = max_rows_;
  }
  // Past the bound by 1 % (at least one batch's worth): the oldest go, in
  // one statement, down to the bound.
  if (rows_ <= max_rows + max_rows / 100) return;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "DELETE FROM activity WHERE id <= (SELECT id FROM "
                         "activity ORDER BY id DESC LIMIT 1 OFFSET ?)",
                         -1, &s, nullptr) == SQLITE_OK) {
    sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(max_rows));
    if (sqlite3_step(s) == SQLITE_DONE) {
      uint64_t gone = static_cast<uint64_t>(sqlite3_changes(db_));
      rows_ = rows_ > gone ? rows_ - gone : 0;
    }
  }
  sqlite3_finalize(s);
}

absl::StatusOr<ActivityPage> ActivityStore::Read(const ActivityQuery& q) {
  std::string sql = absl::StrCat("SELECT ", kColumns, " FROM activity WHERE 1");
  if (!q.model.empty()) absl::StrAppend(&sql, " AND model = ?1");
  // The status as a literal (a number): the planner then knows whether the
  // errors' partial index holds it.
  if (q.status != 0) absl::StrAppend(&sql, " AND status = ", q.status);
  if (q.before != 0) absl::StrAppend(&sql, " AND id < ?3");
  absl::StrAppend(&sql, " ORDER BY id DESC LIMIT ?4");
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    return absl::InternalError(absl::StrCat("activity store: ", Error(db_)));
  }
  if (!q.model.empty()) {
    sqlite3_bind_text(s, 1, q.model.data(), static_cast<int>(q.model.size()),
                      SQLITE_STATIC);
  }
  if (q.before != 0) {
    sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(q.before));
  }
  // One more than asked: whether there are older ones.
  sqlite3_bind_int64(s, 4, static_cast<sqlite3_int64>(q.limit + 1));
  ActivityPage page;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    if (page.entries.size() == q.limit) {
      page.more = true;
      break;
    }
    answers::ActivityEntry e;
    e.id = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    e.unix_ms = sqlite3_column_int64(s, 1);
    e.model = Text(s, 2);
    e.node = Text(s, 3);
    e.path = Text(s, 4);
    e.status = sqlite3_column_int(s, 5);
    e.input_tokens = Int(s, 6);
    e.output_tokens = Int(s, 7);
    e.cached_tokens = Int(s, 8);
    e.draft_tokens = Int(s, 9);
    e.draft_accepted_tokens = Int(s, 10);
    e.prompt_tokens_per_second = Real(s, 11);
    e.tokens_per_second = Real(s, 12);
    e.time_to_first_token_ms = Real(s, 13);
    e.queue_wait_ms = Real(s, 14);
    e.load_wait_ms = Real(s, 15);
    e.duration_ms = sqlite3_column_double(s, 16);
    e.error = Text(s, 17);
    page.entries.push_back(std::move(e));
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    std::string why = Error(db_);
    sqlite3_finalize(s);
    return absl::InternalError(absl::StrCat("activity store: ", why));
  }
  sqlite3_finalize(s);
  return page;
}

}  // namespace modelplane::proxy::store
