// Finds the `model` field of a multipart/form-data body (audio
// transcriptions, image edits) while the body streams through, keeping at
// most a boundary's length of it plus one part's headers: a 50 MB audio
// file is scanned, never stored.
//
//   auto boundary = MultipartScanner::BoundaryFrom(content_type);
//   MultipartScanner s(*boundary);
//   s.Feed(chunk) ...;  s.Finish();
//   if (s.model()) ...
#ifndef MODELPLANE_PROXY_ROUTER_MULTIPART_SCANNER_H_
#define MODELPLANE_PROXY_ROUTER_MULTIPART_SCANNER_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace modelplane::proxy::router {

class MultipartScanner {
 public:
  static constexpr size_t kMaxModelBytes = 1024;
  static constexpr size_t kMaxPartHeaderBytes = 16 << 10;

  // The boundary parameter of a multipart/form-data Content-Type; "" for
  // one that has no usable boundary (none, two, empty, over 70 bytes: the
  // request is refused); nullopt when it is no multipart/form-data.
  static std::optional<std::string> BoundaryFrom(
      absl::string_view content_type);

  // The `name` parameter of a part's Content-Disposition header (in any
  // case, quoted or not), or "" without one; InvalidArgument for what form
  // parsers read differently (two Content-Disposition headers, two names,
  // name*).
  static absl::StatusOr<std::string> PartName(absl::string_view headers);

  explicit MultipartScanner(const std::string& boundary);

  void Feed(absl::string_view data);
  void Finish();

  const std::optional<std::string>& model() const { return model_; }
  // The closing delimiter seen, or an error. The whole form is read: a
  // second model field is an error.
  bool done() const { return error_ || closed_; }
  bool error() const { return error_; }
  const std::string& error_message() const { return error_message_; }

 private:
  enum class State { kData, kAfterDelimiter, kHeaders };
  void Fail(const std::string& what);

  std::string delimiter_;  // "\r\n--" + boundary.
  std::string buf_;        // Unscanned input.
  State state_ = State::kData;
  bool capturing_ = false;  // In the `model` part's data.
  std::string value_;
  std::optional<std::string> model_;
  bool closed_ = false;
  bool error_ = false;
  std::string error_message_;
};

}  // namespace modelplane::proxy::router

#endif  // MODELPLANE_PROXY_ROUTER_MULTIPART_SCANNER_H_
