#include "proxy/router/usage_scanner.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"

namespace modelplane::proxy::router {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// The bytes from `begin` to `end` end with the literal `suffix`: a
// compare of a known size, which the compiler makes a load or two (a byte
// loop costs more than the rest of a scan).
template <size_t N>
bool EndsWith(const char* begin, const char* end, const char (&suffix)[N]) {
  constexpr size_t n = N - 1;
  return static_cast<size_t>(end - begin) >= n &&
         memcmp(end - n, suffix, n) == 0;
}

// The bytes from `at` to `end` begin with the literal `prefix`.
template <size_t N>
bool StartsWith(const char* at, const char* end, const char (&prefix)[N]) {
  constexpr size_t n = N - 1;
  return static_cast<size_t>(end - at) >= n && memcmp(at, prefix, n) == 0;
}

// A plain decimal ("805964.1345960104": digits, an optional fraction, no
// sign or exponent) whose digits make an integer below 2^53 and whose
// fraction has at most 22 digits: that integer and that power of ten are
// exact doubles, so one division rounds correctly (Clinger's fast path),
// as SimpleAtod would, at a fraction of its cost (llama-server sends two
// such speeds in every answer). False for anything else.
bool FastDecimal(const char* p, const char* end, double* out) {
  static constexpr double kPow10[] = {
      1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
      1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  uint64_t mantissa = 0;
  int digits = 0;
  int fraction = -1;  // Digits after the point; -1 before it.
  for (; p < end; ++p) {
    if (*p >= '0' && *p <= '9') {
      if (++digits > 16) return false;  // 10^16 > 2^53: maybe inexact.
      mantissa = mantissa * 10 + static_cast<uint64_t>(*p - '0');
      if (fraction >= 0) ++fraction;
    } else if (*p == '.' && fraction < 0 && digits > 0) {
      fraction = 0;
    } else {
      return false;
    }
  }
  if (digits == 0 || fraction == 0 || mantissa >= (uint64_t{1} << 53)) {
    return false;
  }
  *out = static_cast<double>(mantissa) / kPow10[fraction < 0 ? 0 : fraction];
  return true;
}

}  // namespace

void UsageScanner::Feed(absl::string_view data) {
  if (data.empty()) return;
  // Matches that cross from the last read into this one: the kept tail and
  // this read's first bytes. Values are assigned, not added, so a match
  // seen again below (or again later, from the tail) is harmless, and one
  // cut short here (its number runs to the buffer's end) is skipped and
  // seen whole in a later scan.
  if (tail_size_ > 0) {
    char joint[2 * kKeep];
    size_t head = std::min(data.size(), kKeep);
    memcpy(joint, tail_, tail_size_);
    memcpy(joint + tail_size_, data.data(), head);
    Scan(absl::string_view(joint, tail_size_ + head));
  }
  Scan(data);
  // The stream's last kKeep bytes.
  if (data.size() >= kKeep) {
    memcpy(tail_, data.data() + data.size() - kKeep, kKeep);
    tail_size_ = kKeep;
  } else {
    size_t old = std::min(tail_size_, kKeep - data.size());
    memmove(tail_, tail_ + tail_size_ - old, old);
    memcpy(tail_ + old, data.data(), data.size());
    tail_size_ = old + data.size();
  }
}

void UsageScanner::Scan(absl::string_view buf) {
  const char* p = buf.data();
  const char* end = p + buf.size();
  while (p < end) {
    const void* found = memchr(p, '_', static_cast<size_t>(end - p));
    if (found == nullptr) return;
    const char* at = static_cast<const char*>(found);
    p = at + 1;
    const char* begin = buf.data();
    std::optional<uint64_t>* slot = nullptr;
    std::optional<double>* speed = nullptr;
    const char* q;
    // By the byte after the '_' first: most underscores in an answer
    // ("finish_reason", "prompt_ms", "system_fingerprint") are in no key
    // looked for, and are passed over here.
    switch (end - at >= 2 ? at[1] : '\0') {
      case 't':
        if (!StartsWith(at, end, "_tokens\"")) continue;
        // The key's first part, from its opening quote: "prompt_tokens"
        // but not "cache_creation_input_tokens".
        if (EndsWith(begin, at, "\"prompt") || EndsWith(begin, at, "\"input")) {
          slot = &prompt_;
        } else if (EndsWith(begin, at, "\"completion") ||
                   EndsWith(begin, at, "\"output")) {
          slot = &completion_;
        } else if (EndsWith(begin, at, "\"cached")) {
          slot = &cached_;  // usage.prompt_tokens_details.cached_tokens
        } else {
          continue;
        }
        q = at + 8;
        break;
      case 'e':
        // llama-server's own /completion: "tokens_evaluated" (the prompt)
        // and "tokens_predicted".
        if (!StartsWith(at, end, "_evaluated\"") ||
            !EndsWith(begin, at, "\"tokens")) {
          continue;
        }
        slot = &prompt_;
        q = at + 11;
        break;
      case 'p':
        if (StartsWith(at, end, "_predicted\"") &&
            EndsWith(begin, at, "\"tokens")) {
          slot = &completion_;
          q = at + 11;
        } else if (StartsWith(at, end, "_per_second\"") &&
                   (EndsWith(begin, at, "\"prompt") ||
                    EndsWith(begin, at, "\"predicted"))) {
          speed = EndsWith(begin, at, "\"prompt") ? &prompt_per_second_
                                                  : &predicted_per_second_;
          q = at + 12;
        } else {
          continue;
        }
        break;
      case 'n':
        if (EndsWith(begin, at, "\"cache") && StartsWith(at, end, "_n\"")) {
          slot = &cached_;  // llama.cpp's timings.cache_n
          q = at + 3;
        } else if (EndsWith(begin, at, "\"draft") &&
                   StartsWith(at, end, "_n\"")) {
          slot = &draft_;
          q = at + 3;
        } else if (EndsWith(begin, at, "\"draft") &&
                   StartsWith(at, end, "_n_accepted\"")) {
          slot = &draft_accepted_;
          q = at + 12;
        } else {
          continue;
        }
        break;
      default:
        continue;
    }
    // At most kMaxSpaces on each side of the ':' (JSON allows more; no
    // server sends them), so that a match always fits in the bytes kept
    // across reads and the answer does not depend on how it was split.
    const char* limit = q + std::min<ptrdiff_t>(kMaxSpaces, end - q);
    while (q < limit && IsSpace(*q)) ++q;
    if (q == end || *q != ':') continue;
    ++q;
    limit = q + std::min<ptrdiff_t>(kMaxSpaces, end - q);
    while (q < limit && IsSpace(*q)) ++q;
    const char* digits = q;
    if (speed != nullptr) {
      // A JSON number; one cut short by the buffer's end is seen whole in
      // a later scan.
      while (q < end && q - digits <= kMaxNumber &&
             ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E' ||
              *q == '+' || *q == '-')) {
        ++q;
      }
      double v = 0;
      if (q == digits || q == end || q - digits > kMaxNumber ||
          !(FastDecimal(digits, q, &v) ||
            absl::SimpleAtod(absl::string_view(digits, q - digits), &v))) {
        continue;
      }
      *speed = v;
      p = q;
      continue;
    }
    uint64_t value = 0;
    while (q < end && q - digits < 19 && *q >= '0' && *q <= '9') {
      value = value * 10 + static_cast<uint64_t>(*q - '0');
      ++q;
    }
    // No number (null, say), one cut short by the buffer's end, or one too
    // long to be a count.
    if (q == digits || q == end || (*q >= '0' && *q <= '9')) continue;
    *slot = value;
    p = q;
  }
}

}  // namespace modelplane::proxy::router
