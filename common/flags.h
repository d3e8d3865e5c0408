// Command-line flags for modelplane's binaries, GNU style: `--name value`,
// `--name=value`, switches without a value, and `_` accepted for `-` in
// names (so `--ready_after_ms` works too). Go's forms, which llama-swap's
// users type, work too: one dash (`-config x`, `-watch-config`) and a
// switch's `=true` / `=false`. Abseil's flag library does not
// take dashes in names, and the binaries' flags (`--print-config`,
// `--ready-after-ms`) follow llama-swap's and the usual CLI spelling.
//
//   FlagParser flags("fake_upstream [flags]");
//   int port = 0;
//   flags.Int("port", &port, "listen port; 0 picks a free one");
//   absl::StatusOr<std::vector<std::string>> args = flags.Parse(argc, argv);
//   if (!args.ok()) { std::cerr << args.status().message() << flags.Usage(); }
#ifndef MODELPLANE_COMMON_FLAGS_H_
#define MODELPLANE_COMMON_FLAGS_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modelplane {

class FlagParser {
 public:
  explicit FlagParser(std::string synopsis) : synopsis_(std::move(synopsis)) {}

  // Each registers `--name`; `out` keeps its value when the flag is absent.
  void String(std::string name, std::string* out, std::string help);
  // A flag given any number of times: each adds its value to `out` (the
  // first one given replaces what `out` held: its default).
  void StringList(std::string name, std::vector<std::string>* out,
                  std::string help);
  // `min` bounds the value from below (inclusive).
  void Int(std::string name, int* out, std::string help, int min = INT32_MIN);
  void Double(std::string name, double* out, std::string help,
              double min = -1e308);
  // A switch: present means true.
  void Bool(std::string name, bool* out, std::string help);

  // Parses argv[1..]. Returns the positional arguments, or InvalidArgument
  // naming the flag at fault. `--help` gives NotFound (print Usage, exit 0).
  absl::StatusOr<std::vector<std::string>> Parse(int argc,
                                                 const char* const* argv);

  std::string Usage() const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    bool is_switch = false;
    std::string value_name;
    std::function<bool(absl::string_view)> set;
  };
  const Flag* Find(const std::string& name) const;

  std::string synopsis_;
  std::vector<Flag> flags_;
};

}  // namespace modelplane

#endif  // MODELPLANE_COMMON_FLAGS_H_
