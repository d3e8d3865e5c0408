// Splits a model's `cmd` into argv the way llama-swap does, with no shell:
//
//   * lines whose first non-blank character is `#` are dropped;
//   * a `\` at the end of a line joins it to the next;
//   * then POSIX shell word splitting: blanks separate words, '...' is
//     literal, "..." allows \" \\ \$ \` escapes, \x outside quotes is x,
//     and `#` at the start of a word comments out the rest of its line.
//
// No expansion of any kind happens here ($VAR, globs, ~): macros are
// expanded before splitting, by the loader.
//
//   SplitCommand("llama-server -m 'my model.gguf' \\\n  --port 8080")
//     -> {"llama-server", "-m", "my model.gguf", "--port", "8080"}
#ifndef MODELPLANE_SERVER_CORE_CONFIG_SHELL_SPLIT_H_
#define MODELPLANE_SERVER_CORE_CONFIG_SHELL_SPLIT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modelplane::config {

// Returns the words, or InvalidArgument naming an unterminated quote or a
// trailing backslash. An empty or all-comment command gives no words (the
// caller decides whether that is an error).
absl::StatusOr<std::vector<std::string>> SplitCommand(absl::string_view text);

// The command text with comment lines removed and continuations joined:
// the first two steps above, exposed for printing and tests.
std::string SanitizeCommand(absl::string_view text);

}  // namespace modelplane::config

#endif  // MODELPLANE_SERVER_CORE_CONFIG_SHELL_SPLIT_H_
