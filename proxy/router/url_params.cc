#include "proxy/router/url_params.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace modelplane::proxy::router {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

// %XX decoded (a malformed escape is kept as written); with `plus`, '+' is
// a space (form encoding, as in a query).
std::string PercentDecode(absl::string_view s, bool plus) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexDigit(s[i + 1]) >= 0 &&
        HexDigit(s[i + 2]) >= 0) {
      out.push_back(
          static_cast<char>(HexDigit(s[i + 1]) * 16 + HexDigit(s[i + 2])));
      i += 2;
    } else {
      out.push_back(plus && s[i] == '+' ? ' ' : s[i]);
    }
  }
  return out;
}

// The query parameter `name`, decoded, or "".
std::string QueryParam(absl::string_view target, absl::string_view name) {
  size_t q = target.find('?');
  if (q == absl::string_view::npos) return "";
  for (absl::string_view kv : absl::StrSplit(target.substr(q + 1), '&')) {
    size_t eq = kv.find('=');
    if (eq != absl::string_view::npos &&
        PercentDecode(kv.substr(0, eq), true) == name) {
      return PercentDecode(kv.substr(eq + 1), true);
    }
  }
  return "";
}

int QueryParamCount(absl::string_view target, absl::string_view name) {
  size_t q = target.find('?');
  if (q == absl::string_view::npos) return 0;
  int n = 0;
  for (absl::string_view kv : absl::StrSplit(target.substr(q + 1), '&')) {
    if (PercentDecode(kv.substr(0, kv.find('=')), true) == name) ++n;
  }
  return n;
}

// Percent-encodes all but RFC 3986's unreserved characters.
std::string PercentEncode(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

// `pairs` (a query, or a urlencoded body: k=v&k=v) with the first `name`'s
// value made `value`; as it was when there is none.
std::string ReplaceParam(absl::string_view pairs, absl::string_view name,
                         absl::string_view value) {
  size_t start = 0;
  while (start <= pairs.size()) {
    size_t end = std::min(pairs.find('&', start), pairs.size());
    absl::string_view kv = pairs.substr(start, end - start);
    size_t eq = kv.find('=');
    if (eq != absl::string_view::npos &&
        PercentDecode(kv.substr(0, eq), true) == name) {
      return absl::StrCat(pairs.substr(0, start + eq + 1), PercentEncode(value),
                          pairs.substr(end));
    }
    start = end + 1;
  }
  return std::string(pairs);
}

}  // namespace modelplane::proxy::router
