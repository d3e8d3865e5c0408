#include "proxy/http1/plain_head.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/match.h"

namespace modelplane::proxy::http1 {
namespace {

enum CharClass : uint8_t {
  kToken = 1,   // RFC 9110 tchar: header names.
  kValue = 2,   // Printable ASCII, space and tab: values, reason phrases.
  kTarget = 4,  // RFC 3986 characters: the request target.
};

constexpr std::array<uint8_t, 256> MakeClasses() {
  std::array<uint8_t, 256> t{};
  for (int c = 0x20; c < 0x7f; ++c) t[c] |= kValue;
  t['\t'] |= kValue;
  for (int c = '0'; c <= '9'; ++c) t[c] |= kToken | kTarget;
  for (int c = 'a'; c <= 'z'; ++c) t[c] |= kToken | kTarget;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] |= kToken | kTarget;
  for (char c : absl::string_view("!#$%&'*+-.^_`|~")) {
    t[static_cast<uint8_t>(c)] |= kToken;
  }
  for (char c : absl::string_view("-._~:/?#[]@!$&'()*+,;=%")) {
    t[static_cast<uint8_t>(c)] |= kTarget;
  }
  return t;
}

constexpr std::array<uint8_t, 256> kClasses = MakeClasses();

bool All(absl::string_view s, CharClass c) {
  for (char ch : s) {
    if ((kClasses[static_cast<uint8_t>(ch)] & c) == 0) return false;
  }
  return true;
}

bool Is(absl::string_view name, absl::string_view lower) {
  return EqualsNoCase(name, lower);
}

// All of `s` printable ASCII or tabs, eight bytes at a time: a word with no
// byte below 0x20, none at or above 0x7f, passes at once; one that has (a
// tab, say) is looked at byte by byte.
bool AllValue(absl::string_view s) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  const char* p = s.data();
  size_t n = s.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t del = x ^ (kOnes * 0x7f);
    uint64_t odd = ((x - kOnes * 0x20) & ~x) | x | ((del - kOnes) & ~del);
    if ((odd & kHigh) != 0 && !All(absl::string_view(p, 8), kValue)) {
      return false;
    }
  }
  return All(absl::string_view(p, n), kValue);
}

}  // namespace

bool IsFieldName(absl::string_view name) {
  return !name.empty() && All(name, kToken);
}

bool IsFieldValue(absl::string_view value) {
  for (char ch : value) {
    auto c = static_cast<uint8_t>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

namespace {

// The next line from `*at` (CRLF required, not included), or false. `*at`
// moves past the line.
bool NextLine(const char** at, const char* end, absl::string_view* line) {
  const char* p = *at;
  const void* nl = memchr(p, '\n', end - p);
  if (nl == nullptr) return false;
  const char* lf = static_cast<const char*>(nl);
  if (lf == p || lf[-1] != '\r') return false;  // Bare LF.
  *line = absl::string_view(p, lf - 1 - p);
  *at = lf + 1;
  return true;
}

// "HTTP/1.1" or "HTTP/1.0": the minor version, else -1.
int Version(absl::string_view v) {
  if (v.size() != 8 || v.substr(0, 7) != "HTTP/1.") return -1;
  if (v[7] == '1') return 1;
  if (v[7] == '0') return 0;
  return -1;
}

// The header lines after the first, up to the empty line. Fills `headers`,
// `content_length` and `keep_alive_token`; false declines.
struct Fields {
  Headers* headers = nullptr;
  std::optional<uint64_t> content_length;
  bool keep_alive_token = false;
  int hosts = 0;
};

bool ReadHeaders(const char** at, const char* end, Fields* f) {
  absl::string_view line;
  while (NextLine(at, end, &line)) {
    if (line.empty()) return true;  // The end of the head.
    // The CR after the line stops the scan (it is no token character).
    const char* q = line.data();
    while ((kClasses[static_cast<uint8_t>(*q)] & kToken) != 0) ++q;
    size_t colon = static_cast<size_t>(q - line.data());
    // A name then ':' (no space before it; a first space or tab would be
    // line folding).
    if (colon == 0 || colon == line.size() || line[colon] != ':') return false;
    absl::string_view name = line.substr(0, colon);
    absl::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value[0] == ' ' || value[0] == '\t')) {
      value.remove_prefix(1);
    }
    if (!value.empty() && (value.back() == ' ' || value.back() == '\t')) {
      return false;
    }
    if (!AllValue(value)) return false;
    switch (name.size()) {
      case 4:
        if (Is(name, "host")) {
          // One authority only; else http-parser's path refuses it.
          if (value.find_first_of(", \t") != absl::string_view::npos) {
            return false;
          }
          ++f->hosts;
        }
        break;
      case 7:
        if (Is(name, "upgrade")) return false;
        break;
      case 10:
        if (Is(name, "connection")) {
          if (!Is(value, "keep-alive")) return false;  // close, upgrade...
          f->keep_alive_token = true;
        }
        break;
      case 14:
        if (Is(name, "content-length")) {
          if (f->content_length.has_value() || value.empty() ||
              value.size() > 18 ||
              !std::all_of(value.begin(), value.end(),
                           [](char c) { return c >= '0' && c <= '9'; })) {
            return false;
          }
          uint64_t n = 0;
          for (char c : value) n = n * 10 + static_cast<uint64_t>(c - '0');
          f->content_length = n;
        }
        break;
      case 16:
        if (Is(name, "proxy-connection")) return false;
        break;
      case 17:
        if (Is(name, "transfer-encoding")) return false;
        break;
      default:
        break;
    }
    f->headers->emplace_back(std::piecewise_construct,
                             std::forward_as_tuple(name.data(), name.size()),
                             std::forward_as_tuple(value.data(), value.size()));
  }
  return false;  // Incomplete, or a bare LF.
}

struct Method {
  absl::string_view name;  // With the space after it.
};
constexpr Method kMethods[] = {{"GET "},  {"POST "},    {"PUT "},  {"DELETE "},
                               {"HEAD "}, {"OPTIONS "}, {"PATCH "}};

}  // namespace

