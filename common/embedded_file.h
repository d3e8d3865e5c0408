// A file built into a binary by tools/embed: its bytes as they are,
// gzipped and brotli-compressed, its content type and a strong ETag.
#ifndef MODELPLANE_COMMON_EMBEDDED_FILE_H_
#define MODELPLANE_COMMON_EMBEDDED_FILE_H_

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace modelplane {

struct EmbeddedFile {
  absl::string_view path;  // "/ui/app.js"
  absl::string_view content_type;
  absl::string_view etag;  // Quoted: "\"3f2a...\"".
  absl::string_view identity;
  absl::string_view gzip;
  absl::string_view brotli;
};

}  // namespace modelplane

#endif  // MODELPLANE_COMMON_EMBEDDED_FILE_H_
