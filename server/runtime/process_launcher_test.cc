// The launcher and its supervisor with real processes.
#include "server/runtime/process_launcher.h"

#include <signal.h>
#include <sys/stat.h>

#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "common/loop_thread.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/runtime/test_util.h"

namespace modelplane::runtime {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(10);

class ProcessLauncherTest : public ::testing::Test {
 protected:
  ProcessLauncherTest() {
    loop_.RunSync([this] {
      launcher_ = std::make_unique<ProcessLauncher>(loop_.loop());
    });
  }
  ~ProcessLauncherTest() override {
    loop_.RunSync([this] {
      processes_.clear();
      launcher_.reset();
    });
  }

  // Spawns on the loop thread; returns the status and keeps the process.
  absl::Status Spawn(actor::SpawnSpec spec, RecordingObserver* observer,
                     int* pid = nullptr) {
    absl::Status status;
    loop_.RunSync([&] {
      auto p = launcher_->Spawn(spec, observer);
      status = p.status();
      if (!p.ok()) return;
      if (pid != nullptr) *pid = (*p)->pid();
      processes_.push_back(*std::move(p));
    });
    return status;
  }

  void SignalLast(int sig) {
    loop_.RunSync([&] { processes_.back()->SignalGroup(sig); });
  }

  // The pid fake_upstream --fork-child printed for its grandchild.
  static int GrandchildPid(const RecordingObserver& o) {
    std::string out = o.output();
    size_t at = out.find("forked child pid ");
    if (at == std::string::npos) return 0;
    int pid = 0;
    absl::SimpleAtoi(out.substr(at + 17, out.find('\n', at) - at - 17), &pid);
    return pid;
  }

  LoopThread loop_;
  std::unique_ptr<ProcessLauncher> launcher_;
  std::vector<std::unique_ptr<actor::Process>> processes_;
};

TEST_F(ProcessLauncherTest, CapturesStdoutAndStderrInOrderAndTheExitCode) {
  RecordingObserver o;
  ASSERT_TRUE(
      Spawn({{"sh", "-c", "echo out; echo err >&2; echo $0; exit 3"}}, &o)
          .ok());
  ASSERT_TRUE(o.WaitForExit(kWait));
  EXPECT_EQ(o.output(), "out\nerr\nsh\n");
  EXPECT_EQ(o.exit()->exit_code, 3);
  EXPECT_EQ(o.exit()->signal, 0);
}

TEST_F(ProcessLauncherTest, ReportsDeathBySignal) {
  RecordingObserver o;
  ASSERT_TRUE(Spawn({{"sh", "-c", "kill -SEGV $$"}}, &o).ok());
  ASSERT_TRUE(o.WaitForExit(kWait));
  EXPECT_EQ(o.exit()->signal, SIGSEGV);
  EXPECT_EQ(o.exit()->ToString(), "killed by SIGSEGV");
}

TEST_F(ProcessLauncherTest, MissingOrNonExecutableBinaryIsASpawnError) {
  RecordingObserver o;
  absl::Status s = Spawn({{"no-such-model-server"}}, &o);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(),
              HasSubstr("no-such-model-server: not found in PATH"));
  std::string dir = ::testing::TempDir();
  std::string plain = dir + "/not-executable";
  std::string garbage = dir + "/garbage-executable";
  ASSERT_EQ(system(("printf x > " + plain + "; printf '\\0\\1\\2' > " +
                    garbage + "; chmod 644 " + plain + "; chmod 755 " + garbage)
                       .c_str()),
            0);
  s = Spawn({{plain}}, &o);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(), plain + ": not an executable file");
  s = Spawn({{garbage}}, &o);  // Fails in exec itself, after fork.
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "exec " + garbage + ": Exec format error");
  s = Spawn({{"/nonexistent/llama-server", "-m", "x"}}, &o);
  EXPECT_EQ(s.message(),
            "/nonexistent/llama-server: No such file or directory");
}

