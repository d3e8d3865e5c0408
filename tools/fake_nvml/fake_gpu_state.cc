#include "tools/fake_nvml/fake_gpu_state.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace modelplane::fake_gpu {
namespace {

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Alive: it exists and is not a zombie (a CUDA context is torn down when
// its process exits, before it is reaped).
bool Alive(int pid) {
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)),
                   std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return false;
  char state = text[paren + 2];
  return state != 'Z' && state != 'X';
}

// Holds an exclusive flock on <dir>/lock for its life.
class Lock {
 public:
  explicit Lock(const std::string& dir) {
    fd_ = open((dir + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ >= 0) {
      while (flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
      }
    }
  }
  ~Lock() {
    if (fd_ >= 0) close(fd_);
  }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

 private:
  int fd_ = -1;
};

bool WriteFile(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out) return false;
  }
  return rename(tmp.c_str(), path.c_str()) == 0;
}

std::string ProcText(const Proc& p) {
  std::ostringstream s;
  s << p.gpu << ' ' << p.mib << ' ' << p.lag_ms;
  if (p.dead_since_ms != 0) s << ' ' << p.dead_since_ms;
  s << '\n';
  return s.str();
}

// Reads the state with the lock held.
bool ReadLocked(const std::string& dir, State* out, std::string* error) {
  *out = State();
  std::ifstream gpus(dir + "/gpus");
  if (!gpus) {
    *error = "no " + dir + "/gpus";
    return false;
  }
  std::string line;
  while (std::getline(gpus, line)) {
    std::istringstream in(line);
    Gpu g;
    if (!(in >> g.total_mib)) continue;
    std::getline(in >> std::ws, g.name);
    if (g.name.empty()) g.name = "Fake GPU";
    out->gpus.push_back(g);
  }
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    *error = dir + ": " + strerror(errno);
    return false;
  }
  int64_t now = NowMs();
  while (dirent* e = readdir(d)) {
    if (strncmp(e->d_name, "proc.", 5) != 0) continue;
    char* end = nullptr;
    long pid = strtol(e->d_name + 5, &end, 10);
    if (end == nullptr || *end != '\0' || pid <= 0) continue;
    std::string path = dir + "/" + e->d_name;
    std::ifstream f(path);
    Proc p;
    p.pid = static_cast<int>(pid);
    if (!(f >> p.gpu >> p.mib >> p.lag_ms)) continue;
    f >> p.dead_since_ms;
    if (p.dead_since_ms == 0 && !Alive(p.pid)) {
      p.dead_since_ms = now;
      if (p.lag_ms > 0) WriteFile(path, ProcText(p));
    }
    if (p.dead_since_ms != 0 && now - p.dead_since_ms >= p.lag_ms) {
      unlink(path.c_str());
      continue;
    }
    out->procs.push_back(p);
  }
  closedir(d);
  return true;
}

}  // namespace

uint64_t State::UsedMib(int gpu) const {
  uint64_t used = 0;
  for (const Proc& p : procs) {
    if (p.gpu == gpu) used += p.mib;
  }
  return used;
}

std::string Dir() {
  const char* dir = getenv("FAKE_NVML_DIR");
  return dir == nullptr ? "" : dir;
}

bool Read(const std::string& dir, State* out, std::string* error) {
  Lock lock(dir);
  return ReadLocked(dir, out, error);
}

bool Allocate(const std::string& dir, int pid, int gpu, uint64_t mib,
              int64_t lag_ms, std::string* error) {
  Lock lock(dir);
  State state;
  if (!ReadLocked(dir, &state, error)) return false;
  if (gpu < 0 || gpu >= static_cast<int>(state.gpus.size())) {
    *error = "no GPU " + std::to_string(gpu) + " (the fake has " +
             std::to_string(state.gpus.size()) + ")";
    return false;
  }
  uint64_t total = state.gpus[gpu].total_mib;
  uint64_t used = 0;  // Its own earlier allocation is replaced.
  for (const Proc& p : state.procs) {
    if (p.gpu == gpu && p.pid != pid) used += p.mib;
  }
  if (used + mib > total) {
    std::ostringstream s;
    s << "CUDA error: out of memory (fake GPU " << gpu << ": " << mib
      << " MiB asked, " << (total - used) << " MiB free of " << total << ")";
    *error = s.str();
    std::ofstream oom(dir + "/oom.log", std::ios::app);
    oom << "pid " << pid << ": " << *error << '\n';
    return false;
  }
  Proc p;
  p.pid = pid;
  p.gpu = gpu;
  p.mib = mib;
  p.lag_ms = lag_ms;
  if (!WriteFile(dir + "/proc." + std::to_string(pid), ProcText(p))) {
    *error = dir + ": cannot write proc." + std::to_string(pid);
    return false;
  }
  return true;
}

}  // namespace modelplane::fake_gpu
