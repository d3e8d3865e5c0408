// The activity store's records as text: a batch of entries is one JSON
// array of records, each record an array of the entry's fields in the
// order of the store's `activity` view (id, unix_ms, model, node, path,
// status, input_tokens, output_tokens, cached_tokens, draft_tokens,
// draft_accepted_tokens, prompt_tokens_per_second, tokens_per_second,
// time_to_first_token_ms, queue_wait_ms, load_wait_ms, duration_ms,
// error), null where the model reported nothing:
//
//   [[7,1700000000007,"a","127.0.0.1:50051","/v1/chat/completions",503,
//     7,14,null,null,null,null,40.5,null,null,1200,10.25,"no"]]
//
// Times and speeds keep three decimals (a microsecond of a millisecond
// figure); a value that is not finite is null.
#ifndef MODELPLANE_PROXY_STORE_ACTIVITY_RECORDS_H_
#define MODELPLANE_PROXY_STORE_ACTIVITY_RECORDS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "proxy/answers/activity.h"

namespace modelplane::proxy::store {

// The number of fields of a record.
inline constexpr int kRecordFields = 18;

// Appends `e` as one record (no separator before it).
void AppendRecord(const answers::ActivityEntry& e, std::string* out);

// `v` with at most three decimals, shortest form ("10.25", "1200",
// "-0.5"); "null" when it is not finite.
void AppendDecimal(double v, std::string* out);

// The records of a batch (a JSON array of records), appended to `out` in
// their order; an error names what is wrong and leaves `out` as it was.
absl::Status ParseRecords(absl::string_view json,
                          std::vector<answers::ActivityEntry>* out);

}  // namespace modelplane::proxy::store

#endif  // MODELPLANE_PROXY_STORE_ACTIVITY_RECORDS_H_
