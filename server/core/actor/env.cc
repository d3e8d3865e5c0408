#include "server/core/actor/env.h"

#include <signal.h>

#include "absl/strings/str_cat.h"

namespace modelplane::actor {
namespace {

const char* SignalName(int sig) {
  switch (sig) {
    case SIGHUP:
      return "SIGHUP";
    case SIGINT:
      return "SIGINT";
    case SIGQUIT:
      return "SIGQUIT";
    case SIGILL:
      return "SIGILL";
    case SIGABRT:
      return "SIGABRT";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGKILL:
      return "SIGKILL";
    case SIGSEGV:
      return "SIGSEGV";
    case SIGPIPE:
      return "SIGPIPE";
    case SIGTERM:
      return "SIGTERM";
    default:
      return nullptr;
  }
}

}  // namespace

std::string ExitStatus::ToString() const {
  if (signal > 0) {
    const char* name = SignalName(signal);
    return name ? absl::StrCat("killed by ", name)
                : absl::StrCat("killed by signal ", signal);
  }
  return absl::StrCat("exit code ", exit_code);
}

}  // namespace modelplane::actor
