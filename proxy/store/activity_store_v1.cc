// The store's first schema (version 1: a row per entry in a table
// `activity`, with an index on the model and one on the errors), converted
// into batch rows when such a file is opened (ActivityStore::Open, inside
// the transaction that renamed the table to `activity_v1`).
#include <sqlite3.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proxy/store/activity_store.h"

namespace modelplane::proxy::store {
namespace {

// Version 1's columns, in the order of a record's fields.
constexpr char kV1Columns[] =
    "id, unix_ms, model, node, path, status, input_tokens, output_tokens, "
    "cached_tokens, draft_tokens, draft_accepted_tokens, "
    "prompt_tokens_per_second, tokens_per_second, time_to_first_token_ms, "
    "queue_wait_ms, load_wait_ms, duration_ms, error";

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

answers::ActivityEntry EntryOfV1Row(sqlite3_stmt* s) {
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
  return e;
}

}  // namespace

absl::Status ActivityStore::MigrateFromV1() {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(
          db_,
          absl::StrCat("SELECT ", kV1Columns, " FROM activity_v1 ORDER BY id")
              .c_str(),
          -1, &s, nullptr) != SQLITE_OK) {
    return absl::InternalError(absl::StrCat(
        "activity store ", path_, ": converting: ", sqlite3_errmsg(db_)));
  }
  std::vector<answers::ActivityEntry> chunk;
  auto append = [this, &chunk] {
    std::vector<const answers::ActivityEntry*> sorted;
    for (const answers::ActivityEntry& e : chunk) sorted.push_back(&e);
    bool ok = Append(sorted);
    chunk.clear();
    return ok;
  };
  bool ok = true;
  int rc;
  while (ok && (rc = sqlite3_step(s)) == SQLITE_ROW) {
    chunk.push_back(EntryOfV1Row(s));
    if (chunk.size() == 4096) ok = append();
  }
  sqlite3_finalize(s);
  if (ok && rc == SQLITE_DONE && append() &&
      sqlite3_exec(db_, "DROP TABLE activity_v1; COMMIT", nullptr, nullptr,
                   nullptr) == SQLITE_OK) {
    return absl::OkStatus();
  }
  return absl::InternalError(
      absl::StrCat("activity store ", path_,
                   ": converting its version 1 rows: ", sqlite3_errmsg(db_)));
}

}  // namespace modelplane::proxy::store
