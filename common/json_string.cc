#include "common/json_string.h"

#include <cstdint>

namespace modelplane {
namespace {

// The length of the well-formed UTF-8 sequence at s[i] (RFC 3629), or 0.
size_t Utf8Length(absl::string_view s, size_t i) {
  auto at = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  auto cont = [&](size_t k) {
    return i + k < s.size() && (at(k) & 0xC0) == 0x80;
  };
  uint8_t b = at(0);
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return cont(1) ? 2 : 0;
  if (b >= 0xE0 && b <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (b == 0xE0 && at(1) < 0xA0) return 0;  // Overlong.
    if (b == 0xED && at(1) > 0x9F) return 0;  // A surrogate.
    return 3;
  }
  if (b >= 0xF0 && b <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (b == 0xF0 && at(1) < 0x90) return 0;  // Overlong.
    if (b == 0xF4 && at(1) > 0x8F) return 0;  // Past U+10FFFF.
    return 4;
  }
  return 0;
}

}  // namespace

void AppendJsonEscaped(absl::string_view s, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  out->reserve(out->size() + s.size() + 2);
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
      ++i;
    } else if (c == '\n') {
      out->append("\\n");
      ++i;
    } else if (c == '\r') {
      out->append("\\r");
      ++i;
    } else if (c == '\t') {
      out->append("\\t");
      ++i;
    } else if (c < 0x20 || c == 0x7F) {
      out->append("\\u00");
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 0xF]);
      ++i;
    } else {
      size_t n = Utf8Length(s, i);
      if (n == 0) {
        out->append("\\ufffd");  // Not UTF-8: one replacement per byte.
        ++i;
      } else {
        out->append(s.data() + i, n);
        i += n;
      }
    }
  }
}

}  // namespace modelplane
