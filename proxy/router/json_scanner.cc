#include "proxy/router/json_scanner.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "proxy/router/key_fold.h"

namespace modelplane::proxy::router {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The first byte from `p` that is '"', '\\' or a control character (below
// 0x20), or `end`. Eight bytes at a time: the text of a long prompt is most
// of a chat request's body, and a byte-by-byte loop took 4-5 instructions a
// byte. Each test below flags a byte's high bit when it matches; a borrow
// can flag bytes after a real match but never one before it, so the lowest
// flag is the first match.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the lowest flag is the first byte only on little-endian");

const char* FindStringStop(const char* p, const char* end) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  while (end - p >= 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    uint64_t quote = x ^ (kOnes * '"');
    uint64_t slash = x ^ (kOnes * '\\');
    uint64_t hits = ((quote - kOnes) & ~quote) | ((slash - kOnes) & ~slash) |
                    ((x - kOnes * 0x20) & ~x);
    hits &= kHigh;
    if (hits != 0) return p + (__builtin_ctzll(hits) >> 3);
    p += 8;
  }
  while (p < end && *p != '"' && *p != '\\' &&
         static_cast<unsigned char>(*p) >= 0x20) {
    ++p;
  }
  return p;
}

// One byte more of a key's hash: FNV-1a over its bytes, ASCII letters
// folded to lower case.
uint64_t FoldHash(uint64_t hash, unsigned char c) {
  if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c + 32);
  return (hash ^ c) * 0x100000001b3ULL;
}

