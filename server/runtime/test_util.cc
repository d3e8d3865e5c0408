#include "server/runtime/test_util.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace modelplane::runtime {

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  return absl::StrCat(srcdir ? srcdir : ".", "/",
                      workspace ? workspace : "modelplane", "/", path);
}

::testing::AssertionResult WaitFor(const std::function<bool()>& condition,
                                   absl::Duration timeout,
                                   const std::string& what) {
  absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() > deadline) {
      return ::testing::AssertionFailure()
             << "timed out after " << timeout << " waiting for " << what;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  return ::testing::AssertionSuccess();
}

bool ProcessAlive(int pid) {
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat) return false;
  std::stringstream text;
  text << stat.rdbuf();
  std::string s = text.str();
  size_t paren = s.rfind(')');
  return paren != std::string::npos && paren + 2 < s.size() &&
         s[paren + 2] != 'Z';
}

void RecordingObserver::OnOutput(absl::string_view data) {
  absl::MutexLock lock(&mu_);
  output_.append(data.data(), data.size());
}

void RecordingObserver::OnExit(actor::ExitStatus status) {
  {
    absl::MutexLock lock(&mu_);
    exit_ = status;
  }
  if (on_exit) on_exit();
}

std::string RecordingObserver::output() const {
  absl::MutexLock lock(&mu_);
  return output_;
}

std::optional<actor::ExitStatus> RecordingObserver::exit() const {
  absl::MutexLock lock(&mu_);
  return exit_;
}

::testing::AssertionResult RecordingObserver::WaitForOutput(
    const std::string& needle, absl::Duration timeout) const {
  return WaitFor([&] { return output().find(needle) != std::string::npos; },
                 timeout, absl::StrCat("output \"", needle, "\""));
}

::testing::AssertionResult RecordingObserver::WaitForExit(
    absl::Duration timeout) const {
  return WaitFor([&] { return exit().has_value(); }, timeout, "process exit");
}

}  // namespace modelplane::runtime
