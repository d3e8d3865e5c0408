// Lowercase hex SHA-256, for API keys: the manager hands the proxy hashes,
// never the keys themselves.
#ifndef MODELPLANE_COMMON_SHA256_H_
#define MODELPLANE_COMMON_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace modelplane {

std::string Sha256Hex(absl::string_view data);

}  // namespace modelplane

#endif  // MODELPLANE_COMMON_SHA256_H_
