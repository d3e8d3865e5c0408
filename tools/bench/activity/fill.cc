// Fills an activity store with N rows through ActivityStore itself (the
// schema and the writer modelproxy uses), for activity_bench.py: 12 models,
// 4 nodes, 3 % errors, ids 1..N a second apart.
//
//   fill PATH N
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "proxy/store/activity_store.h"

int main(int argc, char** argv) {
  uint64_t n = 0;
  if (argc != 3 || !absl::SimpleAtoi(argv[2], &n)) {
    fprintf(stderr, "usage: fill PATH N\n");
    return 2;
  }
  auto store = modelplane::proxy::store::ActivityStore::Open(argv[1], n + 1);
  if (!store.ok()) {
    fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  uint64_t seed = 7;
  auto next = [&seed] {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return seed >> 33;
  };
  std::vector<modelplane::proxy::answers::ActivityEntry> batch;
  for (uint64_t id = (*store)->max_id() + 1; id <= n; ++id) {
    modelplane::proxy::answers::ActivityEntry e;
    e.id = id;
    e.unix_ms = 1700000000000 + static_cast<int64_t>(id) * 1000;
    e.model = absl::StrCat("model-", next() % 12);
    e.node = absl::StrCat("10.0.0.", next() % 4, ":50051");
    e.path = "/v1/chat/completions";
    uint64_t r = next() % 100;
    e.status = r < 97 ? 200 : r < 99 ? 503 : 400;
    if (e.status != 200) e.error = "the model could not be started";
    e.input_tokens = next() % 4000;
    e.output_tokens = next() % 800;
    e.tokens_per_second = 20 + static_cast<double>(next() % 600) / 10;
    e.prompt_tokens_per_second = 500 + static_cast<double>(next() % 5000);
    e.time_to_first_token_ms = static_cast<double>(next() % 2000);
    e.queue_wait_ms = static_cast<double>(next() % 50);
    e.duration_ms = static_cast<double>(next() % 30000);
    batch.push_back(std::move(e));
    if (batch.size() == 5000) (*store)->Add(std::move(batch)), batch.clear();
  }
  (*store)->Add(std::move(batch));
  (*store)->Flush();
  printf("%llu rows\n", static_cast<unsigned long long>((*store)->rows()));
  return 0;
}
