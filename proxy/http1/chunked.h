// A strict decoder of a chunked request body (RFC 9112, 7.1), for what
// http-parser (lenient, as Debian builds it) lets through and a peer in
// front of the proxy may read otherwise: a bare LF ending a chunk line or
// inside a chunk extension, a chunk size of 2^64 or more (http-parser calls
// that an "invalid character in content-length header"), control characters
// in extensions, malformed trailer fields. Extensions and trailers are read
// and dropped: the proxy frames the body again for the upstream.
//
//   ChunkedDecoder d(limits);
//   size_t used = d.Feed(bytes, [](absl::string_view data) { ... });
//   if (d.done()) ...  // The body ended; `used` stops right after it.
//   if (d.failed()) Answer(d.error_status(), d.error_message());
//
// Single-threaded: it belongs to its connection's parser.
#ifndef MODELPLANE_PROXY_HTTP1_CHUNKED_H_
#define MODELPLANE_PROXY_HTTP1_CHUNKED_H_

#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"

namespace modelplane::proxy::http1 {

class ChunkedDecoder {
 public:
  // `max_body_bytes`: the decoded body's bound (413 past it);
  // `max_line_bytes`: a chunk line's extensions, and all trailer lines
  // together (431 past it).
  ChunkedDecoder(uint64_t max_body_bytes, size_t max_line_bytes)
      : max_body_(max_body_bytes), max_line_(max_line_bytes) {}

  // Reads as much of `data` as belongs to the body; calls `body` with each
  // run of decoded bytes. Returns the bytes used: all of `data` unless the
  // body ended (done()) or was refused (failed()).
  size_t Feed(absl::string_view data,
              absl::FunctionRef<void(absl::string_view)> body);
  bool done() const { return state_ == State::kDone; }
  bool failed() const { return state_ == State::kFailed; }
  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_; }

 private:
  enum class State {
    kSizeStart,  // The first hex digit of a chunk size.
    kSize,       // More hex digits, whitespace, ';' or CR.
    kSizeSpace,  // Whitespace after the size: ';' or CR.
    kExtensionName,
    kExtension,  // After ';', up to CR.
    kSizeLf,     // The LF of a chunk line.
    kData,       // Chunk data.
    kDataCr,     // The CRLF after chunk data.
    kDataLf,
    kTrailerStart,  // A trailer field's first byte, or the final CR.
    kTrailerName,
    kTrailerValue,
    kTrailerLf,
    kFinalLf,
    kDone,
    kFailed,
  };
  // Refuses the body; returns `used` (the bytes read up to the error).
  size_t Fail(int status, const std::string& what, size_t used);

  uint64_t max_body_;
  size_t max_line_;
  State state_ = State::kSizeStart;
  uint64_t size_ = 0;      // Of the chunk being read.
  uint64_t left_ = 0;      // Its data still to come.
  uint64_t body_ = 0;      // Decoded so far.
  size_t line_bytes_ = 0;  // Extension, or trailer bytes, so far.
  int error_status_ = 0;
  std::string error_;
};

}  // namespace modelplane::proxy::http1

#endif  // MODELPLANE_PROXY_HTTP1_CHUNKED_H_
