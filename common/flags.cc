#include "common/flags.h"

#include <climits>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace modelplane {

void FlagParser::String(std::string name, std::string* out, std::string help) {
  flags_.push_back(Flag{std::move(name), std::move(help), false, "TEXT",
                        [out](absl::string_view v) {
                          *out = std::string(v);
                          return true;
                        }});
}

void FlagParser::StringList(std::string name, std::vector<std::string>* out,
                            std::string help) {
  auto given = std::make_shared<bool>(false);
  flags_.push_back(Flag{std::move(name), std::move(help), false, "TEXT",
                        [out, given](absl::string_view v) {
                          if (!*given) out->clear();
                          *given = true;
                          out->emplace_back(v);
                          return true;
                        }});
}

void FlagParser::Int(std::string name, int* out, std::string help, int min) {
  flags_.push_back(Flag{std::move(name), std::move(help), false, "N",
                        [out, min](absl::string_view v) {
                          int n;
                          if (!absl::SimpleAtoi(v, &n) || n < min) return false;
                          *out = n;
                          return true;
                        }});
}

void FlagParser::Double(std::string name, double* out, std::string help,
                        double min) {
  flags_.push_back(Flag{std::move(name), std::move(help), false, "X",
                        [out, min](absl::string_view v) {
                          double d;
                          if (!absl::SimpleAtod(v, &d) || d < min) return false;
                          *out = d;
                          return true;
                        }});
}

void FlagParser::Bool(std::string name, bool* out, std::string help) {
  flags_.push_back(Flag{std::move(name), std::move(help), true, "",
                        [out](absl::string_view v) {
                          *out = v != "false";
                          return true;
                        }});
}

const FlagParser::Flag* FlagParser::Find(const std::string& name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::StatusOr<std::vector<std::string>> FlagParser::Parse(
    int argc, const char* const* argv) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h" || arg == "-help") {
      return absl::NotFoundError("help");
    }
    if (arg == "--") {
      for (++i; i < argc; ++i) positional.emplace_back(argv[i]);
      break;
    }
    // Go's flag package (llama-swap's) takes a long name after one dash
    // too: `-config x`, `-watch-config`. A single dash then a letter is a
    // flag; "-" and "-1" stay arguments.
    bool single = arg.size() >= 2 && arg[0] == '-' && arg[1] != '-' &&
                  absl::ascii_isalpha(static_cast<unsigned char>(arg[1]));
    if (!single && (arg.size() < 3 || arg.substr(0, 2) != "--")) {
      positional.emplace_back(arg);
      continue;
    }
    arg.remove_prefix(single ? 1 : 2);
    size_t eq = arg.find('=');
    std::string name = absl::StrReplaceAll(arg.substr(0, eq), {{"_", "-"}});
    const Flag* flag = Find(name);
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    std::string value;
    if (flag->is_switch) {
      // `--switch=true` and `=false` (Go's form); any other value is an
      // error.
      if (eq != absl::string_view::npos) {
        absl::string_view v = arg.substr(eq + 1);
        // Go's strconv.ParseBool spellings.
        bool on = v == "true" || v == "1" || v == "t" || v == "T" ||
                  v == "TRUE" || v == "True";
        if (!on && v != "false" && v != "0" && v != "f" && v != "F" &&
            v != "FALSE" && v != "False") {
          return absl::InvalidArgumentError(
              absl::StrCat("flag --", name, " is a switch: true or false"));
        }
        if (!on) {
          flag->set("false");
          continue;
        }
      }
    } else if (eq != absl::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, " needs a value"));
    }
    if (!flag->set(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad value '", value, "' for --", name));
    }
  }
  return positional;
}

std::string FlagParser::Usage() const {
  std::string out = absl::StrCat("usage: ", synopsis_, "\n");
  for (const Flag& f : flags_) {
    std::string left = absl::StrCat("  --", f.name);
    if (!f.is_switch) absl::StrAppend(&left, " ", f.value_name);
    if (left.size() < 28) left.resize(28, ' ');
    absl::StrAppend(&out, left, " ", f.help, "\n");
  }
  return out;
}

}  // namespace modelplane
