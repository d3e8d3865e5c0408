#include "server/runtime/process_launcher.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/runtime/orphan_sweep.h"
#include "server/runtime/supervisor.h"

extern char** environ;

namespace modelplane::runtime {
namespace {

constexpr size_t kReadChunk = 16 << 10;

absl::Status Errno(absl::string_view what, int err) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(err)));
}

// The manager's side of one spawned process: the supervisor's pidfd, the
// output pipe and the drain backstop. Frees itself once its handles are
// closed and its Process handle is gone; runs until the supervisor is
// reaped even if the Process handle goes first.
class ProcState {
 public:
  ProcState(uv_loop_t* loop, pid_t supervisor, pid_t model,
            actor::ProcessObserver* observer, uint64_t spawn, std::string name,
            std::shared_ptr<ProcessLauncher::Warn> warn,
            std::shared_ptr<CgroupJail> jail,
            std::shared_ptr<ProcessLauncher::Live> live)
      : live_(std::move(live)),
        loop_(loop),
        supervisor_(supervisor),
        model_(model),
        observer_(observer),
        spawn_(spawn),
        name_(std::move(name)),
        warn_(std::move(warn)),
        jail_(std::move(jail)) {
    live_->insert(this);
  }
  ~ProcState() { live_->erase(this); }

  // The launcher is going while this spawn is still being reaped (its
  // Process handle is gone): its handles close now, and it frees itself
  // once they have (the loop's last turns), instead of leaving them to
  // the loop's shutdown. The supervisor, its lifeline closing, kills the
  // rest.
  void Abandon() {
    if (!detached_) return;  // Its owner still holds it.
    finished_ = true;
    if (!reaped_) {
      uv_poll_stop(&exit_poll_);
      Close(reinterpret_cast<uv_handle_t*>(&exit_poll_));
      if (pidfd_ >= 0) close(pidfd_);
      pidfd_ = -1;
      reaped_ = true;
    }
    CloseOutput();
    uv_timer_stop(&backstop_);
    Close(reinterpret_cast<uv_handle_t*>(&backstop_));
    MaybeDelete();
  }