size_t ReadPlainRequestHead(absl::string_view data, size_t max_head_bytes,
                            RequestHead* head) {
  const char* at = data.data();
  const char* end = at + std::min(data.size(), max_head_bytes);
  absl::string_view line;
  if (!NextLine(&at, end, &line)) return 0;
  absl::string_view method;
  for (const Method& m : kMethods) {
    if (absl::StartsWith(line, m.name)) {
      method = m.name.substr(0, m.name.size() - 1);
      break;
    }
  }
  if (method.empty()) return 0;
  absl::string_view rest = line.substr(method.size() + 1);
  size_t space = rest.find(' ');
  if (space == absl::string_view::npos) return 0;
  absl::string_view target = rest.substr(0, space);
  if (target.empty() || target[0] != '/' || !All(target, kTarget)) return 0;
  int minor = Version(rest.substr(space + 1));
  if (minor < 0) return 0;
  Fields f;
  f.headers = &head->headers;
  if (!ReadHeaders(&at, end, &f)) return 0;
  // No Host, or two: http-parser's path answers (400 for HTTP/1.1).
  if (f.hosts != 1) return 0;
  // Requests that end the connection are left to http-parser, which also
  // refuses what follows them.
  bool keep_alive = minor == 1 || f.keep_alive_token;
  if (!keep_alive) return 0;
  head->method.assign(method.data(), method.size());
  head->target.assign(target.data(), target.size());
  head->version_minor = minor;
  head->content_length = f.content_length;
  head->chunked = false;
  head->keep_alive = true;
  head->upgrade = false;
  const std::string* expect = FindHeader(head->headers, "expect");
  head->expect_continue =
      expect != nullptr && absl::EqualsIgnoreCase(*expect, "100-continue");
  return static_cast<size_t>(at - data.data());
}

size_t ReadPlainResponseHead(absl::string_view data, size_t max_head_bytes,
                             ResponseHead* head) {
  const char* at = data.data();
  const char* end = at + std::min(data.size(), max_head_bytes);
  absl::string_view line;
  if (!NextLine(&at, end, &line)) return 0;
  // "HTTP/1.x NNN reason"
  if (line.size() < 14 || line[8] != ' ' || line[12] != ' ') return 0;
  int minor = Version(line.substr(0, 8));
  if (minor < 0) return 0;
  int status = 0;
  for (char c : line.substr(9, 3)) {
    if (c < '0' || c > '9') return 0;
    status = status * 10 + (c - '0');
  }
  if (status < 200 || status > 599 || IsBodilessStatus(status)) return 0;
  absl::string_view reason = line.substr(13);
  if (reason.empty() || reason[0] == ' ' || reason[0] == '\t' ||
      reason.back() == ' ' || reason.back() == '\t' || !All(reason, kValue)) {
    return 0;
  }
  Fields f;
  f.headers = &head->headers;
  if (!ReadHeaders(&at, end, &f)) return 0;
  if (!f.content_length.has_value()) return 0;  // Chunked or until close.
  if (minor == 0 && !f.keep_alive_token) return 0;
  head->status = status;
  head->reason.assign(reason.data(), reason.size());
  head->content_length = f.content_length;
  head->chunked = false;
  head->keep_alive = true;
  return static_cast<size_t>(at - data.data());
}

}  // namespace modelplane::proxy::http1