TEST_F(ProcessLauncherTest, ModelEnvReplacesAndAddsVariables) {
  RecordingObserver o;
  setenv("MODELPLANE_TEST_VAR", "inherited", 1);
  ASSERT_TRUE(Spawn({{"sh", "-c",
                      "echo $MODELPLANE_TEST_VAR $EXTRA; env | "
                      "grep -c MODELPLANE_TEST_VAR"},
                     {"MODELPLANE_TEST_VAR=override", "EXTRA=x=y"}},
                    &o)
                  .ok());
  ASSERT_TRUE(o.WaitForExit(kWait));
  EXPECT_EQ(o.output(), "override x=y\n1\n");
}

TEST_F(ProcessLauncherTest, ModelRunsInItsOwnProcessGroupWithStdinClosed) {
  RecordingObserver o;
  int pid = 0;
  ASSERT_TRUE(
      Spawn({{"sh", "-c", "awk '{print $5}' /proc/$$/stat; cat; echo done"}},
            &o, &pid)
          .ok());
  ASSERT_TRUE(o.WaitForExit(kWait));
  EXPECT_EQ(o.output(), absl::StrCat(pid, "\ndone\n"))
      << "pgid must equal the model's pid; stdin must be at EOF";
}

TEST_F(ProcessLauncherTest, GroupKillTakesTheGrandchildHoldingThePipes) {
  RecordingObserver o;
  ASSERT_TRUE(Spawn({{Runfile("tools/fake_upstream/fake_upstream"),
                      "--fork-child", "--ignore-sigterm"}},
                    &o)
                  .ok());
  ASSERT_TRUE(o.WaitForOutput("listening on", kWait));
  int grandchild = GrandchildPid(o);
  ASSERT_GT(grandchild, 0);
  SignalLast(SIGTERM);
  ASSERT_TRUE(o.WaitForOutput("ignoring SIGTERM", kWait));
  EXPECT_FALSE(o.exit().has_value());
  SignalLast(SIGKILL);
  ASSERT_TRUE(o.WaitForExit(kWait));
  EXPECT_EQ(o.exit()->signal, SIGKILL);
  EXPECT_FALSE(ProcessAlive(grandchild));
}

TEST_F(ProcessLauncherTest,
       ExitIsReportedPromptlyWhenAGrandchildKeepsThePipes) {
  // The model exits on SIGTERM but its grandchild ignores it and keeps
  // stdout open: the supervisor kills it, so the exit is not held up.
  RecordingObserver o;
  ASSERT_TRUE(
      Spawn({{Runfile("tools/fake_upstream/fake_upstream"), "--fork-child"}},
            &o)
          .ok());
  ASSERT_TRUE(o.WaitForOutput("listening on", kWait));
  int grandchild = GrandchildPid(o);
  SignalLast(SIGTERM);
  ASSERT_TRUE(o.WaitForExit(absl::Seconds(5)));
  EXPECT_EQ(o.exit()->exit_code, 0);
  EXPECT_FALSE(ProcessAlive(grandchild));
}

TEST_F(ProcessLauncherTest, DestroyingTheProcessKillsItsGroup) {
  RecordingObserver o;
  int pid = 0;
  ASSERT_TRUE(Spawn({{"sleep", "600"}}, &o, &pid).ok());
  ASSERT_TRUE(ProcessAlive(pid));
  loop_.RunSync([&] { processes_.clear(); });
  EXPECT_TRUE(WaitFor([&] { return !ProcessAlive(pid); }, kWait, "kill"));
  EXPECT_FALSE(o.exit().has_value());  // Detached: no callback.
}

