// What the activity store's writing costs, without the noise of a whole
// stack under wrk: N entries shaped like a proxied stream's (the node, the
// path, tokens, speeds, times) handed to an ActivityStore in hand-overs of
// 256 from two threads, as modelproxy's two workers do, paced at a rate.
// Prints the CPU time of the store's thread ("activity-store") an entry and
// the bytes the process sent to the disk an entry (/proc/self/io: the WAL
// and its checkpoints into the file).
//
//   write_cost PATH [N [RATE]]   (defaults: 400000 entries, 40000 a second)
#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "proxy/store/activity_store.h"

namespace {

using modelplane::proxy::answers::ActivityEntry;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f),
                     std::istreambuf_iterator<char>());
}

// CPU seconds of this process's thread named `name` (schedstat: its time
// on a CPU in nanoseconds), or -1 when there is none.
double ThreadCpu(const std::string& name) {
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return -1;
  double cpu = -1;
  while (dirent* t = readdir(d)) {
    if (t->d_name[0] == '.') continue;
    std::string dir = absl::StrCat("/proc/self/task/", t->d_name);
    if (absl::StripTrailingAsciiWhitespace(ReadFile(dir + "/comm")) != name) {
      continue;
    }
    std::vector<std::string> f =
        absl::StrSplit(ReadFile(dir + "/schedstat"), ' ');
    uint64_t ns = 0;
    if (!f.empty() && absl::SimpleAtoi(f[0], &ns)) {
      cpu = static_cast<double>(ns) / 1e9;
    }
  }
  closedir(d);
  return cpu;
}

// Bytes this process has sent to the storage layer.
uint64_t WrittenBytes() {
  for (absl::string_view line :
       absl::StrSplit(ReadFile("/proc/self/io"), '\n')) {
    uint64_t n = 0;
    if (absl::ConsumePrefix(&line, "write_bytes: ") &&
        absl::SimpleAtoi(line, &n)) {
      return n;
    }
  }
  return 0;
}

// One proxied 32-token stream's entry, as the proxy records it.
ActivityEntry StreamEntry(uint64_t id, uint64_t r) {
  ActivityEntry e;
  e.id = id;
  e.unix_ms = 1700000000000 + static_cast<int64_t>(id / 40);
  e.model = "m";
  e.node = "127.0.0.1:50051";
  e.path = "/v1/chat/completions";
  e.status = 200;
  e.input_tokens = 7;
  e.output_tokens = 32;
  e.time_to_first_token_ms = 0.05 + static_cast<double>(r % 1000) / 1000;
  e.duration_ms = 0.4 + static_cast<double>(r % 3000) / 1000;
  e.tokens_per_second = 40000 + static_cast<double>(r % 90000) / 7;
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t n = 400000, rate = 40000;
  if (argc < 2 || argc > 4 || (argc > 2 && !absl::SimpleAtoi(argv[2], &n)) ||
      (argc > 3 && !absl::SimpleAtoi(argv[3], &rate)) || rate == 0) {
    fprintf(stderr, "usage: write_cost PATH [N [RATE]]\n");
    return 2;
  }
  auto store = modelplane::proxy::store::ActivityStore::Open(argv[1], 100000);
  if (!store.ok()) {
    fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
    return 1;
  }
  modelplane::proxy::store::ActivityStore* s = store->get();
  const uint64_t first = s->max_id() + 1;
  s->rows();  // Answered on the store's thread: it runs, named, by now.
  const double cpu_before = ThreadCpu("activity-store");
  if (cpu_before < 0) {
    fprintf(stderr, "no activity-store thread\n");
    return 1;
  }
  const uint64_t bytes_before = WrittenBytes();
  const auto start = std::chrono::steady_clock::now();
  // Two "workers", each with every other id, each handing over 256 at a
  // time when its share of the rate has made them.
  constexpr uint64_t kHandOver = 256;
  auto worker = [&](uint64_t parity) {
    std::vector<ActivityEntry> batch;
    uint64_t seed = 7 + parity;
    for (uint64_t id = first + parity; id < first + n; id += 2) {
      seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
      batch.push_back(StreamEntry(id, seed >> 33));
      if (batch.size() < kHandOver) continue;
      std::this_thread::sleep_until(
          start + std::chrono::microseconds((id - first) * 1000000 / rate));
      s->HandOver(&batch);  // As a worker does: the vector comes back.
      batch.reserve(kHandOver);
    }
    s->HandOver(&batch);
  };
  std::thread a(worker, 0), b(worker, 1);
  a.join();
  b.join();
  s->Flush();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  const double cpu = ThreadCpu("activity-store") - cpu_before;
  const uint64_t bytes = WrittenBytes() - bytes_before;
  printf(
      "%llu entries in %.2f s (%.0f a second): the store's thread %.3f us of "
      "CPU an entry, %.0f bytes an entry written\n",
      static_cast<unsigned long long>(n), seconds,
      static_cast<double>(n) / seconds, cpu / static_cast<double>(n) * 1e6,
      static_cast<double>(bytes) / static_cast<double>(n));
  return 0;
}
