// The web UI's files (ui/*.html, *.js, *.css, *.svg), built into the binary
// by tools/embed: served by modelproxy at /ui/ (proxy/answers/ui.cc).
#ifndef MODELPLANE_UI_ASSETS_H_
#define MODELPLANE_UI_ASSETS_H_

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/embedded_file.h"

namespace modelplane::ui {

// "/ui/index.html", "/ui/app.js", ...
absl::Span<const EmbeddedFile> Files();
// The file at `path`, or nullptr.
const EmbeddedFile* FindFile(absl::string_view path);

}  // namespace modelplane::ui

#endif  // MODELPLANE_UI_ASSETS_H_