TEST_F(ProcessLauncherTest, ClosingTheLifelineKillsEveryModel) {
  RecordingObserver a, b;
  int pa = 0, pb = 0;
  ASSERT_TRUE(Spawn({{"sleep", "600"}}, &a, &pa).ok());
  ASSERT_TRUE(Spawn({{"sh", "-c", "sleep 600 & sleep 600"}}, &b, &pb).ok());
  // As if the manager died: only the lifeline tells the supervisors.
  loop_.RunSync([&] { launcher_.reset(); });
  ASSERT_TRUE(a.WaitForExit(kWait));
  ASSERT_TRUE(b.WaitForExit(kWait));
  EXPECT_EQ(a.exit()->signal, SIGKILL);
  EXPECT_FALSE(ProcessAlive(pa));
  EXPECT_FALSE(ProcessAlive(pb));
}

TEST_F(ProcessLauncherTest, ProcessMayBeDestroyedInsideOnExit) {
  RecordingObserver o;
  o.on_exit = [this] { processes_.clear(); };
  ASSERT_TRUE(Spawn({{"true"}}, &o).ok());
  ASSERT_TRUE(o.WaitForExit(kWait));
  loop_.RunSync([&] { EXPECT_TRUE(processes_.empty()); });
}

// What the scheduler asks before it evicts anything for a start: would
// exec work at all?
TEST(CheckExecFormatTest, KnowsWhatExecWouldRefuse) {
  std::string dir = testing::TempDir();
  auto write = [&](const std::string& name, const std::string& text) {
    std::string path = dir + "/" + name;
    FILE* f = fopen(path.c_str(), "w");
    fwrite(text.data(), 1, text.size(), f);
    fclose(f);
    chmod(path.c_str(), 0755);
    return path;
  };
  EXPECT_TRUE(CheckExecFormat("/bin/true").ok());
  EXPECT_TRUE(CheckExecFormat(write("ok.sh", "#!/bin/sh\necho hi\n")).ok());
  EXPECT_TRUE(
      CheckExecFormat(write("env.sh", "#! /usr/bin/env sh\necho hi\n")).ok());
  std::string bad = write("bad.sh", "#!/nonexistent/interp -x\n");
  EXPECT_THAT(CheckExecFormat(bad).message(),
              HasSubstr(bad + ": its interpreter /nonexistent/interp: No such "
                              "file or directory"));
  EXPECT_THAT(CheckExecFormat(write("dir.sh", "#!/tmp\n")).message(),
              HasSubstr("its interpreter /tmp is not an executable file"));
  std::string nested = write("nested.sh", "#!" + bad + "\n");
  EXPECT_THAT(CheckExecFormat(nested).message(),
              HasSubstr("its interpreter /nonexistent/interp"));
  EXPECT_THAT(
      CheckExecFormat(write("garbage", "\x01\x02 not a program")).message(),
      HasSubstr("neither an ELF executable nor a #! script"));
  // An ELF header for another machine (32-bit ARM).
  std::string arm(
      "\x7f"
      "ELF\x01\x01\x01",
      7);
  arm.resize(52, '\0');
  arm[18] = 40;  // e_machine EM_ARM.
  EXPECT_THAT(CheckExecFormat(write("arm.elf", arm)).message(),
              HasSubstr("an ELF file for another machine"));
  // Saved with Windows line endings: the kernel looks for "/bin/sh\r".
  EXPECT_THAT(
      CheckExecFormat(write("crlf.sh", "#!/bin/sh\r\nexit 0\r\n")).message(),
      HasSubstr("its #! line ends in CR (Windows line endings)"));
  EXPECT_TRUE(
      CheckExecFormat(write("tab.sh", "#!\t/bin/sh -e\nexit 0\n")).ok());
  // And through the PATH lookup, as the scheduler calls it.
  EXPECT_THAT(CheckExecutable(actor::SpawnSpec{{bad}}).message(),
              HasSubstr("its interpreter /nonexistent/interp"));
  // `env VAR=value command`: the command too, with env's PATH.
  EXPECT_THAT(
      CheckExecutable(actor::SpawnSpec{{"env", "A=1", "/nonexistent/llama"}})
          .message(),
      HasSubstr("env runs /nonexistent/llama"));
  EXPECT_THAT(CheckExecutable(actor::SpawnSpec{{"env", "PATH=/nonexistent",
                                                "A=1", "sh", "-c", "true"}})
                  .message(),
              HasSubstr("env runs sh"));
  EXPECT_TRUE(CheckExecutable(actor::SpawnSpec{{"env", "A=1", "sh"}}).ok());
  // env's options: -i (no PATH: /bin:/usr/bin), --, -u NAME, -S, chains.
  for (std::vector<std::string> argv : std::vector<std::vector<std::string>>{
           {"env", "-i", "FOO=1", "missing_cmd"},
           {"env", "--", "FOO=1", "missing_cmd"},
           {"env", "-u", "HOME", "missing_cmd"},
           {"env", "-uHOME", "missing_cmd"},
           {"env", "-S", "missing_cmd -x"},
           {"env", "--split-string=FOO=1 missing_cmd"},
           {"env", "A=1", "env", "B=2", "missing_cmd"}}) {
    EXPECT_THAT(CheckExecutable(actor::SpawnSpec{argv}).message(),
                HasSubstr("env runs missing_cmd"))
        << argv[1];
  }
  EXPECT_TRUE(CheckExecutable(actor::SpawnSpec{{"env", "-i", "sh"}}).ok());
  EXPECT_TRUE(
      CheckExecutable(actor::SpawnSpec{{"env", "-S", "sh -c true"}}).ok());
  // An option env's check does not follow: nothing claimed.
  EXPECT_TRUE(
      CheckExecutable(actor::SpawnSpec{{"env", "-C", "/", "nonexistent"}})
          .ok());
  // #!/usr/bin/env: the rest of the line is one argument to env.
  EXPECT_TRUE(
      CheckExecFormat(write("env-ok", "#!/usr/bin/env sh\nexit 0\n")).ok());
  EXPECT_THAT(
      CheckExecFormat(write("env-crlf", "#!/usr/bin/env sh\r\nexit 0\r\n"))
          .message(),
      HasSubstr("its #! line ends in CR (Windows line endings)"));
  EXPECT_THAT(
      CheckExecFormat(write("env-missing", "#!/usr/bin/env nonexistent9\n"))
          .message(),
      HasSubstr("env runs nonexistent9"));
  EXPECT_THAT(
      CheckExecFormat(write("env-two", "#!/usr/bin/env sh -e\nexit 0\n"))
          .message(),
      HasSubstr("env runs sh -e"));
  EXPECT_TRUE(
      CheckExecFormat(write("env-S", "#!/usr/bin/env -S sh -e\nexit 0\n"))
          .ok());
}

TEST(ResolveExecutableTest, SearchesPathInOrder) {
  EXPECT_EQ(*ResolveExecutable("sh", "/nonexistent:/bin:/usr/bin"), "/bin/sh");
  EXPECT_EQ(ResolveExecutable("", "/bin").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MergeEnvironmentTest, OverridesReplaceAndLastWins) {
  setenv("MODELPLANE_MERGE", "a", 1);
  std::vector<std::string> env =
      MergeEnvironment({"MODELPLANE_MERGE=b", "NEW=1", "NEW=2"});
  int merge = 0, fresh = 0;
  for (const std::string& e : env) {
    if (e.rfind("MODELPLANE_MERGE=", 0) == 0) {
      ++merge;
      EXPECT_EQ(e, "MODELPLANE_MERGE=b");
    }
    if (e.rfind("NEW=", 0) == 0) {
      ++fresh;
      EXPECT_EQ(e, "NEW=2");
    }
  }
  EXPECT_EQ(merge, 1);
  EXPECT_EQ(fresh, 1);
}

}  // namespace
}  // namespace modelplane::runtime
