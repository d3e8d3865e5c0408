// JSON object keys compared as Go's encoding/json matches them to fields
// (bytes.EqualFold, which Go servers such as Ollama read bodies with): in
// any letter case, where the only non-ASCII characters that fold to ASCII
// letters are U+212A KELVIN SIGN (k) and U+017F LATIN SMALL LETTER LONG S
// (s). "max_to\u212Aens" is max_tokens to such a server, and so to the
// proxy's filters and duplicate checks.
#ifndef MODELPLANE_PROXY_ROUTER_KEY_FOLD_H_
#define MODELPLANE_PROXY_ROUTER_KEY_FOLD_H_

#include <string>

#include "absl/strings/string_view.h"

namespace modelplane::proxy::router {

// The two sequences, UTF-8.
inline constexpr absl::string_view kKelvinSign = "\xE2\x84\xAA";
inline constexpr absl::string_view kLongS = "\xC5\xBF";

// `key` with ASCII letters lowered and the two characters above made k and
// s: two keys fold alike when Go would take one for the other (as far as
// ASCII field names go).
std::string FoldKey(absl::string_view key);
inline bool KeysEqualFold(absl::string_view a, absl::string_view b) {
  return FoldKey(a) == FoldKey(b);
}

}  // namespace modelplane::proxy::router

#endif  // MODELPLANE_PROXY_ROUTER_KEY_FOLD_H_