void AppendUtf8(std::string* out, uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace

void JsonScanner::Feed(absl::string_view data) {
  const char* p = data.data();
  const char* end = p + data.size();
  while (p < end) {
    if (done()) return;
    // Runs that cannot change the state are skipped without it: the text
    // of a string that is not the model name, and the inside of a nested
    // value (a long prompt in "messages" is both), byte by byte through
    // the state machine cost 4 ns a byte.
    const char* q = p;
    if (state_ == State::kInString && !escape_ && unicode_left_ == 0 &&
        high_surrogate_ == 0) {
      // The model name itself is copied in runs, never past its limit (the
      // byte over it goes through Step, which reports it).
      const char* stop = end;
      if (target_ == Target::kModel) {
        // value_ never exceeds the limit here: Step fails past it.
        stop = p + std::min<size_t>(
                       end - p, kMaxModelBytes -
                                    std::min(kMaxModelBytes, value_.size()));
      }
      q = FindStringStop(p, stop);
      if (target_ == Target::kModel) value_.append(p, q - p);
    } else if (state_ == State::kInKey && !escape_ && unicode_left_ == 0 &&
               high_surrogate_ == 0) {
      q = FindStringStop(p, end);  // A control character goes through Step.
      StringBytes(p, static_cast<size_t>(q - p));
    } else if (state_ == State::kInLiteral) {
      while (q < end && !IsSpace(*q) && *q != ',' && *q != '}' && *q != ']') {
        ++q;
      }
      size_t n = static_cast<size_t>(q - p);
      value_.append(p, std::min(n, 8 - std::min<size_t>(8, value_.size())));
    } else if (state_ == State::kInNested) {
      // A nested value (the messages of a chat, most of its body) is
      // walked here to its end, its strings in runs: Step, which does the
      // same a byte at a time, is left the byte that ends it or fails.
      q = SkipNested(p, end);
    }
    offset_ += static_cast<uint64_t>(q - p);
    p = q;
    if (p == end) return;
    Step(*p++);
    ++offset_;
  }
}

const char* JsonScanner::SkipNested(const char* p, const char* end) {
  while (p < end) {
    if (nested_in_string_) {
      // An escape is two bytes whatever they are (Step checks nothing
      // there); a string ends at its '"'.
      if (nested_escape_) {
        nested_escape_ = false;
        ++p;
        continue;
      }
      p = FindStringStop(p, end);
      if (p == end) return p;
      if (*p == '"') {
        nested_in_string_ = false;
      } else if (*p == '\\') {
        nested_escape_ = true;
      }
      ++p;  // A control character: Step would pass it over too.
      continue;
    }
    char c = *p;
    if (c == '"') {
      nested_in_string_ = true;
    } else if (c == '{' || c == '[') {
      if (depth_ == kMaxDepth) return p;  // Step reports it, at its byte.
      ++depth_;
    } else if (c == '}' || c == ']') {
      if (depth_ == 1) return p;  // Step ends the value.
      --depth_;
    }
    ++p;
  }
  return p;
}

void JsonScanner::FeedEachByte(absl::string_view data) {
  for (char c : data) {
    if (done()) return;
    Step(c);
    ++offset_;
  }
}

void JsonScanner::Finish() {
  if (done() && !error_) return;
  if (state_ == State::kInLiteral) Step(' ');  // A literal ends at the end.
  if (!error_ && state_ != State::kAfterObject)
    Fail("the JSON body ends early");
}

void JsonScanner::Fail(absl::string_view what) {
  if (error_) return;
  error_ = true;
  error_message_ = absl::StrCat("invalid JSON at byte ", offset_, ": ", what);
}

void JsonScanner::StringBytes(const char* p, size_t n) {
  if (state_ == State::kInKey) {
    // Folded as Go's encoding/json matches a key to a field (key_fold.h:
    // any letter case, and the Kelvin sign and the long s), where the last
    // one wins: an upstream reading "Model" must not be routed by "model".
    size_t i = 0;
    if (fold_need_ == 0) {
      // The ASCII run (a key is nearly always all of it) hashed in a local:
      // the member, written through `this`, might alias the bytes read.
      uint64_t hash = key_hash_;
      for (; i < n && static_cast<unsigned char>(p[i]) < 0x80; ++i) {
        hash = FoldHash(hash, static_cast<unsigned char>(p[i]));
      }
      key_hash_ = hash;
    }
    for (; i < n; ++i) {
      unsigned char c = static_cast<unsigned char>(p[i]);
      if (fold_need_ == 0 && c < 0x80) {
        HashKeyByte(c);
        continue;
      }
      if (fold_need_ == 0) {
        fold_need_ = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      }
      fold_pending_[fold_have_++] = static_cast<char>(c);
      if (fold_have_ == fold_need_) FlushFold();
    }
    key_.append(
        p, std::min(n, kMaxKeyBytes - std::min(kMaxKeyBytes, key_.size())));
    key_bytes_ += n;
    return;
  }
  if (target_ != Target::kModel) return;
  value_.append(p, n);
  if (value_.size() > kMaxModelBytes) Fail("the model name is too long");
}

void JsonScanner::HashKeyByte(unsigned char c) {
  key_hash_ = FoldHash(key_hash_, c);
}

void JsonScanner::WriteFold() {
  absl::string_view ch(fold_pending_, fold_have_);
  if (ch == kKelvinSign) {
    HashKeyByte('k');
  } else if (ch == kLongS) {
    HashKeyByte('s');
  } else {
    for (char c : ch) HashKeyByte(static_cast<unsigned char>(c));
  }
  fold_have_ = fold_need_ = 0;
}

void JsonScanner::CodeUnit(uint32_t unit) {
  if (unit >= 0xDC00 && unit <= 0xDFFF && high_surrogate_ != 0) {
    uint32_t cp =
        0x10000 + ((high_surrogate_ - 0xD800) << 10) + (unit - 0xDC00);
    high_surrogate_ = 0;
    char out[4] = {static_cast<char>(0xF0 | (cp >> 18)),
                   static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
                   static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
                   static_cast<char>(0x80 | (cp & 0x3F))};
    StringBytes(out, 4);
    return;
  }
  FlushSurrogate();
  if (unit >= 0xD800 && unit <= 0xDBFF) {
    high_surrogate_ = unit;  // Its low half may follow.
    return;
  }
  std::string out;
  AppendUtf8(&out, unit);
  StringBytes(out.data(), out.size());
}

void JsonScanner::WriteSurrogate() {
  std::string out;
  AppendUtf8(&out, high_surrogate_);
  high_surrogate_ = 0;
  StringBytes(out.data(), out.size());
}

bool JsonScanner::InsertKey(uint64_t hash) {
  if (key_count_ < kInlineKeys) {
    for (size_t i = 0; i < key_count_; ++i) {
      if (inline_keys_[i] == hash) return false;
    }
    inline_keys_[key_count_++] = hash;
    return true;
  }
  if (keys_.empty()) keys_.insert(inline_keys_, inline_keys_ + kInlineKeys);
  if (!keys_.insert(hash).second) return false;
  ++key_count_;
  return true;
}

void JsonScanner::EndKey() {
  FlushSurrogate();
  FlushFold();  // A character the key ended inside of: as it is.
  if (error_) return;
  if (!InsertKey(key_hash_)) {
    error_ = true;
    error_message_ = absl::StrCat(
        "the JSON body has the key \"", key_,
        key_bytes_ > key_.size() ? "..." : "", "\" twice (again at byte ",
        key_offset_,
        ", letter case aside): refused, since the model would read the last "
        "one");
    return;
  }
  if (key_count_ > kMaxKeys) {
    Fail(absl::StrCat("more than ", kMaxKeys, " top-level keys"));
    return;
  }
  absl::string_view key = key_;
  target_ = key_bytes_ != key.size() ? Target::kNone
            : key == "model"         ? Target::kModel
            : key == "stream"        ? Target::kStream
                                     : Target::kNone;
  state_ = State::kAfterKey;
}

void JsonScanner::EndValue() {
  if (target_ == Target::kStream && state_ == State::kInLiteral) {
    if (value_ == "true") stream_ = true;
    if (value_ == "false") stream_ = false;
  }
  target_ = Target::kNone;
  state_ = State::kAfterValue;
}

// A byte of a key or a value string (Feed passes the plain runs of them
// in bulk): escapes, the closing quote and what is not allowed.
void JsonScanner::StringStep(char c) {
  if (unicode_left_ > 0) {
    int h = HexValue(c);
    if (h < 0) return Fail("bad \\u escape");
    unicode_ = unicode_ * 16 + static_cast<uint32_t>(h);
    if (--unicode_left_ == 0) CodeUnit(unicode_);
    return;
  }
  if (escape_) {
    escape_ = false;
    char out;
    switch (c) {
      case '"':
        out = '"';
        break;
      case '\\':
        out = '\\';
        break;
      case '/':
        out = '/';
        break;
      case 'b':
        out = '\b';
        break;
      case 'f':
        out = '\f';
        break;
      case 'n':
        out = '\n';
        break;
      case 'r':
        out = '\r';
        break;
      case 't':
        out = '\t';
        break;
      case 'u':
        unicode_left_ = 4;
        unicode_ = 0;
        return;
      default:
        return Fail("bad escape in a string");
    }
    FlushSurrogate();
    StringBytes(&out, 1);
    return;
  }
  if (c == '\\') {
    escape_ = true;
    return;
  }
  if (c == '"') {
    if (state_ == State::kInKey) return EndKey();
    FlushSurrogate();
    if (error_) return;
    if (target_ == Target::kModel) model_ = value_;
    EndValue();
    return;
  }
  if (static_cast<unsigned char>(c) < 0x20) {
    return Fail("control character in a string");
  }
  FlushSurrogate();
  StringBytes(&c, 1);
}

void JsonScanner::Step(char c) {
  switch (state_) {
    case State::kBeforeObject:
      if (IsSpace(c)) return;
      if (c != '{') return Fail("the body must be a JSON object");
      state_ = State::kBeforeKey;
      after_comma_ = false;
      return;
    case State::kBeforeKey:
      if (IsSpace(c)) return;
      if (c == '"') {
        key_.clear();
        key_bytes_ = 0;
        key_hash_ = 0xcbf29ce484222325ULL;
        key_offset_ = offset_;
        after_comma_ = false;
        state_ = State::kInKey;
        return;
      }
      if (c == '}' && !after_comma_) {
        closed_ = true;
        state_ = State::kAfterObject;
        return;
      }
      return Fail("expected a key");
    case State::kInKey:
    case State::kInString:
      return StringStep(c);
    case State::kAfterKey:
      if (IsSpace(c)) return;
      if (c != ':') return Fail("expected ':'");
      state_ = State::kBeforeValue;
      return;
    case State::kBeforeValue:
      if (IsSpace(c)) return;
      value_.clear();
      if (c == '"') {
        state_ = State::kInString;
      } else if (c == '{' || c == '[') {
        depth_ = 1;
        nested_in_string_ = false;
        state_ = State::kInNested;
      } else if (c == 't' || c == 'f' || c == 'n' || c == '-' ||
                 (c >= '0' && c <= '9') || c == 'N' || c == 'I') {
        // NaN and Infinity too: Python's parser takes them, and a value
        // this scanner stopped at would hide the keys after it.
        value_.push_back(c);
        state_ = State::kInLiteral;
      } else {
        Fail("expected a value");
      }
      return;
    case State::kInLiteral:
      if (IsSpace(c) || c == ',' || c == '}' || c == ']') {
        EndValue();
        Step(c);  // The delimiter belongs to what follows the value.
        return;
      }
      if (value_.size() < 8) value_.push_back(c);
      return;
    case State::kInNested:
      if (nested_in_string_) {
        if (nested_escape_) {
          nested_escape_ = false;
        } else if (c == '\\') {
          nested_escape_ = true;
        } else if (c == '"') {
          nested_in_string_ = false;
        }
        return;
      }
      if (c == '"') {
        nested_in_string_ = true;
      } else if (c == '{' || c == '[') {
        if (++depth_ > kMaxDepth) Fail("nested too deeply");
      } else if (c == '}' || c == ']') {
        if (--depth_ == 0) EndValue();
      }
      return;
    case State::kAfterValue:
      if (IsSpace(c)) return;
      if (c == ',') {
        after_comma_ = true;
        state_ = State::kBeforeKey;
        return;
      }
      if (c == '}') {
        closed_ = true;
        state_ = State::kAfterObject;
        return;
      }
      return Fail("expected ',' or '}'");
    case State::kAfterObject:
      if (!IsSpace(c)) Fail("data after the JSON object");
      return;
  }
}

}  // namespace modelplane::proxy::router
