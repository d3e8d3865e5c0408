#include "proxy/router/key_fold.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"

namespace modelplane::proxy::router {

std::string FoldKey(absl::string_view key) {
  std::string out;
  out.reserve(key.size());
  while (!key.empty()) {
    if (absl::StartsWith(key, kKelvinSign)) {
      out.push_back('k');
      key.remove_prefix(kKelvinSign.size());
    } else if (absl::StartsWith(key, kLongS)) {
      out.push_back('s');
      key.remove_prefix(kLongS.size());
    } else {
      out.push_back(absl::ascii_tolower(static_cast<unsigned char>(key[0])));
      key.remove_prefix(1);
    }
  }
  return out;
}

}  // namespace modelplane::proxy::router
