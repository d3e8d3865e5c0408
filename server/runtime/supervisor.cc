#include "server/runtime/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// Everything below runs after fork() in a multithreaded process: only
// async-signal-safe calls (raw system calls), no allocation, no locks.
namespace modelplane::runtime {
namespace {

// Signals a terminal or a process-group kill may deliver; the supervisor
// ignores them (only its lifeline ends it), and the model gets the default.
constexpr int kIgnoredSignals[] = {SIGINT,  SIGTERM, SIGHUP,  SIGQUIT, SIGPIPE,
                                   SIGUSR1, SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU};

void SetDisposition(int sig, void (*handler)(int)) {
  struct sigaction sa = {};
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, nullptr);
}

void Report(int fd, ReportMessage::Kind kind, int32_t value) {
  ReportMessage m{kind, value};
  while (write(fd, &m, sizeof(m)) < 0 && errno == EINTR) {
  }
}

// Closes every descriptor from 3 up except the ones in keep[3].
void CloseAllExcept(int a, int b, int c) {
  int keep[3] = {a, b, c};
  // Sort the three.
  for (int i = 0; i < 3; ++i) {
    for (int j = i + 1; j < 3; ++j) {
      if (keep[j] < keep[i]) {
        int t = keep[i];
        keep[i] = keep[j];
        keep[j] = t;
      }
    }
  }
  unsigned int from = 3;
  for (int k : keep) {
    if (k >= static_cast<int>(from)) {
      if (static_cast<unsigned>(k) > from) {
        syscall(SYS_close_range, from, static_cast<unsigned>(k) - 1, 0);
      }
      from = static_cast<unsigned>(k) + 1;
    }
  }
  if (syscall(SYS_close_range, from, ~0U, 0) != 0) {
    // No close_range (kernel < 5.9): close one by one.
    struct rlimit lim;
    long max = getrlimit(RLIMIT_NOFILE, &lim) == 0 ? lim.rlim_cur : 1024;
    for (long fd = from; fd < max; ++fd) close(static_cast<int>(fd));
  }
}

void SleepMillis(int ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

// Writes the decimal digits of `v` at `out`; returns the end.
char* FormatInt(char* out, long v) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0);
  while (n > 0) *out++ = digits[--n];
  return out;
}

// SIGKILLs the model's process group and every child of this process (the
// orphaned descendants that reparented to this subreaper, wherever their
// process group is). Returns false when no child is left.
bool KillDescendants(pid_t model_group) {
  kill(-model_group, SIGKILL);
  char path[64] = "/proc/self/task/";
  char* p = FormatInt(path + 16, getpid());
  const char kChildren[] = "/children";
  for (const char* s = kChildren; *s != '\0'; ++s) *p++ = *s;
  *p = '\0';
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  bool any = false;
  if (fd >= 0) {
    char buf[4096];
    long pid = 0;
    bool in_number = false;
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
      for (ssize_t i = 0; i < n; ++i) {
        if (buf[i] >= '0' && buf[i] <= '9') {
          pid = pid * 10 + (buf[i] - '0');
          in_number = true;
        } else if (in_number) {
          kill(static_cast<pid_t>(pid), SIGKILL);
          any = true;
          pid = 0;
          in_number = false;
        }
      }
    }
    if (in_number) {
      kill(static_cast<pid_t>(pid), SIGKILL);
      any = true;
    }
    close(fd);
  }
  return any;
}

// Kills and reaps descendants until none is left (bounded).
void KillAndReapAll(pid_t model_group) {
  for (int round = 0; round < kReapRounds; ++round) {
    KillDescendants(model_group);
    while (true) {
      pid_t r = waitpid(-1, nullptr, WNOHANG);
      if (r > 0) continue;
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == ECHILD) return;  // All gone.
      break;                                 // Some still dying.
    }
    SleepMillis(kReapRoundMillis);
  }
}

constexpr size_t kCgroupPathBytes = 4096;

// out = dir + leaf; false when it does not fit.
bool JoinPath(char (&out)[kCgroupPathBytes], const char* dir,
              const char* leaf) {
  size_t n = 0;
  for (const char* p = dir; *p != '\0'; ++p) {
    if (n + 1 >= kCgroupPathBytes) return false;
    out[n++] = *p;
  }
  for (const char* p = leaf; *p != '\0'; ++p) {
    if (n + 1 >= kCgroupPathBytes) return false;
    out[n++] = *p;
  }
  out[n] = '\0';
  return true;
}

