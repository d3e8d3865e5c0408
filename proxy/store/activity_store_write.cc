// The activity store's writing, on its thread: a gathered batch of
// hand-overs in id order, appended to the open batch row and new ones in
// one transaction, and the oldest rows pruned past the bound
// (activity_store.cc opens the file, runs the thread and reads pages).
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/json_string.h"
#include "proxy/store/activity_records.h"
#include "proxy/store/activity_store.h"

namespace modelplane::proxy::store {
namespace {

// Entries a batch row holds at most.
constexpr size_t kBatchEntries = 256;

}  // namespace

std::vector<const answers::ActivityEntry*> NewestInIdOrder(
    const std::vector<std::vector<answers::ActivityEntry>>& hand_overs,
    uint64_t above) {
  std::vector<const answers::ActivityEntry*> sorted;
  size_t n = 0;
  for (const auto& part : hand_overs) n += part.size();
  sorted.reserve(n);
  auto older = [](const answers::ActivityEntry* a,
                  const answers::ActivityEntry* b) { return a->id < b->id; };
  // A worker's hand-over comes in the order its requests ended, so mostly
  // in id order: each one is sorted if need be and merged into those
  // before it (two workers' interleaved ids cost a merge, not a sort). A
  // backlog of many hand-overs is sorted once instead (merging each into
  // all before it would cost hand-overs x entries).
  constexpr size_t kMergeParts = 16;
  const bool merge = hand_overs.size() <= kMergeParts;
  for (const auto& part : hand_overs) {
    const size_t from = sorted.size();
    for (const answers::ActivityEntry& e : part) {
      if (e.id > above) sorted.push_back(&e);
    }
    if (!merge) continue;
    auto mid = sorted.begin() + static_cast<std::ptrdiff_t>(from);
    if (!std::is_sorted(mid, sorted.end(), older)) {
      std::sort(mid, sorted.end(), older);
    }
    if (from != 0 && mid != sorted.end() && older(*mid, *(mid - 1))) {
      std::inplace_merge(sorted.begin(), mid, sorted.end(), older);
    }
  }
  if (!merge && !std::is_sorted(sorted.begin(), sorted.end(), older)) {
    std::sort(sorted.begin(), sorted.end(), older);
  }
  return sorted;
}

size_t ActivityStore::BatchCap() const {
  return static_cast<size_t>(
      std::clamp<uint64_t>(cap_max_rows_ / 128, 1, kBatchEntries));
}

void ActivityStore::Write(
    const std::vector<std::vector<answers::ActivityEntry>>& batch) {
  {
    absl::MutexLock lock(&mu_);
    cap_max_rows_ = max_rows_;
  }
  // Oldest first (pointers sorted: an entry is a dozen fields to move);
  // ids at or below the largest stored at the open are the ones already
  // there.
  std::vector<const answers::ActivityEntry*> sorted =
      NewestInIdOrder(batch, max_id_);
  if (sorted.empty()) return;
  // One transaction per batch (the WAL is written once for all of it).
  if (sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
    Failed("begin");
    return;
  }
  bool ok = Append(sorted);
  if (ok &&
      sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK) {
    rows_ += sorted.size();
    return;
  }
  Failed(ok ? "commit" : "insert");
  sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  // The open batch's row may be gone with the transaction: the next
  // entries start a row of their own.
  open_ = OpenBatch();
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT COALESCE(SUM(count), 0) FROM activity_batch",
                         -1, &s, nullptr) == SQLITE_OK &&
      sqlite3_step(s) == SQLITE_ROW) {
    rows_ = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
  }
  sqlite3_finalize(s);
}

