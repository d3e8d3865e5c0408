#include "server/runtime/orphan_sweep.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace modelplane::runtime {
namespace {

// Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid, a
// name no later process has.
std::optional<uint64_t> StartTime(pid_t pid) {
  std::string path = absl::StrCat("/proc/", pid, "/stat");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return std::nullopt;
  absl::string_view stat(buf, static_cast<size_t>(n));
  size_t paren = stat.rfind(')');  // The name may hold spaces and ')'.
  if (paren == absl::string_view::npos) return std::nullopt;
  std::vector<absl::string_view> fields =
      absl::StrSplit(stat.substr(paren + 2), ' ');
  uint64_t start = 0;
  // After the name: state is field 3, so start time (22) is index 19.
  if (fields.size() < 20 || !absl::SimpleAtoi(fields[19], &start)) {
    return std::nullopt;
  }
  return start;
}

// The value of MODELPLANE_SPAWN in /proc/<pid>/environ, or nullopt.
std::optional<std::string> SpawnTagOf(pid_t pid) {
  std::string path = absl::StrCat("/proc/", pid, "/environ");
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string env;
  char buf[16 << 10];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0 && env.size() < (1 << 20)) {
    env.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  std::string key = absl::StrCat(kSpawnVariable, "=");
  for (absl::string_view entry : absl::StrSplit(env, '\0')) {
    if (absl::StartsWith(entry, key)) {
      return std::string(entry.substr(key.size()));
    }
  }
  return std::nullopt;
}

struct Tag {
  pid_t owner = 0;
  uint64_t owner_start = 0;
  uint64_t spawn = 0;
  std::string model;
};

std::optional<Tag> ParseTag(absl::string_view value) {
  std::vector<absl::string_view> parts =
      absl::StrSplit(value, absl::MaxSplits('.', 3));
  Tag t;
  int owner = 0;
  if (parts.size() != 4 || !absl::SimpleAtoi(parts[0], &owner) ||
      !absl::SimpleAtoi(parts[1], &t.owner_start) ||
      !absl::SimpleAtoi(parts[2], &t.spawn)) {
    return std::nullopt;
  }
  t.owner = owner;
  t.model = std::string(parts[3]);
  return t;
}

// One pass over /proc: SIGKILLs each tagged process `doomed` picks that is
// not in `done` (killed by an earlier pass: it may take a moment to die).
std::vector<SweptProcess> SweepOnce(
    const std::function<bool(const Tag&)>& doomed,
    const std::set<pid_t>& done) {
  std::vector<SweptProcess> killed;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return killed;
  pid_t self = getpid();
  while (dirent* e = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid) || pid <= 1 || pid == self ||
        done.count(pid) != 0) {
      continue;
    }
    // The pidfd first: whatever is read below, only this process can be
    // signalled through it (never one that reuses the pid).
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) continue;
    std::optional<std::string> value = SpawnTagOf(pid);
    std::optional<Tag> tag = value ? ParseTag(*value) : std::nullopt;
    if (tag && doomed(*tag) &&
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0) == 0) {
      killed.push_back(SweptProcess{pid, tag->model});
    }
    close(pidfd);
  }
  closedir(proc);
  return killed;
}

// Passes until one kills nothing (a process may fork while it is swept).
std::vector<SweptProcess> Sweep(const std::function<bool(const Tag&)>& doomed) {
  std::vector<SweptProcess> all;
  std::set<pid_t> done;
  for (int round = 0; round < 5; ++round) {
    std::vector<SweptProcess> killed = SweepOnce(doomed, done);
    if (killed.empty()) break;
    for (const SweptProcess& p : killed) done.insert(p.pid);
    all.insert(all.end(), killed.begin(), killed.end());
  }
  return all;
}

}  // namespace

bool ProcessRunning(pid_t pid, uint64_t start) {
  std::optional<uint64_t> s = StartTime(pid);
  return s && *s == start;
}

const std::string& SelfTag() {
  static const std::string* tag = [] {
    pid_t self = getpid();
    return new std::string(
        absl::StrCat(self, ".", StartTime(self).value_or(0)));
  }();
  return *tag;
}

std::string SpawnEntry(uint64_t spawn, absl::string_view model) {
  return absl::StrCat(kSpawnVariable, "=", SelfTag(), ".", spawn, ".", model);
}

std::vector<SweptProcess> SweepSpawn(uint64_t spawn) {
  pid_t self = getpid();
  std::optional<uint64_t> start = StartTime(self);
  return Sweep([&](const Tag& t) {
    return t.owner == self && start && t.owner_start == *start &&
           t.spawn == spawn;
  });
}

std::vector<SweptProcess> SweepOrphans() {
  std::map<std::pair<pid_t, uint64_t>, bool> alive;  // Owners looked at.
  return Sweep([&](const Tag& t) {
    auto key = std::make_pair(t.owner, t.owner_start);
    auto it = alive.find(key);
    if (it == alive.end()) {
      std::optional<uint64_t> start = StartTime(t.owner);
      it = alive.emplace(key, start && *start == t.owner_start).first;
    }
    return !it->second;
  });
}

std::string Describe(const std::vector<SweptProcess>& swept) {
  return absl::StrJoin(
      swept, ", ", [](std::string* out, const SweptProcess& p) {
        absl::StrAppend(out, "pid ", p.pid, " (model ", p.model, ")");
      });
}

}  // namespace modelplane::runtime
