// A string as a JSON string literal, quotes included, for the JSON that
// modelplane writes itself (error bodies, log lines). Always valid JSON:
// control characters are escaped and bytes that are not UTF-8 (a model's
// binary output, a client's malformed model name) become U+FFFD.
//
//   JsonString("say \"hi\"\n")  // "\"say \\\"hi\\\"\\n\""
#ifndef MODELPLANE_COMMON_JSON_STRING_H_
#define MODELPLANE_COMMON_JSON_STRING_H_

#include <string>

#include "absl/strings/string_view.h"

namespace modelplane {

// The contents of the literal, without the quotes.
void AppendJsonEscaped(absl::string_view s, std::string* out);

inline std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  AppendJsonEscaped(s, &out);
  out += '"';
  return out;
}

}  // namespace modelplane

#endif  // MODELPLANE_COMMON_JSON_STRING_H_
