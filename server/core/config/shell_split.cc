#include "server/core/config/shell_split.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace modelplane::config {
namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

std::string SanitizeCommand(absl::string_view text) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), "#")) {
      continue;
    }
    absl::string_view trimmed = absl::StripTrailingAsciiWhitespace(line);
    if (absl::EndsWith(trimmed, "\\") && !absl::EndsWith(trimmed, "\\\\")) {
      out.append(trimmed.data(), trimmed.size() - 1);
      out.push_back(' ');
    } else {
      out.append(line.data(), line.size());
      out.push_back('\n');
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> SplitCommand(absl::string_view text) {
  std::string s = SanitizeCommand(text);
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  size_t i = 0;
  auto finish = [&] {
    if (in_word) words.push_back(std::move(word));
    word.clear();
    in_word = false;
  };
  while (i < s.size()) {
    char c = s[i];
    if (IsBlank(c)) {
      finish();
      ++i;
    } else if (c == '#' && !in_word) {
      while (i < s.size() && s[i] != '\n') ++i;  // Comment to end of line.
    } else if (c == '\'') {
      size_t end = s.find('\'', i + 1);
      if (end == std::string::npos) {
        return absl::InvalidArgumentError("unterminated single quote");
      }
      word.append(s, i + 1, end - i - 1);
      in_word = true;
      i = end + 1;
    } else if (c == '"') {
      in_word = true;
      ++i;
      while (true) {
        if (i >= s.size()) {
          return absl::InvalidArgumentError("unterminated double quote");
        }
        char d = s[i];
        if (d == '"') break;
        if (d == '\\' && i + 1 < s.size() &&
            absl::string_view("\"\\$`\n").find(s[i + 1]) !=
                absl::string_view::npos) {
          if (s[i + 1] != '\n') word.push_back(s[i + 1]);
          i += 2;
          continue;
        }
        word.push_back(d);
        ++i;
      }
      ++i;
    } else if (c == '\\') {
      if (i + 1 >= s.size() || (i + 2 == s.size() && s[i + 1] == '\n')) {
        return absl::InvalidArgumentError("trailing backslash");
      }
      if (s[i + 1] != '\n') {
        word.push_back(s[i + 1]);
        in_word = true;
      }
      i += 2;
    } else {
      word.push_back(c);
      in_word = true;
      ++i;
    }
  }
  finish();
  return words;
}

}  // namespace modelplane::config