bool ActivityStore::Append(
    const std::vector<const answers::ActivityEntry*>& sorted) {
  const size_t cap = BatchCap();
  size_t i = 0;
  while (i < sorted.size()) {
    if (open_.seq != 0 && open_.count >= cap) open_ = OpenBatch();
    OpenBatch& b = open_;
    size_t take = std::min(cap - b.count, sorted.size() - i);
    for (size_t k = i; k < i + take; ++k) {
      const answers::ActivityEntry& e = *sorted[k];
      if (b.count == 0) {
        b.min_id = b.max_id = e.id;
      } else {
        b.min_id = std::min(b.min_id, e.id);
        b.max_id = std::max(b.max_id, e.id);
        b.records.push_back(',');
      }
      ++b.count;
      AppendRecord(e, &b.records);
      if (std::find(b.models.begin(), b.models.end(), e.model) ==
          b.models.end()) {
        b.models.push_back(e.model);
      }
      if (std::find(b.statuses.begin(), b.statuses.end(), e.status) ==
          b.statuses.end()) {
        b.statuses.push_back(e.status);
      }
    }
    i += take;
    std::string models = "[";
    for (const std::string& m : b.models) {
      if (models.size() > 1) models.push_back(',');
      models.push_back('"');
      AppendJsonEscaped(m, &models);
      models.push_back('"');
    }
    models.push_back(']');
    std::string statuses = "[";
    for (int st : b.statuses) {
      if (statuses.size() > 1) statuses.push_back(',');
      absl::StrAppend(&statuses, st);
    }
    statuses.push_back(']');
    std::string records = absl::StrCat("[", b.records, "]");
    sqlite3_stmt* s = b.seq == 0 ? insert_ : update_;
    sqlite3_reset(s);
    sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(b.min_id));
    sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(b.max_id));
    sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(b.count));
    sqlite3_bind_text(s, 4, models.data(), static_cast<int>(models.size()),
                      SQLITE_STATIC);
    sqlite3_bind_text(s, 5, statuses.data(), static_cast<int>(statuses.size()),
                      SQLITE_STATIC);
    sqlite3_bind_text(s, 6, records.data(), static_cast<int>(records.size()),
                      SQLITE_STATIC);
    if (b.seq != 0) sqlite3_bind_int64(s, 7, b.seq);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);  // Done with it (every value is bound anew each time).
    if (rc != SQLITE_DONE) return false;
    if (b.seq == 0) b.seq = sqlite3_last_insert_rowid(db_);
  }
  return true;
}

void ActivityStore::Failed(const char* what) {
  std::string why = absl::StrCat("activity store ", path_, ": ", what, ": ",
                                 sqlite3_errmsg(db_));
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
  // Past the bound by 1 %: the oldest batches go, in one statement, as
  // long as at least the bound is left (a batch is written at most 1/128
  // of it, so this stays within about 1 % of the bound).
  if (rows_ <= max_rows + max_rows / 100) return;
  sqlite3_stmt* s = nullptr;
  uint64_t gone = 0;
  int64_t cut = -1;
  if (sqlite3_prepare_v2(db_,
                         "SELECT max_id, count FROM activity_batch ORDER BY "
                         "max_id",
                         -1, &s, nullptr) == SQLITE_OK) {
    while (sqlite3_step(s) == SQLITE_ROW) {
      uint64_t count = static_cast<uint64_t>(sqlite3_column_int64(s, 1));
      if (rows_ - gone - count < max_rows || count > rows_ - gone) break;
      gone += count;
      cut = sqlite3_column_int64(s, 0);
    }
  }
  sqlite3_finalize(s);
  if (cut < 0) return;
  if (sqlite3_prepare_v2(db_, "DELETE FROM activity_batch WHERE max_id <= ?",
                         -1, &s, nullptr) == SQLITE_OK) {
    sqlite3_bind_int64(s, 1, cut);
    if (sqlite3_step(s) == SQLITE_DONE) {
      rows_ -= gone;
      if (open_.seq != 0 && open_.max_id <= static_cast<uint64_t>(cut)) {
        open_ = OpenBatch();
      }
    }
  }
  sqlite3_finalize(s);
}

}  // namespace modelplane::proxy::store
