// llama-swap's profiles API: GET /api/profiles and the body of PUT
// /api/profiles/active.
#ifndef MODELPLANE_PROXY_ANSWERS_PROFILES_H_
#define MODELPLANE_PROXY_ANSWERS_PROFILES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proxy/router/snapshot.h"

namespace modelplane::proxy::answers {

// {"active": name|null, "profiles": [{name, description, pins}]}.
std::string ProfileList(const router::Snapshot& snapshot);

// The profile a PUT body names: {"name": "<profile>"}, or {"name": null}
// for none (""). InvalidArgument otherwise.
absl::StatusOr<std::string> ActiveProfileName(absl::string_view body);

}  // namespace modelplane::proxy::answers

#endif  // MODELPLANE_PROXY_ANSWERS_PROFILES_H_