// The orphaned supervisor's last sweep: whatever is still in the model's
// cgroup (a process that escaped the subreaper by some other way) is
// killed, the emptied cgroup removed, then the manager's jail if this was
// its last spawn (else the next manager's start sweep removes it).
void KillAndRemoveCgroup(const char* cgroup) {
  char path[kCgroupPathBytes];
  if (JoinPath(path, cgroup, "/cgroup.kill")) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      while (write(fd, "1", 1) < 0 && errno == EINTR) {
      }
      close(fd);
    }
  }
  for (int round = 0; round < kReapRounds; ++round) {
    if (rmdir(cgroup) == 0 || errno == ENOENT) break;
    SleepMillis(kReapRoundMillis);
  }
  if (!JoinPath(path, cgroup, "")) return;
  size_t slash = 0;
  for (size_t i = 0; path[i] != '\0'; ++i) {
    if (path[i] == '/') slash = i;
  }
  if (slash == 0) return;
  path[slash] = '\0';
  rmdir(path);  // EBUSY while other spawns live.
}

// Exits with the model's wait status: the same exit code, or death by the
// same signal (without a core file).
[[noreturn]] void ExitLike(int status) {
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  int sig = WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL;
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  SetDisposition(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, nullptr);
  kill(getpid(), sig);
  _exit(128 + sig);
}

[[noreturn]] void ExecModel(const SupervisorArgs& a, pid_t supervisor) {
  char procs[kCgroupPathBytes];
  if (a.cgroup != nullptr && JoinPath(procs, a.cgroup, "/cgroup.procs")) {
    // Into the model's cgroup before anything of it runs (best effort: the
    // environment tag still finds its descendants without).
    int fd = open(procs, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      char digits[24];
      char* end = FormatInt(digits, getpid());
      while (write(fd, digits, static_cast<size_t>(end - digits)) < 0 &&
             errno == EINTR) {
      }
      close(fd);
    }
  }
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != supervisor) _exit(127);  // S died before prctl.
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull >= 0) {
    dup2(devnull, 0);
    close(devnull);
  }
  dup2(a.output_fd, 1);
  dup2(a.output_fd, 2);
  close(a.output_fd);
  close(a.lifeline_fd);
  for (int sig : kIgnoredSignals) SetDisposition(sig, SIG_DFL);
  SetDisposition(SIGCHLD, SIG_DFL);
  prctl(PR_SET_CHILD_SUBREAPER, 0);
  execve(a.path, a.argv, a.envp);
  Report(a.report_fd, ReportMessage::kExecErrno, errno);
  _exit(127);
}

char* title_area = nullptr;
size_t title_bytes = 0;

// The title over the manager's argv (this process's copy of the memory):
// what /proc/<pid>/cmdline, ps and pkill -f read.
void SetTitle(const char* title) {
  prctl(PR_SET_NAME, kSupervisorName);
  if (title_area == nullptr || title_bytes == 0 || title == nullptr) return;
  size_t i = 0;
  for (; i + 1 < title_bytes && title[i] != '\0'; ++i) title_area[i] = title[i];
  for (; i < title_bytes; ++i) title_area[i] = '\0';
}

}  // namespace

void SetProcessTitleArea(int argc, char** argv) {
  if (argc <= 0 || argv == nullptr || argv[0] == nullptr) return;
  // The strings lie end to end; the area is the run of them that does.
  char* end = argv[0];
  for (int i = 0; i < argc && argv[i] == end; ++i) {
    while (*end != '\0') ++end;
    ++end;
  }
  title_area = argv[0];
  title_bytes = static_cast<size_t>(end - argv[0]);
}

void RunSupervisor(const SupervisorArgs& a) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  SetTitle(a.title);
  for (int sig : kIgnoredSignals) SetDisposition(sig, SIG_IGN);
  SetDisposition(SIGCHLD, SIG_DFL);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  CloseAllExcept(a.output_fd, a.report_fd, a.lifeline_fd);
  // The model's copy of the report pipe closes when it execs.
  fcntl(a.report_fd, F_SETFD, FD_CLOEXEC);

  pid_t supervisor = getpid();
  pid_t model = fork();
  if (model < 0) {
    Report(a.report_fd, ReportMessage::kForkErrno, errno);
    _exit(127);
  }
  if (model == 0) ExecModel(a, supervisor);
  setpgid(model, model);  // Also done by the child; whichever runs first.
  Report(a.report_fd, ReportMessage::kPid, model);
  close(a.report_fd);
  close(a.output_fd);

  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, model, 0));
  int status = 0;
  bool orphaned = false;  // The manager is gone.
  while (true) {
    struct pollfd fds[2] = {{a.lifeline_fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
    // Without pidfd_open (kernel < 5.3), poll the child every 20 ms.
    int n = poll(fds, pidfd >= 0 ? 2 : 1, pidfd >= 0 ? -1 : 20);
    if (n < 0 && errno == EINTR) continue;
    if (fds[0].revents != 0 && !orphaned) {
      orphaned = true;
      KillDescendants(model);
    }
    pid_t r = waitpid(model, &status, WNOHANG);
    if (r == model) break;
    if (orphaned) SleepMillis(kReapRoundMillis);
  }
  KillAndReapAll(model);
  if (orphaned && a.cgroup != nullptr) KillAndRemoveCgroup(a.cgroup);
  ExitLike(status);
}

}  // namespace modelplane::runtime