  absl::Status Start(int output_fd) {
    buffer_.reset(new char[kReadChunk]);
    uv_pipe_init(loop_, &output_, 0);
    output_.data = this;
    ++open_handles_;
    int rc = uv_pipe_open(&output_, output_fd);
    if (rc == 0) {
      rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&output_), OnAlloc,
                         OnRead);
    }
    if (rc != 0) return Errno("output pipe", -rc);
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, supervisor_, 0));
    if (pidfd_ < 0)
      return Errno("pidfd_open (Linux 5.3 or later needed)", errno);
    uv_poll_init(loop_, &exit_poll_, pidfd_);
    exit_poll_.data = this;
    ++open_handles_;
    uv_poll_start(&exit_poll_, UV_READABLE, OnSupervisorExit);
    uv_timer_init(loop_, &backstop_);
    backstop_.data = this;
    ++open_handles_;
    return absl::OkStatus();
  }

  pid_t model() const { return model_; }

  void SignalGroup(int sig) {
    // Once the supervisor is reaped the group is gone and its id may be
    // reused: never signal it again.
    if (!reaped_) kill(-model_, sig);
  }

  // The Process handle is gone: the observer hears nothing more; a process
  // still running is killed.
  void Detach() {
    observer_ = nullptr;
    detached_ = true;
    if (!reaped_) kill(-model_, SIGKILL);
    MaybeDelete();
  }

 private:
  std::shared_ptr<ProcessLauncher::Live> live_;

  static void OnAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* s = static_cast<ProcState*>(h->data);
    *buf = uv_buf_init(s->buffer_.get(), kReadChunk);
  }

  static void OnRead(uv_stream_t* stream, ssize_t n, const uv_buf_t* buf) {
    auto* s = static_cast<ProcState*>(stream->data);
    if (n > 0) {
      if (s->observer_ != nullptr) {
        s->observer_->OnOutput(absl::string_view(buf->base, n));
      }
      return;
    }
    if (n < 0) {  // EOF: every holder of the pipe is gone.
      s->CloseOutput();
      s->MaybeFinish();
    }
  }

  static void OnSupervisorExit(uv_poll_t* poll, int, int) {
    auto* s = static_cast<ProcState*>(poll->data);
    int status = 0;
    pid_t r;
    do {
      r = waitpid(s->supervisor_, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r != s->supervisor_) return;
    s->reaped_ = true;
    s->exit_ = WIFSIGNALED(status)
                   ? actor::ExitStatus::Signaled(WTERMSIG(status))
                   : actor::ExitStatus::Code(WEXITSTATUS(status));
    uv_poll_stop(&s->exit_poll_);
    s->Close(reinterpret_cast<uv_handle_t*>(&s->exit_poll_));
    close(s->pidfd_);
    s->pidfd_ = -1;
    // A supervisor kills all of its spawn before it exits; one killed
    // itself (SIGKILL) could not: what is left of the spawn goes now, from
    // its cgroup (whatever it did to escape), then by its tag.
    int jailed = s->jail_ != nullptr ? s->jail_->Kill(s->spawn_) : 0;
    std::vector<SweptProcess> swept = SweepSpawn(s->spawn_);
    if ((jailed > 0 || !swept.empty()) && *s->warn_) {
      (*s->warn_)(absl::StrCat(
          "model ", s->name_, ": its supervisor died (", s->exit_.ToString(),
          ") and left ",
          jailed > 0 ? absl::StrCat(jailed, " process(es) in its cgroup")
                     : absl::StrCat(swept.size(), " process(es)"),
          " alive; killed",
          swept.empty() ? "" : absl::StrCat(" ", Describe(swept))));
    }
    uv_update_time(s->loop_);
    uv_timer_start(
        &s->backstop_,
        [](uv_timer_t* t) {
          auto* st = static_cast<ProcState*>(t->data);
          st->CloseOutput();  // Drain backstop: stop waiting for EOF.
          st->MaybeFinish();
        },
        absl::ToInt64Milliseconds(ProcessLauncher::kDrainBackstop), 0);
    s->MaybeFinish();
  }

  void CloseOutput() {
    if (output_closed_) return;
    output_closed_ = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&output_));
    Close(reinterpret_cast<uv_handle_t*>(&output_));
  }

  void MaybeFinish() {
    if (!reaped_ || !output_closed_ || finished_) return;
    finished_ = true;
    uv_timer_stop(&backstop_);
    Close(reinterpret_cast<uv_handle_t*>(&backstop_));
    actor::ProcessObserver* observer = std::exchange(observer_, nullptr);
    if (observer != nullptr) observer->OnExit(exit_);  // May Detach().
  }

  void Close(uv_handle_t* h) {
    if (!uv_is_closing(h)) uv_close(h, OnClosed);
  }

  static void OnClosed(uv_handle_t* h) {
    auto* s = static_cast<ProcState*>(h->data);
    --s->open_handles_;
    s->MaybeDelete();
  }

  void MaybeDelete() {
    if (detached_ && finished_ && open_handles_ == 0) delete this;
  }

  uv_loop_t* loop_;
  pid_t supervisor_;
  pid_t model_;
  actor::ProcessObserver* observer_;
  uint64_t spawn_;
  std::string name_;
  std::shared_ptr<ProcessLauncher::Warn> warn_;
  std::shared_ptr<CgroupJail> jail_;
  std::unique_ptr<char[]> buffer_;
  uv_pipe_t output_;
  uv_poll_t exit_poll_;
  uv_timer_t backstop_;
  int pidfd_ = -1;
  int open_handles_ = 0;
  bool output_closed_ = false;
  bool reaped_ = false;
  bool finished_ = false;
  bool detached_ = false;
  actor::ExitStatus exit_;
};

