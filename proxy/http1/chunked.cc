#include "proxy/http1/chunked.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "proxy/http1/codec.h"

namespace modelplane::proxy::http1 {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A control character other than HTAB (RFC 9110 5.5: not in a field value,
// nor in a chunk extension).
bool IsControl(char c) {
  auto u = static_cast<unsigned char>(c);
  return (u < 0x20 && c != '\t') || u == 0x7f;
}

}  // namespace

size_t ChunkedDecoder::Fail(int status, const std::string& what, size_t used) {
  state_ = State::kFailed;
  error_status_ = status;
  error_ = absl::StrCat("malformed chunked body: ", what);
  return used;
}

size_t ChunkedDecoder::Feed(absl::string_view data,
                            absl::FunctionRef<void(absl::string_view)> body) {
  size_t i = 0;
  while (i < data.size() && state_ != State::kDone &&
         state_ != State::kFailed) {
    if (state_ == State::kData) {
      uint64_t n = std::min<uint64_t>(left_, data.size() - i);
      body(data.substr(i, n));
      i += n;
      left_ -= n;
      if (left_ == 0) state_ = State::kDataCr;
      continue;
    }
    char c = data[i++];
    switch (state_) {
      case State::kSizeStart:
      case State::kSize: {
        int d = HexDigit(c);
        if (d >= 0) {
          if (size_ > (UINT64_MAX >> 4)) {
            return Fail(400, "a chunk size of 2^64 or more", i);
          }
          size_ = size_ * 16 + static_cast<uint64_t>(d);
          state_ = State::kSize;
          break;
        }
        if (state_ == State::kSizeStart) {
          return Fail(400, "a chunk line must start with its size in hex", i);
        }
        if (c == ' ' || c == '\t') {
          state_ = State::kSizeSpace;
        } else if (c == ';') {
          state_ = State::kExtensionName;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == '\n') {
          return Fail(400, "a bare LF ends a chunk line (CRLF is required)", i);
        } else {
          return Fail(400, "an invalid character after a chunk size", i);
        }
        break;
      }
      case State::kSizeSpace:
        // Whitespace after a size only before an extension's ';' (RFC
        // 9112 7.1.1: BWS ";").
        if (c == ' ' || c == '\t') break;
        if (c == ';') {
          state_ = State::kExtensionName;
        } else {
          return Fail(400, "whitespace after a chunk size, and no ';'", i);
        }
        break;
      case State::kExtensionName:
        // RFC 9112 7.1.1: BWS ";" BWS chunk-ext-name: a name (a token).
        if (c == ' ' || c == '\t') break;
        if (!IsFieldName(absl::string_view(&c, 1))) {
          return Fail(400, "a chunk extension without a name", i);
        }
        state_ = State::kExtension;
        break;
      case State::kExtension:
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == '\n') {
          return Fail(400,
                      "a bare LF in a chunk extension (CRLF ends a "
                      "chunk line)",
                      i);
        } else if (IsControl(c)) {
          return Fail(400, "a control character in a chunk extension", i);
        } else if (++line_bytes_ > max_line_) {
          return Fail(431, "a chunk extension is longer than allowed", i);
        }
        break;
      case State::kSizeLf:
        if (c != '\n') {
          return Fail(400, "a chunk line must end in CRLF", i);
        }
        line_bytes_ = 0;
        if (size_ == 0) {
          state_ = State::kTrailerStart;
          break;
        }
        if (size_ > max_body_ - body_) {
          return Fail(413, "the request body is larger than allowed", i);
        }
        body_ += size_;
        left_ = size_;
        size_ = 0;
        state_ = State::kData;
        break;
      case State::kDataCr:
        if (c != '\r') return Fail(400, "chunk data must end in CRLF", i);
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return Fail(400, "chunk data must end in CRLF", i);
        state_ = State::kSizeStart;
        break;
      case State::kTrailerStart:
        if (c == '\r') {
          state_ = State::kFinalLf;
          break;
        }
        if (c == '\n') {
          return Fail(400, "a chunked body must end in CRLF", i);
        }
        if (!IsFieldName(absl::string_view(&c, 1))) {
          return Fail(400, "an invalid trailer field", i);
        }
        state_ = State::kTrailerName;
        [[fallthrough]];
      case State::kTrailerName:
        if (++line_bytes_ > max_line_) {
          return Fail(431, "the trailer fields are larger than allowed", i);
        }
        if (c == ':') {
          state_ = State::kTrailerValue;
        } else if (!IsFieldName(absl::string_view(&c, 1))) {
          return Fail(400, "an invalid trailer field", i);
        }
        break;
      case State::kTrailerValue:
        if (++line_bytes_ > max_line_) {
          return Fail(431, "the trailer fields are larger than allowed", i);
        }
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (c == '\n') {
          return Fail(400,
                      "a bare LF ends a trailer field (CRLF is "
                      "required)",
                      i);
        } else if (IsControl(c)) {
          return Fail(400, "a control character in a trailer field", i);
        }
        break;
      case State::kTrailerLf:
        if (c != '\n') return Fail(400, "a trailer field must end in CRLF", i);
        state_ = State::kTrailerStart;
        break;
      case State::kFinalLf:
        if (c != '\n') {
          return Fail(400, "a chunked body must end in CRLF", i);
        }
        state_ = State::kDone;
        break;
      case State::kData:
      case State::kDone:
      case State::kFailed:
        break;
    }
  }
  return i;
}

}  // namespace modelplane::proxy::http1
