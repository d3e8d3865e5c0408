#include "server/runtime/cgroup_jail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/runtime/orphan_sweep.h"

namespace modelplane::runtime {
namespace {

constexpr char kJailPrefix[] = "modelplane-";
constexpr char kSpawnPrefix[] = "spawn-";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool WriteFile(const std::string& path, absl::string_view text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok =
      write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

// Where the cgroup v2 hierarchy is mounted ("" if it is not).
std::string V2Mount() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // "id parent dev root mountpoint options ... - fstype source options"
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::vector<absl::string_view> after =
        absl::StrSplit(absl::string_view(line).substr(dash + 3), ' ');
    if (after.empty() || after[0] != "cgroup2") continue;
    std::vector<absl::string_view> before =
        absl::StrSplit(absl::string_view(line).substr(0, dash), ' ');
    if (before.size() >= 5) return std::string(before[4]);
  }
  return "";
}

// This process's cgroup directory in the v2 hierarchy ("" if none).
std::string OwnCgroupDir(std::string* why) {
  std::string mount = V2Mount();
  if (mount.empty()) {
    *why = "no cgroup v2 hierarchy is mounted";
    return "";
  }
  for (absl::string_view line :
       absl::StrSplit(ReadFile("/proc/self/cgroup"), '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) {
      return line == "/" ? mount : absl::StrCat(mount, line);
    }
  }
  *why = "this process is in no cgroup v2";
  return "";
}

// The processes in a cgroup, then all of them killed (cgroup.kill, Linux
// 5.14; else one by one, a few rounds for forks in between).
int KillDir(const std::string& dir) {
  int held = 0;
  for (absl::string_view pid :
       absl::StrSplit(ReadFile(dir + "/cgroup.procs"), '\n')) {
    held += !pid.empty();
  }
  if (held == 0) return 0;
  if (!WriteFile(dir + "/cgroup.kill", "1")) {
    for (int round = 0; round < 5; ++round) {
      bool any = false;
      for (absl::string_view text :
           absl::StrSplit(ReadFile(dir + "/cgroup.procs"), '\n')) {
        int pid = 0;
        if (absl::SimpleAtoi(text, &pid) && pid > 0) {
          kill(pid, SIGKILL);
          any = true;
        }
      }
      if (!any) break;
    }
  }
  return held;
}

// Removes an emptied cgroup: its processes may take a moment to be gone.
void RemoveDir(const std::string& dir) {
  for (int i = 0; i < 50; ++i) {
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    usleep(1000);
  }
}

// Kills and removes every spawn-* of a jail, then the jail.
int KillJail(const std::string& jail) {
  int killed = 0;
  if (DIR* d = opendir(jail.c_str())) {
    std::vector<std::string> spawns;
    while (dirent* e = readdir(d)) {
      if (absl::StartsWith(e->d_name, kSpawnPrefix)) {
        spawns.push_back(absl::StrCat(jail, "/", e->d_name));
      }
    }
    closedir(d);
    for (const std::string& s : spawns) {
      killed += KillDir(s);
      RemoveDir(s);
    }
  }
  RemoveDir(jail);
  return killed;
}

}  // namespace

std::unique_ptr<CgroupJail> CgroupJail::ForThisProcess(std::string* why) {
  std::string parent = OwnCgroupDir(why);
  if (parent.empty()) return nullptr;
  std::string dir = absl::StrCat(parent, "/", kJailPrefix, SelfTag());
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    *why = absl::StrCat("cannot make ", dir, ": ", std::strerror(errno));
    return nullptr;
  }
  // Moving a process in needs write access to cgroup.procs up to the
  // common ancestor: try the cgroup it will be.
  std::string probe = dir + "/" + kSpawnPrefix + "0";
  if (mkdir(probe.c_str(), 0755) != 0 ||
      access((probe + "/cgroup.procs").c_str(), W_OK) != 0 ||
      access((parent + "/cgroup.procs").c_str(), W_OK) != 0) {
    *why = absl::StrCat("cannot move processes into cgroups under ", parent,
                        " (", std::strerror(errno), ")");
    rmdir(probe.c_str());
    rmdir(dir.c_str());
    return nullptr;
  }
  rmdir(probe.c_str());
  return std::unique_ptr<CgroupJail>(new CgroupJail(dir));
}

std::vector<std::string> CgroupJail::SweepOrphans(int* killed) {
  std::vector<std::string> removed;
  std::string why;
  std::string parent = OwnCgroupDir(&why);
  if (parent.empty()) return removed;
  DIR* d = opendir(parent.c_str());
  if (d == nullptr) return removed;
  std::vector<std::string> jails;
  while (dirent* e = readdir(d)) {
    absl::string_view name = e->d_name;
    if (!absl::ConsumePrefix(&name, kJailPrefix)) continue;
    std::vector<absl::string_view> tag = absl::StrSplit(name, '.');
    int pid = 0;
    uint64_t start = 0;
    if (tag.size() != 2 || !absl::SimpleAtoi(tag[0], &pid) ||
        !absl::SimpleAtoi(tag[1], &start) || ProcessRunning(pid, start)) {
      continue;
    }
    jails.push_back(absl::StrCat(parent, "/", e->d_name));
  }
  closedir(d);
  for (const std::string& jail : jails) {
    *killed += KillJail(jail);
    removed.push_back(jail);
  }
  return removed;
}

CgroupJail::~CgroupJail() { KillJail(dir_); }

std::string CgroupJail::Prepare(uint64_t spawn) {
  std::string dir = absl::StrCat(dir_, "/", kSpawnPrefix, spawn);
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return "";
  return dir;
}

int CgroupJail::Kill(uint64_t spawn) {
  std::string dir = absl::StrCat(dir_, "/", kSpawnPrefix, spawn);
  int killed = KillDir(dir);
  RemoveDir(dir);
  return killed;
}

}  // namespace modelplane::runtime