class UvProcess : public actor::Process {
 public:
  explicit UvProcess(ProcState* state) : state_(state) {}
  ~UvProcess() override { state_->Detach(); }
  int pid() const override { return state_->model(); }
  void SignalGroup(int sig) override { state_->SignalGroup(sig); }

 private:
  ProcState* state_;
};

// Reads the report pipe until EOF: the supervisor closes its end after
// reporting the pid, and the model's copy closes when exec succeeds.
void ReadReports(int fd, pid_t* model, int* exec_errno, int* fork_errno) {
  ReportMessage m;
  size_t got = 0;
  while (true) {
    ssize_t n = read(fd, reinterpret_cast<char*>(&m) + got, sizeof(m) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    got += n;
    if (got < sizeof(m)) continue;
    got = 0;
    if (m.kind == ReportMessage::kPid) *model = m.value;
    if (m.kind == ReportMessage::kExecErrno) *exec_errno = m.value;
    if (m.kind == ReportMessage::kForkErrno) *fork_errno = m.value;
  }
}

}  // namespace

std::vector<std::string> MergeEnvironment(
    const std::vector<std::string>& overrides) {
  std::vector<std::string> env;
  auto key_of = [](const std::string& entry) {
    return entry.substr(0, entry.find('='));
  };
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry(*e);
    bool replaced = false;
    for (const std::string& o : overrides) {
      if (key_of(o) == key_of(entry)) replaced = true;
    }
    if (!replaced) env.push_back(std::move(entry));
  }
  for (const std::string& o : overrides) {
    // A later override of the same key wins.
    bool later = false;
    for (const std::string* p = &o + 1; p < overrides.data() + overrides.size();
         ++p) {
      if (key_of(*p) == key_of(o)) later = true;
    }
    if (!later) env.push_back(o);
  }
  return env;
}

absl::StatusOr<std::string> ResolveExecutable(const std::string& argv0,
                                              const std::string& path_var) {
  auto check = [](const std::string& path) -> absl::Status {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(
          absl::StrCat(path, ": ", std::strerror(errno)));
    }
    if (!S_ISREG(st.st_mode) || access(path.c_str(), X_OK) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat(path, ": not an executable file"));
    }
    return absl::OkStatus();
  };
  if (argv0.empty()) return absl::InvalidArgumentError("empty command");
  if (argv0.find('/') != std::string::npos) {
    absl::Status s = check(argv0);
    if (!s.ok()) return s;
    return argv0;
  }
  absl::Status first_denied;
  for (absl::string_view dir : absl::StrSplit(path_var, ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", argv0);
    absl::Status s = check(candidate);
    if (s.ok()) return candidate;
    if (absl::IsPermissionDenied(s) && first_denied.ok()) first_denied = s;
  }
  if (!first_denied.ok()) return first_denied;
  return absl::NotFoundError(
      absl::StrCat(argv0, ": not found in PATH (", path_var, ")"));
}

ProcessLauncher::ProcessLauncher(uv_loop_t* loop) : loop_(loop) {
  std::string why;
  jail_ = CgroupJail::ForThisProcess(&why);
  isolation_ = jail_ != nullptr
                   ? absl::StrCat("models run in cgroups under ", jail_->dir())
                   : absl::StrCat("models run without cgroups (", why,
                                  "): what a killed supervisor leaves is "
                                  "found by its environment tag only");
  int fds[2];
  ABSL_RAW_CHECK(pipe2(fds, O_CLOEXEC) == 0, "lifeline pipe");
  lifeline_read_ = fds[0];
  lifeline_write_ = fds[1];
}

ProcessLauncher::~ProcessLauncher() {
  *warn_ = nullptr;  // Spawns still being reaped have no one to tell.
  std::vector<void*> live(live_->begin(), live_->end());
  for (void* s : live) static_cast<ProcState*>(s)->Abandon();
  close(lifeline_write_);
  close(lifeline_read_);
}

namespace {

// The PATH a model's command is looked up in: its env's, else the manager's.
std::string PathOf(const std::vector<std::string>& env) {
  std::string path_var = "/usr/local/bin:/usr/bin:/bin";
  for (const std::string& e : env) {
    if (e.rfind("PATH=", 0) == 0) path_var = e.substr(5);
  }
  return path_var;
}

}  // namespace

namespace {

absl::Status CheckCommand(const std::vector<std::string>& argv,
                          const std::string& search, int depth);

bool IsEnv(absl::string_view path) {
  path.remove_prefix(path.rfind('/') + 1);
  return path == "env";
}

// What env(1) runs given `args` (GNU env's options: -i, -0, -v, -u NAME,
// -S STRING, --), checked as exec would; OK when env runs nothing (it
// prints the environment) or an option leaves the command unknown (-C).
absl::Status CheckEnvCommand(std::vector<std::string> args, std::string search,
                             int depth) {
  size_t i = 0;
  auto split = [&](absl::string_view words, size_t next) {
    std::vector<std::string> rest =
        absl::StrSplit(words, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    rest.insert(rest.end(), args.begin() + static_cast<long>(next), args.end());
    args = std::move(rest);
    i = 0;
  };
  while (i < args.size()) {
    const std::string& a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-" || a == "-i" || a == "--ignore-environment") {
      search = "/bin:/usr/bin";  // No PATH: execvp's default.
      ++i;
    } else if (a == "-0" || a == "--null" || a == "-v" || a == "--debug") {
      ++i;
    } else if (a == "-u" || a == "--unset") {
      i += 2;
    } else if (absl::StartsWith(a, "--unset=") ||
               (absl::StartsWith(a, "-u") && a.size() > 2)) {
      ++i;
    } else if (a == "-S" || a == "--split-string") {
      if (i + 1 >= args.size()) return absl::OkStatus();
      std::string words = args[i + 1];
      split(words, i + 2);
    } else if (absl::StartsWith(a, "--split-string=")) {
      std::string words = a.substr(15);
      split(words, i + 1);
    } else if (absl::StartsWith(a, "-S")) {
      std::string words = a.substr(2);
      split(words, i + 1);
    } else if (absl::StartsWith(a, "-")) {
      return absl::OkStatus();  // -C DIR and the like: not followed.
    } else {
      break;
    }
  }
  for (; i < args.size() && args[i].find('=') != std::string::npos; ++i) {
    if (absl::StartsWith(args[i], "PATH=")) search = args[i].substr(5);
  }
  if (i >= args.size()) return absl::OkStatus();
  std::vector<std::string> command(args.begin() + static_cast<long>(i),
                                   args.end());
  absl::Status s = CheckCommand(command, search, depth + 1);
  if (s.ok()) return s;
  return absl::Status(s.code(),
                      absl::StrCat("env runs ", command[0], ": ", s.message()));
}

absl::Status CheckCommand(const std::vector<std::string>& argv,
                          const std::string& search, int depth) {
  if (depth > 4) return absl::OkStatus();
  absl::StatusOr<std::string> path = ResolveExecutable(argv[0], search);
  if (!path.ok()) return path.status();
  if (absl::Status s = CheckExecFormat(*path, depth, search); !s.ok()) {
    return s;
  }
  if (!IsEnv(*path)) return absl::OkStatus();
  return CheckEnvCommand(std::vector<std::string>(argv.begin() + 1, argv.end()),
                         search, depth);
}

}  // namespace

absl::Status CheckExecutable(const actor::SpawnSpec& spec) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("empty command");
  return CheckCommand(spec.argv, PathOf(MergeEnvironment(spec.env)), 0);
}

namespace {

#if defined(__x86_64__)
constexpr uint16_t kMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr uint16_t kMachine = EM_AARCH64;
#else
constexpr uint16_t kMachine = EM_NONE;  // Not checked.
#endif

// An ELF file the kernel would load here: this machine's class, byte order
// and architecture, and its program interpreter (the dynamic loader) there.
absl::Status CheckElf(const std::string& path, int fd) {
  Elf64_Ehdr h;
  if (pread(fd, &h, sizeof(h), 0) != static_cast<ssize_t>(sizeof(h)) ||
      h.e_ident[EI_CLASS] != ELFCLASS64 || h.e_ident[EI_DATA] != ELFDATA2LSB ||
      (kMachine != EM_NONE && h.e_machine != kMachine)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": an ELF file for another machine"));
  }
  if (h.e_type != ET_EXEC && h.e_type != ET_DYN) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": an ELF file that is no executable"));
  }
  for (int i = 0; i < h.e_phnum && i < 256; ++i) {
    Elf64_Phdr ph;
    off_t at = static_cast<off_t>(h.e_phoff) +
               static_cast<off_t>(i) * static_cast<off_t>(h.e_phentsize);
    if (pread(fd, &ph, sizeof(ph), at) != static_cast<ssize_t>(sizeof(ph))) {
      break;
    }
    if (ph.p_type != PT_INTERP || ph.p_filesz == 0 || ph.p_filesz > 4096) {
      continue;
    }
    std::string interp(ph.p_filesz, '\0');
    if (pread(fd, interp.data(), interp.size(),
              static_cast<off_t>(ph.p_offset)) !=
        static_cast<ssize_t>(interp.size())) {
      break;
    }
    interp.resize(strnlen(interp.data(), interp.size()));
    if (access(interp.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, ": its loader ", interp, ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckExecFormat(const std::string& path, int depth,
                             const std::string& search) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  // Executable but not readable (mode 0111): the kernel may still run it.
  if (fd < 0) return absl::OkStatus();
  char head[256] = {};
  ssize_t n = pread(fd, head, sizeof(head), 0);
  absl::Status result = absl::OkStatus();
  if (n >= 4 && memcmp(head, ELFMAG, SELFMAG) == 0) {
    result = CheckElf(path, fd);
  } else if (n >= 2 && head[0] == '#' && head[1] == '!') {
    // "#! /usr/bin/env python3": the interpreter is the first word, as the
    // kernel reads it (ended by a space, a tab or the newline: a CR before
    // the newline is part of the name).
    absl::string_view line(head + 2, static_cast<size_t>(n) - 2);
    line = line.substr(0, line.find('\n'));
    while (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      line.remove_prefix(1);
    }
    std::string interp(line.substr(0, line.find_first_of(" \t")));
    // The rest of the line is one argument (the kernel does not split it),
    // trailing spaces and tabs trimmed.
    absl::string_view rest = line.substr(interp.size());
    while (!rest.empty() && (rest[0] == ' ' || rest[0] == '\t')) {
      rest.remove_prefix(1);
    }
    while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) {
      rest.remove_suffix(1);
    }
    struct stat st;
    if (interp.empty()) {
      result = absl::FailedPreconditionError(
          absl::StrCat(path, ": its #! line names no interpreter"));
    } else if (absl::EndsWith(interp, "\r")) {
      interp.pop_back();
      result = absl::FailedPreconditionError(
          absl::StrCat(path,
                       ": its #! line ends in CR (Windows line endings): the "
                       "interpreter would be \"",
                       interp, "\\r\", which does not exist"));
    } else if (stat(interp.c_str(), &st) != 0) {
      result = absl::FailedPreconditionError(absl::StrCat(
          path, ": its interpreter ", interp, ": ", std::strerror(errno)));
    } else if (!S_ISREG(st.st_mode) || access(interp.c_str(), X_OK) != 0) {
      result = absl::FailedPreconditionError(absl::StrCat(
          path, ": its interpreter ", interp, " is not an executable file"));
    } else if (absl::EndsWith(rest, "\r")) {
      result = absl::FailedPreconditionError(absl::StrCat(
          path, ": its #! line ends in CR (Windows line endings): ", interp,
          " would be given \"", rest.substr(0, rest.size() - 1), "\\r\""));
    } else if (depth < 4) {  // The kernel follows a few levels of #!.
      result = CheckExecFormat(interp, depth + 1, search);
      // "#!/usr/bin/env python3": what env runs, given the rest as one
      // argument (a space in it and no -S: env looks for "python3 -u").
      if (result.ok() && IsEnv(interp) && !rest.empty()) {
        result = CheckEnvCommand({std::string(rest)}, search, depth + 1);
        if (!result.ok()) {
          result = absl::Status(
              result.code(),
              absl::StrCat(path, ": its #! line: ", result.message()));
        }
      }
    }
  } else {
    result = absl::FailedPreconditionError(absl::StrCat(
        path,
        ": neither an ELF executable nor a #! script (exec would fail "
        "with 'Exec format error')"));
  }
  close(fd);
  return result;
}

absl::Status ProcessLauncher::Check(const actor::SpawnSpec& spec) {
  return CheckExecutable(spec);
}

absl::StatusOr<std::unique_ptr<actor::Process>> ProcessLauncher::Spawn(
    const actor::SpawnSpec& spec, actor::ProcessObserver* observer) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("empty command");
  // The spawn's tag, which every descendant inherits (orphan_sweep.h).
  uint64_t spawn = ++spawns_;
  std::vector<std::string> overrides = spec.env;
  overrides.push_back(SpawnEntry(spawn, spec.name));
  std::vector<std::string> env = MergeEnvironment(overrides);
  absl::StatusOr<std::string> path =
      ResolveExecutable(spec.argv[0], PathOf(env));
  std::string title = absl::StrCat(kSupervisorName, " ", spec.name);
  std::string cgroup = jail_ != nullptr ? jail_->Prepare(spawn) : "";
  if (!path.ok()) return path.status();
  // Everything the child needs is built before fork().
  std::vector<char*> argv, envp;
  for (const std::string& a : spec.argv)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int out[2], report[2];
  if (pipe2(out, O_CLOEXEC) != 0) return Errno("pipe", errno);
  if (pipe2(report, O_CLOEXEC) != 0) {
    int err = errno;
    close(out[0]);
    close(out[1]);
    return Errno("pipe", err);
  }
  pid_t supervisor = fork();
  if (supervisor == 0) {
    RunSupervisor(SupervisorArgs{path->c_str(), argv.data(), envp.data(),
                                 out[1], report[1], lifeline_read_,
                                 title.c_str(),
                                 cgroup.empty() ? nullptr : cgroup.c_str()});
  }
  int fork_err = errno;
  close(out[1]);
  close(report[1]);
  if (supervisor < 0) {
    close(out[0]);
    close(report[0]);
    return Errno("fork", fork_err);
  }
  pid_t model = 0;
  int exec_errno = 0, child_fork_errno = 0;
  ReadReports(report[0], &model, &exec_errno, &child_fork_errno);
  close(report[0]);
  if (model <= 0 || exec_errno != 0) {
    // The supervisor exits at once once its model is gone.
    close(out[0]);
    int status;
    while (waitpid(supervisor, &status, 0) < 0 && errno == EINTR) {
    }
    if (exec_errno != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("exec ", *path, ": ", std::strerror(exec_errno)));
    }
    return Errno("fork", child_fork_errno != 0 ? child_fork_errno : EAGAIN);
  }
  auto* state = new ProcState(loop_, supervisor, model, observer, spawn,
                              spec.name, warn_, jail_, live_);
  auto process = std::make_unique<UvProcess>(state);
  absl::Status started = state->Start(out[0]);
  if (!started.ok()) return started;  // ~UvProcess kills and cleans up.
  return process;
}

}  // namespace modelplane::runtime
